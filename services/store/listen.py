"""LISTEN/NOTIFY for the parts outside `store/`: a dedicated connection that waits for
`pg_notify` messages (the watcher's `schedules_changed`, the run requests' channel).

One `session()` is one connection: when it is lost, `DatabaseUnavailable` ends the session
and the caller opens another (missed notifications are the caller's to catch up on).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from database.connection import DatabaseConnection, Listener

__all__ = ["Listener", "NotificationListener"]


class NotificationListener:
    def __init__(self, db: DatabaseConnection) -> None:
        self._db = db

    @contextmanager
    def session(self, channels: Iterable[str]) -> Iterator[Listener]:
        """A connection LISTENing on `channels`; iterate `notifications(timeout)` on it."""
        with self._db.listening(channels) as listener:
            yield listener
