"""uvicorn's h11 protocol with the two bounds it lacks: a deadline for the request head, and a
cap on open connections.

uvicorn 0.54's h11 protocol arms no timer until its first answer, and cancels its keep-alive
timer on every byte received: a client that connects and sends nothing, or sends its headers a
byte at a time (slowloris), holds its connection (a file descriptor) for ever, and
`limit_concurrency` only answers 503 to *new requests* once the connections are many, so a
thousand idle sockets would starve `/health` instead of protecting it. Here:

- a connection must deliver a complete request head within `header_timeout` of opening (or of
  its previous answer, for keep-alive); else it is closed. Bytes arriving do not extend it.
- at most `max_connections` are open: one more closes a connection that is waiting for a
  request head (idle, or a slowloris) to make room, taken from the client address that holds
  the most connections, its longest-waiting first; only when every open connection is busy
  with a request is the new one refused (closed at once). So a flood of idle sockets, even one
  that reconnects as fast as it is closed, costs its own address its connections and never
  keeps a client of another address out (the oldest-first rule alone would not do: a flood
  that opens more than the cap within one turn of the event loop would close an honest
  connection before its request was read). Behind a proxy every client has one address, and
  the rule is oldest-first; the proxy's own limits then do the rest.
Bodies are the request guard's (request_guard.py): they are read inside a request, which this does
not interrupt. The attributes used (`conn`, `transport`, `connections`, `loop`) are uvicorn's
own, pinned with it in requirements.txt.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from services.log import get_logger
from services.web.limits import HttpLimits

log = get_logger(__name__)


class GuardedH11Protocol(H11Protocol):
    limits = HttpLimits()  # set on the subclass guarded_protocol() makes

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.waiting_since = 0.0
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]  # uvicorn narrows it
        self._await_head()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if not self.waiting_for_head:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._await_head()  # the next request on this connection gets its own deadline
        super().on_response_complete()  # may read a pipelined request: handle_events cancels

    @property
    def host(self) -> str:
        return "" if self.client is None else self.client[0]

    @property
    def waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self.waiting_since = self.loop.time()
        self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_overdue)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_overdue(self) -> None:
        self.head_timer = None
        if self.waiting_for_head and not self.transport.is_closing():
            log.debug("http.head_timeout", client=_address(self.client))
            self.transport.close()

    def _make_room(self) -> None:
        """Close a connection without a request head, of the address that holds the most
        connections, the longest-waiting first; else (all are busy) this new one."""
        open_ = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and not c.transport.is_closing()
        ]
        if len(open_) <= self.limits.max_connections:
            return  # the ones over the cap are already closing
        held = Counter(c.host for c in open_)
        idle = [c for c in open_ if c is not self and c.waiting_for_head]
        victim = min(idle, key=lambda c: (-held[c.host], c.waiting_since)) if idle else self
        log.debug(  # debug: under a flood, a line per socket would be a flood of its own
            "http.connection_shed",
            open=len(self.connections),
            limit=self.limits.max_connections,
            client=_address(victim.client),
            refused_new=victim is self,
        )
        victim.transport.close()


def _address(client: tuple[str, int] | None) -> str:
    return "" if client is None else f"{client[0]}:{client[1]}"


def guarded_protocol(limits: HttpLimits) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=`, bound to `limits`."""
    return type("GuardedH11", (GuardedH11Protocol,), {"limits": limits})
