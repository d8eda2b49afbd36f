"""The schedules loaded into this instance, each with its parsed time specification.

The watch side fills it (and keeps it equal to the rows); the engine reads it to build
occurrences. Pure: parsing reads no clock and does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from services.errors import InvalidScheduleError
from services.model.celery_payload import celery_payload_problems
from services.model.occurrence import LoadedSchedule
from services.model.records import Schedule
from services.model.spec import parse_schedule
from services.model.vocabulary import JobType


class Catalog:
    def __init__(
        self, default_timezone: str, *, celery_task_allowlist: Sequence[str] | None = None
    ) -> None:
        self.default_timezone = default_timezone
        # The daemon's CELERY_TASK_ALLOWLIST; None (previews in the CLI and API) checks the shape.
        self.celery_task_allowlist = celery_task_allowlist
        self._loaded: dict[UUID, LoadedSchedule] = {}

    def __len__(self) -> int:
        return len(self._loaded)

    def get(self, schedule_id: UUID) -> LoadedSchedule | None:
        return self._loaded.get(schedule_id)

    def ids(self) -> set[UUID]:
        return set(self._loaded)

    def put(self, loaded: LoadedSchedule) -> None:
        self._loaded[loaded.schedule_id] = loaded

    def pop(self, schedule_id: UUID) -> bool:
        return self._loaded.pop(schedule_id, None) is not None

    def parse(self, schedule: Schedule) -> LoadedSchedule:
        """Raises InvalidScheduleError with the reason `last_error` gets."""
        if not isinstance(schedule.payload, dict):  # hand-made rows can hold anything
            raise InvalidScheduleError(f"payload must be a JSON object, got {schedule.payload!r}")
        if schedule.job_type == JobType.CELERY:
            problems = celery_payload_problems(schedule.payload, self.celery_task_allowlist)
            if problems:
                raise InvalidScheduleError("; ".join(problems), problems=problems)
        spec = parse_schedule(
            schedule.frequency,
            schedule.time_config,
            default_timezone=self.default_timezone,
            schedule_id=str(schedule.schedule_id),
            created_at=schedule.created_at,
            config_json=schedule.time_config_json,
        )
        return LoadedSchedule(schedule, spec)
