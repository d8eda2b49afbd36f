"""Retries as one-off jobs: a failed attempt's next attempt, due at its backoff time.

The job id is the same on every instance (`retry_job_id`), so a retry scheduled twice (by its
own instance and by a recovery pass) is one job; the lock and the claim keep it to one run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from services.engine.firing import Planned, loaded_or_read
from services.errors import DatabaseError, DatabaseUnavailable, InvalidScheduleError
from services.log import get_logger
from services.model.occurrence import LoadedSchedule, Occurrence, ScheduleCatalog, retry_job_id
from services.model.records import Schedule
from services.model.vocabulary import RunTrigger
from services.scheduling.jobs import JobTable

log = get_logger(__name__)


class RetryScheduler:
    def __init__(
        self,
        jobs: JobTable,
        catalog: ScheduleCatalog,
        read_schedule: Callable[[UUID | str], Schedule | None],
    ) -> None:
        self.jobs = jobs
        self.catalog = catalog
        self.read_schedule = read_schedule

    def schedule(self, occ: Occurrence, due: datetime) -> None:
        job_id = retry_job_id(occ.loaded.schedule_id, occ.scheduled_for, occ.attempt)
        args = (str(occ.loaded.schedule_id), occ.scheduled_for, occ.attempt)
        self.jobs.add_once(job_id, due, self._fire, args)

    def loaded_for(self, schedule_id: UUID) -> LoadedSchedule | None:
        """The schedule a retry belongs to; None when it is gone, disabled, invalid or cannot be
        read now."""
        try:
            return loaded_or_read(self.catalog, self.read_schedule, schedule_id)
        except (InvalidScheduleError, DatabaseUnavailable, DatabaseError):
            return None

    def _fire(
        self,
        schedule_id: str,
        scheduled_for: datetime,
        attempt: int,
        run_times: Sequence[datetime] = (),
    ) -> list[Planned]:
        loaded = self.loaded_for(UUID(schedule_id))
        if loaded is None:
            log.info(
                "run.retry_dropped",
                schedule_id=schedule_id,
                attempt=attempt,
                reason="schedule removed or disabled",
            )
            return []
        occ = Occurrence(
            loaded,
            scheduled_for,
            run_times[-1],
            attempt,
            RunTrigger.RETRY,
            job_id=retry_job_id(schedule_id, scheduled_for, attempt),
        )
        return [(occ, None)]
