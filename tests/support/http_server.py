"""A real HTTP server for tests: records every request and answers from a script.

    with RecordingHTTPServer() as server:
        server.enqueue(ScriptedResponse(503), ScriptedResponse(200, {"scan_id": str(uuid4())}))
        ... point the code under test at server.url ...
        first, second = server.wait_for_requests(2, timeout=5)

Scripted responses are used once each, in order; then every request gets the default.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # the decoded body, or None when it is not JSON
    received_at: datetime  # wall clock, UTC
    monotonic: float  # time.monotonic() at arrival, for measuring gaps between requests

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class ScriptedResponse:
    status: int = 200
    json: Any = None
    delay: float = 0.0  # seconds to wait before answering
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # sent as is instead of `json` when given
    omit_length: bool = False  # no Content-Length: the body ends when the connection closes
    cut_after: int | None = None  # announce the whole body, send only this many bytes, hang up


def unused_port() -> int:
    """A local port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RecordingHTTPServer:
    def __init__(self, default: ScriptedResponse | None = None) -> None:
        self._default = default or ScriptedResponse(200, {"ok": True})
        self._script: deque[ScriptedResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._request_handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http"
        )

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._changed:
            return list(self._requests)

    def enqueue(self, *responses: ScriptedResponse) -> None:
        with self._changed:
            self._script.extend(responses)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """All requests so far, once there are at least `n`; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} request(s) within {timeout} s, got {len(self._requests)}"
                    )
                self._changed.wait(left)
            return list(self._requests)

    def start(self) -> RecordingHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cuts scripted delays short
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> RecordingHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> ScriptedResponse:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            return self._script.popleft() if self._script else self._default

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    decoded: Any = json.loads(body) if body else None
                except ValueError:
                    decoded = None
                response = server._record(
                    RecordedRequest(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        json=decoded,
                        received_at=datetime.now(UTC),
                        monotonic=time.monotonic(),
                    )
                )
                if response.delay and server._stopping.wait(response.delay):
                    return
                self._answer(response)

            def _answer(self, response: ScriptedResponse) -> None:
                if response.body is not None:
                    payload = response.body
                elif response.json is not None:
                    payload = json.dumps(response.json).encode()
                else:
                    payload = b""
                try:
                    self.send_response(response.status)
                    if response.json is not None and response.body is None:
                        self.send_header("Content-Type", "application/json")
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    if not response.omit_length:
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if response.cut_after is not None:
                        payload = payload[: response.cut_after]
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a time-out test): nothing to answer

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler
