"""The API sync's statements on the `source='api'` rows of `schedules`.

Whole batches travel as one JSON array parameter: one statement each, whatever the count.
PostgreSQL does the comparing (jsonb equality: 1 = 1.0, true <> 1), and only differences travel
back, so an unchanged re-sync reads almost nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from database.connection import DatabaseConnection, Row, Session
from database.queries import load_queries
from services.store.audit import acting_as

__all__ = ["ApiRows", "open_api_rows"]

_SQL = load_queries("schedules")
ApiRow = Mapping[str, Any]  # {domain_config_id, domain, frequency, time_config, enabled,
# job_type, payload} as JSON values, plus schedule_id for an update


@contextmanager
def open_api_rows(
    db: DatabaseConnection, *, write: bool, actor: str | None = None
) -> Iterator[ApiRows]:
    """Without `write` (a dry run), one autocommit session; with it, one transaction (all or
    nothing) that first takes the sync's advisory lock: the Redis lock decides who fetches,
    this keeps read-plan-write correct even if two syncs ever overlap. `actor` names the writer
    in the audit trail (the sync passes `sync`)."""
    if not write:
        with db.session() as session:
            yield ApiRows(session)
        return
    with acting_as(db, actor) as tx:
        tx.execute(_SQL["lock_api_sync"])
        yield ApiRows(tx)


class ApiRows:
    def __init__(self, session: Session) -> None:
        self._session = session

    def differing(self, items: Sequence[ApiRow]) -> list[Row]:
        """The items that are new or differ from their api row: per item its domain_config_id,
        its row's schedule_id (None when new) and one boolean per managed column."""
        return self._session.fetch_all(_SQL["diff_api_rows"], {"rows": json.dumps(items)})

    def missing(self, present: Sequence[UUID]) -> list[Row]:
        """Enabled api rows whose domain_config_id is not in `present`."""
        return self._session.fetch_all(_SQL["missing_api_rows"], {"present": list(present)})

    def insert(self, items: Sequence[ApiRow]) -> int:
        return self._session.execute(_SQL["insert_api_rows"], {"rows": json.dumps(items)})

    def update(self, items: Sequence[ApiRow]) -> int:
        """Rewrite the managed columns (each item names its schedule_id)."""
        return self._session.execute(_SQL["update_api_rows"], {"rows": json.dumps(items)})

    def disable(self, schedule_ids: Sequence[UUID]) -> int:
        """Disable (never delete) api rows that a complete answer no longer lists."""
        return self._session.execute(_SQL["disable_api_rows"], {"schedule_ids": list(schedule_ids)})
