"""The HTTP server: one uvicorn server on HTTP_HOST:HTTP_PORT, on a thread of its own.

The socket is bound in `start()`, on the caller's thread, so a port in use stops start-up with
one clear line; uvicorn's event loop then lives on the "http-server" thread (nowhere else in the
daemon is there asyncio). uvicorn installs no signal handlers off the main thread: the daemon's
own SIGTERM handling stays in charge.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence

import anyio.to_thread
import uvicorn
from starlette.types import ASGIApp

from services.errors import StartupError
from services.log import get_logger
from services.web.connections import guarded_protocol
from services.web.limits import HttpLimits

log = get_logger(__name__)

STOP_TIMEOUT = 5.0
LISTEN_BACKLOG = 128


class WebServer:
    """Serves `app`. Port 0 binds an ephemeral port (tests); the daemon never passes 0, which
    HTTP_PORT uses to mean "off". `closers` run after the server stopped."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        closers: Sequence[Callable[[], None]] = (),
        worker_threads: int = 40,
        limits: HttpLimits | None = None,
    ) -> None:
        self.host = host
        self.worker_threads = worker_threads
        self.requested_port = port
        self.closers = list(closers)
        self._config = uvicorn.Config(
            app,
            # h11 with a deadline for request heads and a cap on connections (connections.py)
            http=guarded_protocol(limits or HttpLimits()),
            # asyncio accepts up to `backlog` connections per wake-up before any of them is
            # closed, and listens with it again (uvicorn's default is 2048): keep it at ours,
            # so that descriptors stay within HTTP_MAX_CONNECTIONS + 2 x LISTEN_BACKLOG.
            backlog=LISTEN_BACKLOG,
            log_config=None,  # our structlog setup stays the only one
            access_log=False,  # an access line per probe would drown the log
            lifespan="off",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        self._server = uvicorn.Server(self._config)
        # uvicorn's own start/stop lines say what http.listening already says; keep its warnings.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._socket is None:
            return self.requested_port
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        self._socket = self._bind()
        self._thread = threading.Thread(target=self._serve, name="http-server", daemon=True)
        self._thread.start()
        log.info("http.listening", host=self.host, port=self.port)

    def _bind(self) -> socket.socket:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.requested_port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
                sock.listen(LISTEN_BACKLOG)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise StartupError(
                f"cannot listen on HTTP_HOST={self.host} HTTP_PORT={self.requested_port}: "
                f"{exc.strerror or exc} (set HTTP_PORT to a free port, or 0 to turn HTTP off)"
            ) from None
        sock.set_inheritable(False)
        return sock

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the thread must not die silently
            log.error("http.server_failed", error=str(exc))

    async def _main(self) -> None:
        assert self._socket is not None
        # The blocking routes run on anyio's worker threads, at most this many at once; the
        # others wait their turn on the event loop, costing nothing. In the daemon this keeps a
        # flood of API requests from crowding its firing threads out of the GIL.
        anyio.to_thread.current_default_thread_limiter().total_tokens = self.worker_threads
        await self._server.serve(sockets=[self._socket])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for close in self.closers:
            close()
