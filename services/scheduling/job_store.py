"""An APScheduler 3 job store built for 100,000 schedules: a dict plus a heap of fire times.

APScheduler's MemoryJobStore keeps a sorted list (every add or reschedule is an O(n) insert),
and `Job(...)` inspects the callable's signature for every job. Loading 100,000 schedules that
way took most of a 45 s start-up. Here adds and reschedules are O(log n) heap pushes (stale
entries are skipped when they reach the top), and schedule jobs are built directly: they all
call the same, already-checked function.

A schedule's job is kept as a `ScheduleEntry` (its spec, callable and next fire time: 56 B)
rather than a Job (a Job, its args tuple and its trigger: ~240 B, at 100,000 schedules 18 MB).
APScheduler is handed a Job built from the entry whenever it asks for one (due jobs, lookups);
when it stores the job back (`update_job`), only the new fire time is kept.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from datetime import datetime
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.util import datetime_to_utc_timestamp

from services.model.spec import ScheduleSpec
from services.scheduling.trigger import ScheduleTrigger

# Every schedule job is called with its id alone (the executor passes run_times itself), so
# they share one empty kwargs mapping instead of holding one each (64 B a job). Nothing
# modifies a job's kwargs: our jobs are replaced, never modified in place.
_NO_KWARGS: dict[str, Any] = {}


def build_job(
    scheduler: Any,
    *,
    job_id: str,
    func: Any,
    trigger: Any,
    args: tuple[Any, ...],
    name: str,
    next_run_time: datetime | None,
    max_instances: int,
    executor: str = "default",
) -> Job:
    """A Job with every attribute Job.__init__ would set, without re-checking `func`."""
    job = Job.__new__(Job)
    job._scheduler = scheduler
    job._jobstore_alias = "default"
    job.id = job_id
    job.func = func
    job.func_ref = None
    job.trigger = trigger
    job.executor = executor
    job.args = args
    job.kwargs = _NO_KWARGS
    job.name = name
    job.misfire_grace_time = None  # checked by the runner, per schedule
    job.coalesce = False  # coalescing is done (and recorded) by the fire callback
    job.max_instances = max_instances
    job.next_run_time = next_run_time
    return job


class ScheduleEntry:
    """What a schedule's job needs between fires; a Job is built from it on demand."""

    __slots__ = ("func", "next_run_time", "spec")

    def __init__(self, spec: ScheduleSpec, func: Any, next_run_time: datetime | None) -> None:
        self.spec = spec
        self.func = func
        self.next_run_time = next_run_time


def _entry_of(job: Job) -> ScheduleEntry | Job:
    """A schedule's job as an entry (its trigger, args and kwargs are what `job` would get back
    from `ScheduleEntry`); any other job (a retry's DateTrigger) stays a Job."""
    if (
        isinstance(job.trigger, ScheduleTrigger)
        and job.args == (job.id,)
        and not job.kwargs
        and job.executor == "default"
    ):
        return ScheduleEntry(job.trigger.spec, job.func, job.next_run_time)
    return job


class HeapJobStore(BaseJobStore):  # type: ignore[misc]
    def __init__(self, max_instances: int = 1) -> None:
        super().__init__()
        self.max_instances = max_instances
        self._jobs: dict[str, ScheduleEntry | Job] = {}
        # job id -> the sequence number of its live heap entry: numbers are never reused, so the
        # number alone tells a live entry from a stale one (no per-job tuple, ~80 B a job).
        self._current: dict[str, int] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._jobs)

    def _job(self, job_id: str, stored: ScheduleEntry | Job) -> Job:
        if isinstance(stored, Job):
            return stored
        return build_job(
            self._scheduler,
            job_id=job_id,
            func=stored.func,
            trigger=ScheduleTrigger(stored.spec),
            args=(job_id,),
            name=job_id,
            next_run_time=stored.next_run_time,
            max_instances=self.max_instances,
        )

    def _store(self, job_id: str, stored: ScheduleEntry | Job) -> None:
        self._jobs[job_id] = stored
        next_run_time = stored.next_run_time
        if next_run_time is None:  # a paused job: kept, never due
            self._current.pop(job_id, None)
            return
        sequence = next(self._sequence)
        self._current[job_id] = sequence
        heapq.heappush(self._heap, (datetime_to_utc_timestamp(next_run_time), sequence, job_id))
        if len(self._heap) > 2 * len(self._current) + 1024:  # too many stale entries: compact
            self._heap = [entry for entry in self._heap if self._current.get(entry[2]) == entry[1]]
            heapq.heapify(self._heap)

    def _top(self) -> tuple[float, int, str] | None:
        """The earliest live heap entry, dropping stale ones on the way."""
        while self._heap:
            _, seq, job_id = self._heap[0]
            if self._current.get(job_id) == seq:
                return self._heap[0]
            heapq.heappop(self._heap)
        return None

    def lookup_job(self, job_id: str) -> Job | None:
        stored = self._jobs.get(job_id)
        return None if stored is None else self._job(job_id, stored)

    def next_run_time_of(self, job_id: str) -> datetime | None:
        """A job's next fire time, without building its Job (None when it has no job)."""
        stored = self._jobs.get(job_id)
        return None if stored is None else stored.next_run_time

    def get_due_jobs(self, now: datetime) -> list[Job]:
        limit = datetime_to_utc_timestamp(now)
        due: list[tuple[float, int, str]] = []
        with self._lock:
            while (top := self._top()) is not None and top[0] <= limit:
                due.append(heapq.heappop(self._heap))
            for entry in due:  # still live until the scheduler updates or removes each job
                heapq.heappush(self._heap, entry)
            return [self._job(job_id, self._jobs[job_id]) for _, _, job_id in due]

    def get_next_run_time(self) -> datetime | None:
        with self._lock:
            top = self._top()
            return None if top is None else self._jobs[top[2]].next_run_time

    def get_all_jobs(self) -> list[Job]:
        with self._lock:
            jobs = [self._job(job_id, stored) for job_id, stored in self._jobs.items()]
        return sorted(jobs, key=lambda j: (j.next_run_time is None, j.next_run_time or 0))

    def add_job(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ConflictingIdError(job.id)
            self._store(job.id, _entry_of(job))

    def update_job(self, job: Job) -> None:
        with self._lock:
            if job.id not in self._jobs:
                raise JobLookupError(job.id)
            self._store(job.id, _entry_of(job))

    def put_job(self, job: Job) -> None:
        """Add or replace."""
        with self._lock:
            self._store(job.id, _entry_of(job))

    def put_schedule(
        self, job_id: str, spec: ScheduleSpec, func: Any, next_run_time: datetime
    ) -> None:
        """Add or replace a schedule's job (called as `func(job_id, run_times=...)`), without
        building a Job for it."""
        with self._lock:
            self._store(job_id, ScheduleEntry(spec, func, next_run_time))

    def remove_job(self, job_id: str) -> None:
        with self._lock:
            if self._jobs.pop(job_id, None) is None:
                raise JobLookupError(job_id)
            self._current.pop(job_id, None)

    def discard_job(self, job_id: str) -> bool:
        with self._lock:
            self._current.pop(job_id, None)
            return self._jobs.pop(job_id, None) is not None

    def remove_all_jobs(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._current.clear()
            self._heap.clear()

    def shutdown(self) -> None:
        self.remove_all_jobs()
