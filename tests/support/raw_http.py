"""HTTP/1.1 over a bare socket, for what httpx will not send: byte-by-byte headers, request
targets it would normalise (`/static/../x`), bodies trickled or cut short, idle connections."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send `data`; False when the server has already closed its side."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def response(self) -> RawResponse:
        """The next response (read to the end of its Content-Length)."""
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(status, headers, body)

    def closed_by_server(self, within: float) -> bool:
        """Whether the server closes the connection within `within` seconds (what it sends
        first stays readable by `response()`)."""
        deadline = time.monotonic() + within
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    return False
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
                self.buffer += chunk
            return False
        finally:
            self.sock.settimeout(self.timeout)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before a response: {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buffer += chunk
        return bool(chunk)


def raw_request(port: int, data: bytes) -> RawResponse:
    """One request, sent whole, and its response."""
    with RawConnection(port) as conn:
        conn.send(data)
        return conn.response()


def get(port: int, target: str, *headers: str) -> RawResponse:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return raw_request(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
