"""The notification outbox (`notifications`) and the producers' mark (`notification_progress`).

Producing is idempotent (a unique event key per (event, occurrence or streak, channel)), so
instances never need to agree on who produces; delivering leases rows with SKIP LOCKED, so two
instances never send the same row at once.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection, Session, retry_transient
from database.queries import load_queries
from services.errors import InvalidCursor
from services.store.paging import decode_cursor, encode_cursor

__all__ = ["NotificationStore", "OutboxRow", "PendingEvent", "ProducerTurn"]

_SQL = load_queries("notifications")
_PROGRESS = load_queries("notification_progress")
_HISTORY = load_queries("job_history")
_SCHEDULES = load_queries("schedules")


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event for one channel, before it is stored."""

    event_key: str
    channel: str
    event: str
    schedule_id: UUID | None
    execution_id: UUID | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    notification_id: int
    event_key: str
    channel: str
    event: str
    schedule_id: UUID | None
    execution_id: UUID | None
    body: dict[str, Any]
    attempts: int
    created_at: datetime


class ProducerTurn:
    """One producer pass inside one transaction, holding the producers' mark."""

    def __init__(self, tx: Session, since: datetime, now: datetime) -> None:
        self._tx = tx
        self.since = since
        self.now = now

    def finished(
        self, *, since: datetime, has_default: bool, max_streak: int
    ) -> list[dict[str, Any]]:
        params = {
            "since": since,
            "until": self.now,
            "has_default": has_default,
            "max_streak": max_streak,
        }
        return self._tx.fetch_all(_HISTORY["finished_between"], params, prepare=False)

    def invalid(self, *, has_default: bool) -> list[dict[str, Any]]:
        return self._tx.fetch_all(_SCHEDULES["invalid_for_notify"], {"has_default": has_default})

    def expecting(self, *, has_default: bool) -> list[dict[str, Any]]:
        return self._tx.fetch_all(_SCHEDULES["expecting_completion"], {"has_default": has_default})

    def completed_since(
        self, schedule_ids: Sequence[UUID], since: datetime
    ) -> dict[UUID, list[datetime]]:
        rows = self._tx.fetch_all(
            _HISTORY["completed_since"], {"schedule_ids": list(schedule_ids), "since": since}
        )
        done: dict[UUID, list[datetime]] = {}
        for row in rows:
            done.setdefault(row["schedule_id"], []).append(row["completed_at"])
        return done

    def store(self, events: Sequence[PendingEvent]) -> list[dict[str, Any]]:
        """The events that were new (an event key stored before is left alone)."""
        if not events:
            return []
        return self._tx.fetch_all(_SQL["insert_events"], {"events": _events_json(events)})

    def advance(self, until: datetime) -> None:
        self._tx.execute(_PROGRESS["advance_progress"], {"until": until})


def _events_json(events: Sequence[PendingEvent]) -> Jsonb:
    return Jsonb(
        [
            {
                "event_key": e.event_key,
                "channel": e.channel,
                "event": e.event,
                "schedule_id": None if e.schedule_id is None else str(e.schedule_id),
                "execution_id": None if e.execution_id is None else str(e.execution_id),
                "body": e.body,
            }
            for e in events
        ]
    )


class NotificationStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    @contextmanager
    def producer_turn(self) -> Iterator[ProducerTurn | None]:
        """The producers' mark, locked for one transaction; None while another instance holds
        it. Everything written through the turn commits with the mark's advance."""
        with self.db.transaction() as tx:
            row = tx.fetch_one(_PROGRESS["take_progress"])
            if row is None:
                yield None
                return
            yield ProducerTurn(tx, row["scanned_until"], row["now"])

    def take_due(self, *, limit: int, lease: float) -> list[OutboxRow]:
        rows = self.db.fetch_all(_SQL["take_due"], {"limit": limit, "lease": lease})
        return [OutboxRow(**row) for row in rows]

    def sent_last_minute(self, channels: Sequence[str]) -> dict[str, int]:
        rows = self.db.fetch_all(_SQL["sent_last_minute"], {"channels": list(channels)})
        return {row["channel"]: int(row["sent"]) for row in rows}

    def oldest_sent_last_minute(self, channel: str) -> datetime | None:
        value: datetime | None = self.db.fetch_value(
            _SQL["oldest_sent_last_minute"], {"channel": channel}
        )
        return value

    def mark_sent(self, ids: Sequence[int]) -> None:
        self.db.execute(_SQL["mark_sent"], {"ids": list(ids)})

    def mark_retry(self, ids: Sequence[int], *, delay: float, error: str) -> None:
        self.db.execute(_SQL["mark_retry"], {"ids": list(ids), "delay": delay, "error": error})

    def give_up(self, ids: Sequence[int], *, status: str, error: str) -> None:
        self.db.execute(_SQL["mark_given_up"], {"ids": list(ids), "status": status, "error": error})

    def defer(self, ids: Sequence[int], *, delay: float) -> None:
        self.db.execute(_SQL["defer_unattempted"], {"ids": list(ids), "delay": delay})

    def record_digest(
        self, channel: str, event_key: str, body: Mapping[str, Any], ids: Sequence[int]
    ) -> None:
        def run() -> None:
            with self.db.transaction() as tx:
                tx.fetch_all(
                    _SQL["insert_digest"],
                    {
                        "channel": channel,
                        "event_key": event_key,
                        "body": Jsonb(dict(body)),
                        "ids": list(ids),
                    },
                )

        retry_transient(run)

    def record_direct(
        self,
        channel: str,
        event_key: str,
        event: str,
        body: Mapping[str, Any],
        *,
        error: str | None,
    ) -> int:
        params = {
            "channel": channel,
            "event_key": event_key,
            "event": event,
            "body": Jsonb(dict(body)),
            "status": "sent" if error is None else "failed",
            "error": error,
        }
        return int(self.db.fetch_value(_SQL["insert_sent"], params))

    def depth(self) -> int:
        return int(self.db.fetch_value(_SQL["outbox_depth"]))

    def recent(
        self,
        *,
        limit: int = 50,
        channel: str | None = None,
        status: str | None = None,
        schedule_id: UUID | None = None,
        before: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        params = {
            "limit": limit,
            "channel": channel,
            "status": status,
            "schedule_id": schedule_id,
            "before": before,
        }
        return self.db.fetch_all(_SQL["recent_notifications"], params, prepare=False)

    def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        channel: str | None = None,
        status: str | None = None,
        schedule_id: UUID | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """A page of notifications, newest first, and the cursor of the next (None: the last)."""
        before = None
        if cursor is not None:
            (before,) = decode_cursor(cursor, (int,))
            if before < 1:
                raise InvalidCursor(cursor)
        rows = self.recent(
            limit=limit + 1, channel=channel, status=status, schedule_id=schedule_id, before=before
        )
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, encode_cursor([rows[-1]["notification_id"]])

    def prune(self, days: float) -> int:
        return self.db.execute(_SQL["prune_notifications"], {"days": days})
