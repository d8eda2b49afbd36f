"""The daemon's one NATS connection: an asyncio loop on a daemon thread that owns the client.

The engine is threaded (handlers run on the runner's worker threads); nats-py is asyncio. Rather
than a second, async engine, one loop thread owns one client and worker threads hand it
coroutines (`asyncio.run_coroutine_threadsafe`), waiting at most their time-out for the answer.

The loop and the connection start at first use, so a NATS outage at start-up never stops the
daemon. Once a connection attempt has begun it keeps trying (max_reconnect_attempts=-1), and a
connection that drops reconnects by itself; meanwhile calls fail at once as unavailable instead
of waiting (a message buffered while disconnected could still go out after its run was recorded
as failed, and its retry carries another attempt's key).

NATS_URL may hold a user and password: only the hosts ever reach a log line or an error.

nats-py itself is imported at the first connection, not with this module: a daemon without nats
jobs would pay its start-up time and memory for nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from services.log import get_logger

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = get_logger("services.engine.handlers.nats")

T = TypeVar("T")

# How often a waiting worker thread looks at its run's cancel event (it cannot wait on both
# the future and the event at once).
_CANCEL_POLL_S = 0.1
# Seconds between two connection attempts to the same server (nats-py's own default is 2).
_RECONNECT_WAIT_S = 1
_CLOSE_TIMEOUT_S = 5.0


class NatsUnavailable(Exception):
    """No connection to NATS now (never reached, or lost and reconnecting)."""


class NatsDeadline(Exception):
    """The call did not finish within its time-out (it has been cancelled)."""


class NatsCallCancelled(Exception):
    """The run was cancelled while it waited (the call has been cancelled)."""


@dataclass(frozen=True)
class NatsOptions:
    url: str = "nats://127.0.0.1:4222"
    timeout: float = 5.0
    creds_file: str | None = None
    tls_ca: str | None = None

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.url.split(",") if part.strip()]

    @property
    def hosts(self) -> str:
        """The servers without credentials: what logs and errors may show."""
        shown: list[str] = []
        for server in self.servers:
            try:
                parts = urlsplit(server if "://" in server else f"nats://{server}")
                host = parts.hostname or "?"
                shown.append(f"{host}:{parts.port}" if parts.port else host)
            except ValueError:
                shown.append("<unparseable>")
        return ",".join(shown)

    def secrets(self) -> list[str]:
        """The passwords and tokens in NATS_URL, to be scrubbed from any message we keep."""
        found: list[str] = []
        for server in self.servers:
            try:
                parts = urlsplit(server)
                found.extend(s for s in (parts.password, parts.username) if s)
            except ValueError:
                continue
        return found


if TYPE_CHECKING:
    Call = Callable[[Client, JetStreamContext], Awaitable[T]]


class NatsLink:
    def __init__(self, options: NatsOptions) -> None:
        self.options = options
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Owned by the loop thread from here on.
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._failed: asyncio.Event | None = None
        self._failure = ""

    # -- worker-thread side -------------------------------------------------------------------

    def call(self, make: Call[T], *, timeout: float, cancel: threading.Event) -> T:
        """Run `make(client, jetstream)` on the loop; its result, or its exception.

        Raises NatsDeadline after `timeout` seconds and NatsCallCancelled when `cancel` is set,
        having cancelled the coroutine either way, so nothing waits on past its run."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._with_client(make), loop)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                return future.result(timeout=max(0.0, min(_CANCEL_POLL_S, remaining)))
            except concurrent.futures.TimeoutError:
                if future.done():  # the coroutine's own TimeoutError, not this wait's
                    raise
            if cancel.is_set():
                future.cancel()
                raise NatsCallCancelled
            if remaining <= _CANCEL_POLL_S:
                future.cancel()
                raise NatsDeadline

    def close(self) -> None:
        """Close the connection and stop the loop thread (at daemon shutdown)."""
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(_CLOSE_TIMEOUT_S)
        except Exception as exc:  # shutting down: say so, and stop the loop all the same
            log.warning(
                "nats.close_failed", error_type=type(exc).__name__, hosts=self.options.hosts
            )
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_TIMEOUT_S)

    def scrub(self, text: str) -> str:
        for secret in self.options.secrets():
            text = text.replace(secret, "***")
        return text

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._run_loop, args=(loop,), name="nats-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- loop side ----------------------------------------------------------------------------

    async def _with_client(self, make: Call[T]) -> T:
        nc, js = await self._client()
        return await make(nc, js)

    async def _client(self) -> tuple[Client, JetStreamContext]:
        if self._nc is not None and self._nc.is_closed:
            self._nc = self._js = None  # closed for good (not reconnecting): start afresh
        if self._nc is not None and self._js is not None:
            if self._nc.is_connected:
                return self._nc, self._js
            raise NatsUnavailable(f"connection to NATS at {self.options.hosts} lost; reconnecting")
        if self._connecting is None or self._connecting.done():
            self._failed = asyncio.Event()
            self._connecting = asyncio.ensure_future(self._connect())
        assert self._failed is not None
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            # The connect task is not ours to cancel: it goes on trying after this call ends.
            await asyncio.wait({self._connecting, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
        if self._connecting.done():
            error = self._connecting.exception()
            if error is not None:
                raise NatsUnavailable(
                    f"cannot connect to NATS at {self.options.hosts}: {self.scrub(str(error))}"
                )
            if self._nc is not None and self._js is not None:
                return self._nc, self._js
        raise NatsUnavailable(f"cannot reach NATS at {self.options.hosts}: {self._failure}")

    async def _connect(self) -> None:
        from nats.aio.client import Client  # here, not at the top (see the module's text)

        nc = Client()
        tls = (
            ssl.create_default_context(cafile=self.options.tls_ca) if self.options.tls_ca else None
        )
        await nc.connect(
            servers=self.options.servers,
            name="enhanced-scheduler",
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=_RECONNECT_WAIT_S,
            connect_timeout=max(1, round(self.options.timeout)),
            user_credentials=self.options.creds_file,
            tls=tls,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._nc, self._js = nc, nc.jetstream(timeout=self.options.timeout)
        log.info("nats.connected", hosts=self.options.hosts)

    async def _on_error(self, exc: Exception) -> None:
        message = self.scrub(str(exc) or type(exc).__name__)
        if self._nc is None and self._failed is not None:
            self._failure = message
            self._failed.set()
        log.warning("nats.error", hosts=self.options.hosts, error_type=type(exc).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("nats.disconnected", hosts=self.options.hosts)

    async def _on_reconnected(self) -> None:
        log.info("nats.reconnected", hosts=self.options.hosts)

    async def _close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._js = None
