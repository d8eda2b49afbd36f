"""One copy of each equal frozen value that many loaded schedules hold.

Rows of a varied install repeat frozen values (one start_date for a batch of rows, a "daily at
02:00" rule, an interval of one hour, every `*` month of a cron as the same 12-value set) while
their configuration texts differ, so the parse cache does not share them: equal values are
shared here, up to a bound, instead of held once per row (at 100,000 varied rows, ~100 B per
schedule).
"""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T")
_SHARED: dict[object, object] = {}
_MAX_SHARED = 65_536


def shared(value: _T) -> _T:
    """`value`, or an equal one seen before (frozen values only: rules, UTC instants, periods,
    tuples and frozensets of numbers)."""
    found = _SHARED.get(value)
    if found is not None:
        return found  # type: ignore[return-value]  # equal, hence of the same type
    if len(_SHARED) < _MAX_SHARED:
        _SHARED[value] = value
    return value
