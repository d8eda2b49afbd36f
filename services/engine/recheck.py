"""A second look at an occurrence another instance held the lock of.

Should that instance die after taking the lock but before claiming the occurrence, the
occurrence would vanish; so once its lock must have expired, this instance looks again and runs
it (or records it skipped, if now too late) unless a claim exists.
"""

from __future__ import annotations

import functools
import threading

from services.engine.runner import JobRunner
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.model.occurrence import Occurrence
from services.ops.timer import TimerThread
from services.scheduling.jobs import JobTable
from services.store.executions import ExecutionStore

log = get_logger(__name__)


class Rechecks:
    def __init__(
        self,
        store: ExecutionStore,
        runner: JobRunner,
        jobs: JobTable,
        timer: TimerThread,
        stop: threading.Event,
    ) -> None:
        self.store = store
        self.runner = runner
        self.jobs = jobs
        self.timer = timer
        self.stop = stop

    def later(self, occ: Occurrence, delay: float) -> None:
        self.timer.call_later(delay, functools.partial(self._submit, occ))

    def _submit(self, occ: Occurrence) -> None:
        if not self.stop.is_set():
            self.jobs.run_now(functools.partial(self.check, occ))

    def check(self, occ: Occurrence) -> None:
        try:
            if self.store.occurrence_exists(occ.key()):
                return
        except (DatabaseUnavailable, DatabaseError):
            pass  # the run below parks it until PostgreSQL returns
        log.warning(
            "run.recheck_unclaimed",
            schedule_id=str(occ.loaded.schedule_id),
            scheduled_for=occ.scheduled_for.isoformat(),
            attempt=occ.attempt,
        )
        self.runner.run(occ)
