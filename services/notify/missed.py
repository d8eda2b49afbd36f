"""`missed`: an occurrence with no completed run within time_config.expected_within seconds.

Pure: given a schedule's fire times and when its runs completed, which occurrences' deadlines
fell in a window without a completed run. Whatever kept the run from completing (no instance
up, a lock that never came free, a job that hangs, a row gone invalid) the maths is the same.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.model.fire_times import next_fire_time
from services.model.spec import ScheduleSpec

MAX_PER_PASS = 100  # occurrences judged per schedule and pass (a long outage: the latest ones)


def deadline_window_occurrences(
    spec: ScheduleSpec,
    expected_within: float,
    window: tuple[datetime, datetime],
    not_before: datetime | None,
) -> list[datetime]:
    """Occurrences whose deadline (occurrence + expected_within) is in (start, end], at or
    after `not_before` (a row's creation: nothing is due before it existed); the last
    MAX_PER_PASS of them."""
    start, end = window
    within = timedelta(seconds=expected_within)
    first = start - within
    if not_before is not None and not_before > first:
        first = not_before - timedelta(microseconds=1)
    times: list[datetime] = []
    fire = next_fire_time(spec, first, first)
    while fire is not None and fire + within <= end:
        if fire + within > start:
            times.append(fire)
            if len(times) > MAX_PER_PASS:
                del times[0]
        fire = next_fire_time(spec, fire, first)
    return times


def without_completion(
    occurrences: Sequence[datetime], expected_within: float, completions: Sequence[datetime]
) -> list[datetime]:
    """The occurrences with no completion in [occurrence, occurrence + expected_within];
    `completions` sorted."""
    within = timedelta(seconds=expected_within)
    missed = []
    for occurrence in occurrences:
        index = bisect_left(completions, occurrence)
        if index == len(completions) or completions[index] > occurrence + within:
            missed.append(occurrence)
    return missed
