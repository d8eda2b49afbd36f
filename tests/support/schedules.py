"""SQL helpers for tests that drive real daemons: insert schedules the way an operator would
(plain SQL), read `job_executions` back, and compute the occurrences an interval schedule must
have had, so that a test can check "every occurrence exactly once" against the schedule model.

Every call opens its own short connection: these helpers keep working across a PostgreSQL
restart, and never hold a connection a test's server stop would have to cut.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Row = dict[str, Any]


def query(url: str, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
    """Run one statement on a fresh autocommit connection; its rows (none for plain writes)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


def insert_interval_schedules(
    url: str,
    count: int,
    *,
    seconds: int,
    job_type: str,
    payload: Mapping[str, Any],
    domain: str = "example.com",
    time_config: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> list[Row]:
    """`count` interval schedules in one INSERT; rows of (schedule_id, created_at).
    `created_at` (default now) sets the phase: occurrences fall at created_at + k·seconds."""
    config = Jsonb({"seconds": seconds, **(time_config or {})})
    return query(
        url,
        """
        INSERT INTO schedules (
            domain_config_id, domain, frequency, time_config, job_type, payload, created_at)
        SELECT gen_random_uuid(), %s, 'interval', %s, %s, %s, coalesce(%s, now())
        FROM generate_series(1, %s)
        RETURNING schedule_id, created_at
        """,
        (domain, config, job_type, Jsonb(dict(payload)), created_at, count),
    )


def insert_interval_schedule(
    url: str,
    *,
    seconds: int,
    job_type: str,
    payload: Mapping[str, Any],
    domain: str = "example.com",
    time_config: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Row:
    """One interval schedule; its (schedule_id, created_at)."""
    (row,) = insert_interval_schedules(
        url,
        1,
        seconds=seconds,
        job_type=job_type,
        payload=payload,
        domain=domain,
        time_config=time_config,
        created_at=created_at,
    )
    return row


def executions(url: str, schedule_id: UUID | None = None) -> list[Row]:
    """`job_executions` rows (of one schedule, or all), oldest occurrence first."""
    if schedule_id is None:
        return query(url, "SELECT * FROM job_executions ORDER BY scheduled_for, attempt")
    return query(
        url,
        "SELECT * FROM job_executions WHERE schedule_id = %s ORDER BY scheduled_for, attempt",
        (schedule_id,),
    )


def schedule_row(url: str, schedule_id: UUID) -> Row:
    (row,) = query(url, "SELECT * FROM schedules WHERE schedule_id = %s", (schedule_id,))
    return row


def interval_occurrences(
    created_at: datetime, seconds: float, start: datetime, end: datetime
) -> list[datetime]:
    """The occurrences of an interval schedule without start_date in [start, end]: the
    contract's created_at (truncated to whole seconds) + k·period, k >= 0."""
    anchor = created_at.replace(microsecond=0)
    period = timedelta(seconds=seconds)
    k = max(0, math.ceil((start - anchor) / period))
    moments = []
    while (moment := anchor + k * period) <= end:
        moments.append(moment)
        k += 1
    return moments


def duplicated_occurrences(rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    """(schedule_id, scheduled_for, attempt) keys that appear on more than one row."""
    counts = Counter((r["schedule_id"], r["scheduled_for"], r["attempt"]) for r in rows)
    return sorted((key for key, n in counts.items() if n > 1), key=str)


def db_now(url: str) -> datetime:
    """PostgreSQL's clock: the one started_at and completed_at are stamped with."""
    (row,) = query(url, "SELECT now() AS now")
    now: datetime = row["now"]
    return now
