"""Backfill planning: which occurrences of a schedule in [start, end) to run again, pure.

The occurrences are the schedule's own fire times (`model.fire_times.next_fire_time`, the one
function behind APScheduler and `next_run`), at most MAX_OCCURRENCES. Modes (contract, DESIGN.md
"Overlap policies and backfill"): `missing` = no row of it ran (none at all, or only skipped);
`failed` = its latest attempt failed, timed out or was abandoned; `all` = every one. A
re-run is attempt = latest + 1; an occurrence with no row gets attempt 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.errors import InvalidBackfill
from services.model.fire_times import next_fire_time
from services.model.spec import ScheduleSpec
from services.model.vocabulary import FAILED_STATUSES

MAX_OCCURRENCES = 10_000
_TICK = timedelta(microseconds=1)


class BackfillMode(StrEnum):
    MISSING = "missing"
    FAILED = "failed"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Existing:
    """What `job_executions` holds of one occurrence."""

    latest_attempt: int
    latest_status: str
    ran: bool  # a row other than `skipped` (ran, is running or waits)


@dataclass(frozen=True, slots=True)
class Planned:
    scheduled_for: datetime
    attempt: int


def occurrences_between(
    spec: ScheduleSpec, start: datetime, end: datetime, *, limit: int = MAX_OCCURRENCES
) -> list[datetime]:
    """The schedule's fire times in [start, end); InvalidBackfill beyond `limit`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidBackfill("from and to must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
    if end <= start:
        raise InvalidBackfill(f"to ({end.isoformat()}) must be after from ({start.isoformat()})")
    times: list[datetime] = []
    fire = next_fire_time(spec, start - _TICK, start)
    while fire is not None and fire < end:
        if len(times) == limit:
            raise InvalidBackfill(
                f"the range holds more than {limit:,} occurrences; backfill a shorter range",
                field="to",
            )
        times.append(fire)
        fire = next_fire_time(spec, fire, start)
    return times


def plan(
    times: list[datetime], existing: dict[datetime, Existing], mode: BackfillMode
) -> list[Planned]:
    """The occurrences the mode selects, each with the attempt its re-run gets."""
    planned: list[Planned] = []
    for moment in times:
        seen = existing.get(moment)
        if seen is None:
            if mode in (BackfillMode.MISSING, BackfillMode.ALL):
                planned.append(Planned(moment, 1))
            continue
        wanted = (
            mode is BackfillMode.ALL
            or (mode is BackfillMode.MISSING and not seen.ran)
            or (mode is BackfillMode.FAILED and seen.latest_status in FAILED_STATUSES)
        )
        if wanted:
            planned.append(Planned(moment, seen.latest_attempt + 1))
    return planned
