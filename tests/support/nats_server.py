"""A private nats-server with JetStream for tests (stop it, start it again on the same port).

The shared NATS on 4222 is never touched: this one listens on a free port of 127.0.0.1, keeps its
JetStream store in its own temporary directory, and is killed with the test process (Linux
parent-death signal) even when the test run itself is killed.

    with NatsServer() as server:
        server.add_stream("JOBS", ["jobs.>"])
        server.stop(); ...; server.start()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg, StreamConfig

from tests.support.redis_server import _die_with_parent, free_port

EXECUTABLE = "/usr/sbin/nats-server"
T = TypeVar("T")


class NatsServer:
    def __init__(
        self, *, startup_timeout: float = 10.0, user: str | None = None, password: str = ""
    ) -> None:
        self.user, self.password = user, password
        self.port = free_port()
        self.monitor_port = free_port()
        self.host = "127.0.0.1"
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="test-nats-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"nats://{auth}{self.host}:{self.port}"

    def start(self) -> None:
        args = [EXECUTABLE, "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.dir)]
        args += ["-m", str(self.monitor_port)]
        if self.user:
            args += ["--user", self.user, "--pass", self.password]
        log = (self.dir / "server.log").open("ab")
        self._proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while not self._accepts():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server on port {self.port} did not start")
            time.sleep(0.02)
        # The port answers before JetStream is ready: wait until its API does.
        self.run(lambda nc: nc.jetstream().account_info(), timeout=self.startup_timeout)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server by its PID and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def client_names(self) -> list[str]:
        """The names of the clients connected now (the server's monitoring endpoint)."""
        url = f"http://{self.host}:{self.monitor_port}/connz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            connz = json.load(answer)
        return [str(conn.get("name", "")) for conn in connz.get("connections") or []]

    # -- a client of the test's own, one connection per call --------------------------------

    def run(self, body: Callable[[Client], Awaitable[T]], timeout: float = 10.0) -> T:
        async def main() -> T:
            nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)
            try:
                return await asyncio.wait_for(body(nc), timeout)
            finally:
                await nc.close()

        # On a thread of its own: the browser tests' Playwright keeps an event loop running on
        # the main thread for the whole session, and asyncio.run refuses to start inside one.
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nats-test") as pool:
            return pool.submit(asyncio.run, main()).result()

    def add_stream(self, name: str, subjects: list[str]) -> None:
        async def add(nc: Client) -> None:
            await nc.jetstream().add_stream(StreamConfig(name=name, subjects=subjects))

        self.run(add)

    def stream_messages(self, name: str) -> list[RawStreamMsg]:
        """Every message in the stream, in order."""

        async def read(nc: Client) -> list[RawStreamMsg]:
            js = nc.jetstream()
            info = await js.stream_info(name)
            first, last = info.state.first_seq, info.state.last_seq
            if info.state.messages == 0:
                return []
            return [await js.get_msg(name, seq) for seq in range(first, last + 1)]

        return self.run(read)


class Responder:
    """A subscriber on its own thread and loop that answers each request with `reply` (or
    never answers, when `reply` is None: a responder that is there but silent)."""

    def __init__(self, url: str, subject: str, reply: bytes | None) -> None:
        self.url, self.subject, self.reply = url, subject, reply
        self.received: list[Msg] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="test-responder", daemon=True)

    def __enter__(self) -> Responder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the responder did not subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        nc = await nats.connect(self.url, connect_timeout=2, max_reconnect_attempts=0)

        async def answer(msg: Msg) -> None:
            self.received.append(msg)
            if self.reply is not None:
                await msg.respond(self.reply)

        await nc.subscribe(self.subject, cb=answer)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()
