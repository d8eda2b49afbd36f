"""The schedules loaded into this instance, each with its parsed time specification.

The watch side fills it (and keeps it equal to the rows); the engine reads it to build
occurrences. Pure: parsing reads no clock and does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from services.errors import InvalidScheduleError
from services.model.celery_payload import celery_payload_problems
from services.model.nats_subject import nats_payload_problems
from services.model.occurrence import LoadedSchedule
from services.model.records import Schedule
from services.model.spec import parse_schedule
from services.model.vocabulary import JobType

# What is wrong with a row's payload for its job type, judged with the daemon's settings.
PayloadCheck = Callable[[str | None, Mapping[str, Any]], list[str]]


def job_payload_check(
    default_job_type: str,
    nats_subject_allowlist: Sequence[str],
    celery_task_allowlist: Sequence[str] = (),
) -> PayloadCheck:
    """The load-time payload check: a `nats` row whose subject NATS_SUBJECT_ALLOWLIST does not
    allow, or a `celery` row whose task CELERY_TASK_ALLOWLIST does not, becomes `invalid` at
    once, instead of failing at every run."""
    allowlist = tuple(nats_subject_allowlist)
    tasks = tuple(celery_task_allowlist)

    def problems(job_type: str | None, payload: Mapping[str, Any]) -> list[str]:
        effective = job_type or default_job_type
        if effective == JobType.NATS:
            return nats_payload_problems(payload, allowlist)
        if effective == JobType.CELERY:
            return celery_payload_problems(payload, tasks)
        return []

    return problems


class Catalog:
    def __init__(
        self, default_timezone: str, *, payload_problems: PayloadCheck | None = None
    ) -> None:
        self.default_timezone = default_timezone
        self._payload_problems = payload_problems
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
        if self._payload_problems is not None:
            problems = self._payload_problems(schedule.job_type, schedule.payload)
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
        schedule.release_config_text()
        return LoadedSchedule(schedule, spec)
