"""The APScheduler 3 trigger of a schedule: a thin adapter over `model.fire_times`."""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from services.model.fire_times import next_fire_time
from services.model.spec import ScheduleSpec


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """Fires by `next_fire_time`, jitter included: the one function behind `next_run` too."""

    __slots__ = ("spec",)

    def __init__(self, spec: ScheduleSpec) -> None:
        self.spec = spec

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return next_fire_time(self.spec, previous_fire_time, now)

    def __repr__(self) -> str:
        return f"<ScheduleTrigger {self.spec.frequency} zone={self.spec.timezone.key}>"
