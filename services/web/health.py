"""HTTP operations endpoints: /health, /ready, /status and /metrics on HTTP_HOST:HTTP_PORT.

A stdlib ThreadingHTTPServer on a named daemon thread ("http-server"). /health answers as long as
the process does; /ready also pings PostgreSQL and Redis, each with a deadline, so that a hung
server makes /ready say so quickly instead of hanging the probe.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.clock import SYSTEM_CLOCK, Clock
from services.errors import StartupError
from services.lock.client import create_redis_client
from services.log import get_logger, mask_secrets

log = get_logger(__name__)

JSON_TYPE = "application/json"
READY_CHECK_TIMEOUT = 2.0


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _problem(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return mask_secrets(text)


class OpsView(Protocol):
    """What the operations endpoints ask of the scheduler they serve."""

    @property
    def metrics_registry(self) -> CollectorRegistry: ...

    @property
    def redis_url(self) -> str: ...

    def readiness_problem(self) -> str | None:
        """Why the scheduler itself is not ready ("not started", "stopping"), or None."""
        ...

    def check_database(self) -> None:
        """Raise, with the reason, when PostgreSQL does not answer."""
        ...

    def status(self) -> dict[str, Any]: ...


class HealthServer:
    """Serves the operations endpoints of one scheduler. Port 0 binds an ephemeral port (tests);
    the daemon never passes 0, which HTTP_PORT uses to mean "off"."""

    def __init__(
        self,
        scheduler: OpsView,
        host: str,
        port: int,
        *,
        check_timeout: float = READY_CHECK_TIMEOUT,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.host = host
        self.requested_port = port
        self.check_timeout = check_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started_at = self.clock.monotonic()
        # A client of our own with short time-outs: a probe never waits on the scheduler's pool.
        self._redis: redis.Redis = create_redis_client(
            scheduler.redis_url,
            max_connections=2,
            socket_timeout=check_timeout / 2,
            connect_timeout=check_timeout / 2,
        )
        self._checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-ready-check")
        self._in_flight: dict[str, Future[str | None]] = {}
        self._in_flight_lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        try:
            family = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM)[0][
                0
            ]
            self._server = _Server((self.host, self.requested_port), family, self)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on HTTP_HOST={self.host} HTTP_PORT={self.requested_port}: "
                f"{exc.strerror or exc} (set HTTP_PORT to a free port, or 0 to turn HTTP off)"
            ) from None
        self._started_at = self.clock.monotonic()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="http-server",
            daemon=True,
        )
        self._thread.start()
        log.info("http.listening", host=self.host, port=self.port)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # waits for serve_forever to return
            server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        self._checks.shutdown(wait=False, cancel_futures=True)
        self._redis.close()

    # -- endpoint bodies ----------------------------------------------------------------------

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons): every check that fails, named by what failed."""
        deadline = self.clock.monotonic() + self.check_timeout
        probes = {
            "database": self._probe("database", self._check_database),
            "redis": self._probe("redis", self._check_redis),
        }
        reasons: list[str] = []
        for name, future in probes.items():
            try:
                problem = future.result(timeout=max(0.0, deadline - self.clock.monotonic()))
            except FutureTimeout:
                problem = f"no answer within {self.check_timeout:g}s"
            if problem:
                reasons.append(f"{name}: {problem}")
        problem = self.scheduler.readiness_problem()
        if problem:
            reasons.append(f"scheduler: {problem}")
        return not reasons, reasons

    def status(self) -> dict[str, Any]:
        return {
            **self.scheduler.status(),
            "uptime_seconds": round(self.clock.monotonic() - self._started_at, 3),
        }

    def _probe(self, name: str, check: Callable[[], str | None]) -> Future[str | None]:
        # One check of each kind in flight at a time: probes against a hung server share it
        # instead of piling up threads behind it.
        with self._in_flight_lock:
            future = self._in_flight.get(name)
            if future is None or future.done():
                future = self._checks.submit(check)
                self._in_flight[name] = future
            return future

    def _check_database(self) -> str | None:
        try:
            self.scheduler.check_database()
        except Exception as exc:
            return _problem(exc)
        return None

    def _check_redis(self) -> str | None:
        try:
            self._redis.ping()
        except Exception as exc:
            return _problem(exc)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, health: HealthServer) -> None:
        self.address_family = family  # read by the base __init__ when it creates the socket
        self.health = health
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that stops sending never holds a thread for long
    server_version = "enhanced-scheduler"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        health = self.server.health
        try:
            if path == "/health":
                self._send_json(200, {"status": "ok"})
            elif path == "/ready":
                ready, reasons = health.readiness()
                body: dict[str, Any] = {"ready": ready}
                if reasons:
                    body["reasons"] = reasons
                self._send_json(200 if ready else 503, body)
            elif path == "/status":
                self._send_json(200, health.status())
            elif path == "/metrics":
                self._send(
                    200, generate_latest(health.scheduler.metrics_registry), CONTENT_TYPE_LATEST
                )
            else:
                self._send_json(404, {"error": "not found", "path": path})
        except Exception as exc:
            log.exception("http.request_failed", path=path)
            self._send_json(500, {"error": _problem(exc)})

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        # Masked once more as a whole: /status must never show a secret, whatever status() holds.
        text = mask_secrets(json.dumps(body, default=_json_default))
        self._send(code, text.encode(), JSON_TYPE)

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these endpoints every few seconds: keep them out of the INFO log.
        log.debug("http.request", client=self.client_address[0], message=format % args)
