"""Writes that wait for PostgreSQL: a finished run's result is never lost to an outage.

While PostgreSQL is known to be down, a write joins a bounded in-memory queue at once (a run
never waits on a dead server); a background step (`flush`) writes the queue in order when
PostgreSQL returns, stopping at the first write that still cannot be made. "Known down" starts
when a statement finds PostgreSQL unreachable and ends when one succeeds again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from database.connection import DatabaseConnection, Row
from database.queries import QuerySet
from services.clock import SYSTEM_CLOCK, Clock
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger

__all__ = ["MAX_PENDING_WRITES", "PendingWrites"]

log = get_logger(__name__)
MAX_PENDING_WRITES = 100_000


class PendingWrites:
    """Named statements of `queries`, written now or queued while PostgreSQL is down."""

    def __init__(
        self,
        db: DatabaseConnection,
        queries: QuerySet,
        *,
        limit: int = MAX_PENDING_WRITES,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.db = db
        self.queries = queries
        self.limit = limit
        self.on_change: Callable[[int], None] = lambda _count: None  # the queue's new length
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._down_since: float | None = None

    # -- is PostgreSQL there? -----------------------------------------------------------------

    @property
    def database_down(self) -> bool:
        """True since a statement found PostgreSQL unreachable, until one succeeds again."""
        return self._down_since is not None

    def mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = self.clock.monotonic()
            log.warning("store.database_down")

    def mark_up(self) -> None:
        if self._down_since is not None:
            log.info(
                "store.database_back", down_s=round(self.clock.monotonic() - self._down_since, 3)
            )
            self._down_since = None

    def probe(self) -> bool:
        """Check whether PostgreSQL answers again; True when it does."""
        if not self.db.ping():
            return False
        self.mark_up()
        return True

    # -- the queue ----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._queue)

    def write(self, query_name: str, params: dict[str, Any]) -> tuple[bool, Row | None]:
        """(written now, its row). While PostgreSQL is down the write is queued at once, so a
        finished run never waits on a dead server: (False, None)."""
        if not self.database_down:
            try:
                return True, self.db.fetch_one(self.queries[query_name], params, fast=True)
            except DatabaseUnavailable:
                self.mark_down()
        self.defer(query_name, params)
        return False, None

    def defer(self, query_name: str, params: dict[str, Any]) -> None:
        """Queue a write for `flush`; beyond the limit the oldest is dropped, loudly."""
        with self._lock:
            if len(self._queue) >= self.limit:
                dropped = self._queue.popleft()
                log.error("store.pending_overflow", dropped=dropped[0], limit=self.limit)
            self._queue.append((query_name, params))
            count = len(self._queue)
        log.warning("store.write_deferred", query=query_name, pending=count)
        self.on_change(count)

    def flush(self) -> int:
        """Write deferred writes in order; stop at the first that still cannot be written."""
        written = 0
        while True:
            with self._lock:
                if not self._queue:
                    break
                query_name, params = self._queue[0]
            try:
                self.db.execute(self.queries[query_name], params)
            except DatabaseUnavailable:
                self.mark_down()
                break
            except DatabaseError as exc:
                # A write the database refuses now will never succeed: log it, drop it.
                log.error("store.deferred_write_refused", query=query_name, error=str(exc))
            self.mark_up()
            with self._lock:
                self._queue.popleft()
                count = len(self._queue)
            written += 1
            self.on_change(count)
        if written:
            log.info("store.deferred_writes_flushed", written=written, pending=self.count)
        return written
