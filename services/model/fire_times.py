"""When a schedule fires: the one function behind both APScheduler and `schedules.next_run`.

`next_fire_time(spec, after, now)` is pure: it reads no clock and does no I/O, so every instance
computes the same answer for the same row. The nominal occurrences come from the spec (interval:
`anchor + k * period`, k >= 0, the anchor being the Unix epoch when the spec has none; once:
`run_at`; the other frequencies: `model.wallclock`, whose docstring states the DST rules). Each
occurrence is then delayed by its jitter, 0..jitter whole seconds drawn from sha256 of
(schedule_id, occurrence), never from Python's salted `hash()`. Occurrences count from start_date
on (at it included), and a delayed fire time never passes end_date (at it included).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from hashlib import sha256

from services.model.spec import ScheduleSpec
from services.model.wallclock import next_instant

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)


def jitter_offset(schedule_id: str, occurrence: datetime, jitter: int) -> int:
    """The delay in whole seconds, 0..jitter, of one occurrence (aware UTC) of a schedule."""
    if jitter <= 0:
        return 0
    digest = sha256(f"{schedule_id}|{occurrence.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (jitter + 1)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment.astimezone(UTC)


def _next_occurrence(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first nominal (un-jittered) occurrence strictly after `after`, ignoring the bounds."""
    if spec.rule is not None:
        return next_instant(spec.rule, spec.timezone, after)
    if spec.period is not None:
        anchor = spec.anchor or _EPOCH
        steps = max(0, (after - anchor) // spec.period + 1)
        return anchor + steps * spec.period
    if spec.run_at is not None:
        return spec.run_at if spec.run_at > after else None
    return None


def _first_fire_after(spec: ScheduleSpec, after: datetime) -> datetime | None:
    jitter = spec.jitter
    # An occurrence at or before after - jitter lands at or before `after` even fully delayed.
    search_from = after - timedelta(seconds=jitter) if jitter else after
    if spec.start_date is not None:
        search_from = max(search_from, spec.start_date - _TICK)
    occurrence = _next_occurrence(spec, search_from)
    if jitter == 0:
        if occurrence is None or (spec.end_date is not None and occurrence > spec.end_date):
            return None
        return occurrence
    # Jitter can reorder neighbouring occurrences: keep the earliest fire time after `after`
    # until the occurrences themselves pass it.
    best: datetime | None = None
    while occurrence is not None and (best is None or occurrence < best):
        if spec.end_date is not None and occurrence > spec.end_date:
            break
        fire = occurrence + timedelta(seconds=jitter_offset(spec.schedule_id, occurrence, jitter))
        in_bounds = spec.end_date is None or fire <= spec.end_date
        if fire > after and in_bounds and (best is None or fire < best):
            best = fire
        occurrence = _next_occurrence(spec, occurrence)
    return best


def next_fire_time(spec: ScheduleSpec, after: datetime | None, now: datetime) -> datetime | None:
    """The next fire time (aware UTC, whole seconds, jitter included), or None if none is left.

    With `after`, the first fire time strictly after it (`now` is then not used: missed runs are
    the caller's to judge); without, the first fire time at or after `now`.
    """
    bound = _utc(after, "after") if after is not None else _utc(now, "now") - _TICK
    try:
        return _first_fire_after(spec, bound)
    except (OverflowError, ValueError):  # beyond datetime's year 9999 (croniter: ValueError)
        return None


def fire_times(
    spec: ScheduleSpec, after: datetime | None, now: datetime, limit: int
) -> list[datetime]:
    """The next `limit` fire times (fewer when the schedule ends), for tests and the CLI."""
    times: list[datetime] = []
    fire = next_fire_time(spec, after, now)
    while fire is not None and len(times) < limit:
        times.append(fire)
        fire = next_fire_time(spec, fire, now)
    return times
