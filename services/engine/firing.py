"""Firing policy: what becomes of the occurrences APScheduler finds due.

A schedule's job hands over its due times; coalescing keeps the latest and records the others
`skipped`; an occurrence that finds the schedule's earlier run still going on this instance is
recorded `skipped` too (JOB_MAX_INSTANCES). Everything that runs goes to the run pipeline, which
locks, claims and runs it. Manual triggers and catch-up runs enter here as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from services.clock import Clock
from services.engine.pipeline import RunPipeline
from services.engine.runner import JobRunner
from services.errors import ScheduleNotFound
from services.model.occurrence import LoadedSchedule, Occurrence, RunReport, ScheduleCatalog
from services.model.overlap import OverlapPolicy
from services.model.records import Schedule
from services.model.vocabulary import RunTrigger

# An occurrence to run, or to record as skipped with (reason, kind).
Planned = tuple[Occurrence, tuple[str, str] | None]
COALESCED = ("coalesced: a later occurrence was due at the same time", "coalesced")


class FiringPolicy:
    def __init__(
        self,
        *,
        catalog: ScheduleCatalog,
        read_schedule: Callable[[UUID | str], Schedule | None],
        runner: JobRunner,
        pipeline: RunPipeline,
        clock: Clock,
        coalesce: bool,
        max_instances: int,
    ) -> None:
        self.catalog = catalog
        self.read_schedule = read_schedule
        self.runner = runner
        self.pipeline = pipeline
        self.clock = clock
        self.coalesce = coalesce
        self.max_instances = max_instances

    # -- APScheduler's side: the executor's hooks ----------------------------------------------

    def dispatch(self, job: Any, run_times: list[datetime], done: Callable[[], None]) -> None:
        """On the scheduler's thread: queue a job's due occurrences; `done` once all are."""
        planned: list[Planned] = job.func(*job.args, run_times=run_times, **job.kwargs)
        if not planned:
            done()
            return
        countdown = _Countdown(len(planned), done)
        for occ, skip in planned:
            self.pipeline.submit(occ, countdown.tick, skip=skip)

    def fire(self, schedule_id: str, run_times: Sequence[datetime] = ()) -> list[Planned]:
        """A schedule's job: its due occurrences, each to run or (coalesced) to record skipped."""
        loaded = self.catalog.get(UUID(schedule_id))
        if loaded is None:
            return []
        due = list(run_times)
        planned: list[Planned] = []
        if self.coalesce and len(due) > 1:
            planned = [
                (Occurrence(loaded, moment, moment, job_id=schedule_id), COALESCED)
                for moment in due[:-1]
            ]
            due = due[-1:]
        planned += [
            (Occurrence(loaded, moment, moment, job_id=schedule_id), None) for moment in due
        ]
        return planned

    def on_overlap(self, job: Any, run_times: list[datetime]) -> None:
        loaded = self.catalog.get(UUID(str(job.args[0]))) if job.args else None
        if loaded is None:
            return
        if loaded.spec.overlap_policy is not OverlapPolicy.SKIP:
            # The schedule's overlap policy decides at the lock, as for a run on another
            # instance (engine/overlap.py); the executor's slot stays with the earlier run.
            for occ, skip in self.fire(str(loaded.schedule_id), run_times):
                self.pipeline.submit(replace(occ, job_id=job.id), skip=skip)
            return
        for moment in run_times:
            self.runner.skip(
                Occurrence(loaded, moment, moment, job_id=job.id),
                "the previous run of this schedule is still going on this instance "
                f"(JOB_MAX_INSTANCES={self.max_instances})",
                "overlap",
            )

    # -- the watch side's sink (catch-up at load) -----------------------------------------------

    def submit(self, occ: Occurrence) -> None:
        self.pipeline.submit(occ)

    def skip(self, occ: Occurrence, reason: str, kind: str) -> RunReport:
        return self.runner.skip(occ, reason, kind)

    # -- on request -------------------------------------------------------------------------

    def trigger_now(self, schedule_id: UUID | str, at: datetime | None = None) -> RunReport:
        """Run a schedule now (trigger='manual'), under the same lock and history; blocks.
        `at`: the occurrence, when a request names one (its requested_at: run by whoever
        claims the request, it still has one row at most); else this millisecond."""
        loaded = self.catalog.get(UUID(str(schedule_id))) or self.catalog.parse(
            self.require_schedule(schedule_id)
        )
        moment = self.clock.now()
        now = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        occurrence = now if at is None else at
        job_id = f"manual:{schedule_id}"
        report = self.runner.run(
            Occurrence(loaded, occurrence, now, trigger=RunTrigger.MANUAL, job_id=job_id)
        )
        if at is not None and report.execution_id is None and report.status == "conflict":
            # Run before, by a claimant that died before saying so: that run is the answer.
            found = self.runner.store.occurrence_row(
                Occurrence(loaded, occurrence, now, trigger=RunTrigger.MANUAL).key()
            )
            if found is not None:
                return RunReport(found[0], found[1], "run earlier for this request")
        return report

    def require_schedule(self, schedule_id: UUID | str) -> Schedule:
        schedule = self.read_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFound(schedule_id)
        return schedule


def loaded_or_read(
    catalog: ScheduleCatalog,
    read_schedule: Callable[[UUID | str], Schedule | None],
    schedule_id: UUID,
) -> LoadedSchedule | None:
    """The schedule as loaded, or, for a `once` whose only occurrence has passed (no longer
    loaded), read again. None when it is gone or disabled. Raises what reading raises."""
    loaded = catalog.get(schedule_id)
    if loaded is not None:
        return loaded
    schedule = read_schedule(schedule_id)
    return catalog.parse(schedule) if schedule is not None and schedule.enabled else None


class _Countdown:
    """Calls `done` after `count` ticks: a job is finished when all its occurrences are."""

    def __init__(self, count: int, done: Callable[[], None]) -> None:
        self._left = count
        self._done = done
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._left -= 1
            finished = self._left == 0
        if finished:
            self._done()
