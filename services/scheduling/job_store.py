"""An APScheduler 3 job store built for 100,000 schedules: a dict plus a heap of fire times.

APScheduler's MemoryJobStore keeps a sorted list (every add or reschedule is an O(n) insert),
and `Job(...)` inspects the callable's signature for every job. Loading 100,000 schedules that
way took most of a 45 s start-up. Here adds and reschedules are O(log n) heap pushes (stale
entries are skipped when they reach the top), and schedule jobs are built directly: they all
call the same, already-checked function.
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
    next_run_time: datetime,
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


class HeapJobStore(BaseJobStore):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, Job] = {}
        # job id -> the sequence number of its live heap entry: numbers are never reused, so the
        # number alone tells a live entry from a stale one (no per-job tuple, ~80 B a job).
        self._current: dict[str, int] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._jobs)

    def _push(self, job: Job) -> None:
        if job.next_run_time is None:  # a paused job: kept, never due
            self._current.pop(job.id, None)
            return
        sequence = next(self._sequence)
        self._current[job.id] = sequence
        heapq.heappush(self._heap, (datetime_to_utc_timestamp(job.next_run_time), sequence, job.id))
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
        return self._jobs.get(job_id)

    def get_due_jobs(self, now: datetime) -> list[Job]:
        limit = datetime_to_utc_timestamp(now)
        due: list[tuple[float, int, str]] = []
        with self._lock:
            while (top := self._top()) is not None and top[0] <= limit:
                due.append(heapq.heappop(self._heap))
            for entry in due:  # still live until the scheduler updates or removes each job
                heapq.heappush(self._heap, entry)
            return [self._jobs[job_id] for _, _, job_id in due]

    def get_next_run_time(self) -> datetime | None:
        with self._lock:
            top = self._top()
            return None if top is None else self._jobs[top[2]].next_run_time

    def get_all_jobs(self) -> list[Job]:
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted(jobs, key=lambda j: (j.next_run_time is None, j.next_run_time or 0))

    def add_job(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ConflictingIdError(job.id)
            self._jobs[job.id] = job
            self._push(job)

    def update_job(self, job: Job) -> None:
        with self._lock:
            if job.id not in self._jobs:
                raise JobLookupError(job.id)
            self._jobs[job.id] = job
            self._push(job)

    def put_job(self, job: Job) -> None:
        """Add or replace."""
        with self._lock:
            self._jobs[job.id] = job
            self._push(job)

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
