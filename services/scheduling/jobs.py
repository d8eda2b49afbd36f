"""The job table: APScheduler 3 behind one adapter, so no other room touches its internals.

One BackgroundScheduler per daemon, with our heap job store and our executor. A schedule is one
job (`put`, `discard`), a retry is a one-off job (`add_once`); when jobs fall due the executor
hands their occurrence times to `dispatch`, which decides what runs. Callers never see
APScheduler objects except through `get_job` (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from services.model.spec import ScheduleSpec
from services.scheduling.executor import DispatchCallback, OccurrenceExecutor, OverlapCallback
from services.scheduling.job_store import HeapJobStore


class JobTable:
    def __init__(self, *, max_workers: int, max_instances: int) -> None:
        self.max_instances = max_instances
        self.store = HeapJobStore(max_instances)
        self.executor = OccurrenceExecutor(
            max_workers, on_overlap=_unrouted, dispatch=_unrouted_dispatch
        )
        self._scheduler = BackgroundScheduler(
            jobstores={"default": self.store},
            executors={"default": self.executor},
            job_defaults={
                "coalesce": False,  # we coalesce ourselves, recording what we drop
                "max_instances": max_instances,
                "misfire_grace_time": None,  # checked by the runner, per schedule
            },
            timezone="UTC",
        )

    def route(self, *, dispatch: DispatchCallback, on_overlap: OverlapCallback) -> None:
        """Where due jobs go (the firing policy); set once, before start. The policy needs this
        table for its retries, so it cannot be handed over at construction."""
        self.executor.route(dispatch=dispatch, on_overlap=on_overlap)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def start(self, *, paused: bool = False) -> None:
        self._scheduler.start(paused=paused)

    def resume(self) -> None:
        self._scheduler.resume()

    def pause(self) -> None:
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def wakeup(self) -> None:
        """Look at the next fire time again (it may be earlier after a batch of changes)."""
        self._scheduler.wakeup()

    # -- jobs ---------------------------------------------------------------------------------

    def put(
        self,
        job_id: str,
        spec: ScheduleSpec,
        *,
        first: datetime,
        fire: Callable[..., Any],
    ) -> None:
        """Add or replace the job of a schedule; it calls `fire(job_id, run_times=[...])`. The
        job's name is its id: 100,000 schedules need no second label."""
        # The scheduler's own lock: its loop must not interleave with this replacement.
        with self._scheduler._jobstores_lock:
            self.store.put_schedule(job_id, spec, fire, first)

    def discard(self, job_id: str) -> bool:
        with self._scheduler._jobstores_lock:
            return self.store.discard_job(job_id)

    def pending_fire(self, job_id: str) -> datetime | None:
        """The job's next fire time as the scheduler holds it (None when it has no job)."""
        return self.store.next_run_time_of(job_id)

    def add_once(
        self, job_id: str, due: datetime, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> None:
        """A one-off job at `due` (a retry); an existing job of that id is replaced."""
        self._scheduler.add_job(
            func, DateTrigger(run_date=due), id=job_id, replace_existing=True, args=args
        )

    def get_job(self, job_id: str) -> Job | None:
        return self._scheduler.get_job(job_id)

    def run_now(self, func: Callable[[], Any]) -> None:
        """Run a plain callable on the executor's pool (rechecks)."""
        self.executor.run_now(func)


def _unrouted(job: Any, run_times: list[datetime]) -> None:
    raise RuntimeError(f"job {job.id} fell due before JobTable.route() was called")


def _unrouted_dispatch(job: Any, run_times: list[datetime], done: Callable[[], None]) -> None:
    _unrouted(job, run_times)
