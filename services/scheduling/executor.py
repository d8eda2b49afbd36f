"""An APScheduler 3 executor that hands the occurrence times to our own fire callback.

APScheduler's stock `run_job` hides which occurrences it is running and drops late ones on its
own (and, with coalescing, drops the earlier ones silently). We want every occurrence accounted
for, so jobs are called as `job.func(*job.args, run_times=[...])` on our worker pool, and the
callback decides what runs and what is recorded as skipped.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.executors.base import BaseExecutor

# The pool that runs what does not go through the pipeline (manual triggers, rechecks):
# handlers run there too, on threads the interpreter joins at exit.
DIRECT_RUN_THREADS = "direct-run"
OverlapCallback = Callable[[Any, list[datetime]], None]
# Takes a job's due occurrences without blocking; calls `done` once they are all accounted for.
DispatchCallback = Callable[[Any, list[datetime], Callable[[], None]], None]


class OccurrenceExecutor(BaseExecutor):  # type: ignore[misc]
    def __init__(
        self,
        max_workers: int,
        on_overlap: OverlapCallback,
        dispatch: DispatchCallback,
    ) -> None:
        super().__init__()
        self._max_workers = max_workers
        self._on_overlap = on_overlap
        self._dispatch = dispatch
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: defaultdict[str, int] = defaultdict(int)
        self._running_lock = threading.Lock()

    def route(self, *, dispatch: DispatchCallback, on_overlap: OverlapCallback) -> None:
        self._dispatch = dispatch
        self._on_overlap = on_overlap

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._max_workers, thread_name_prefix=DIRECT_RUN_THREADS
        )

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        # Replaces BaseExecutor.submit_job: an occurrence that finds the job's earlier run still
        # going on this instance is handed to on_overlap (recorded, counted) instead of vanishing
        # into a "maximum number of running instances" warning.
        assert self._pool is not None, "executor not started"
        with self._running_lock:
            overlapping = self._running[job.id] >= job.max_instances
            if not overlapping:
                self._running[job.id] += 1
        if overlapping:
            self._pool.submit(self._guard, self._on_overlap, job, run_times)
            return
        # On the scheduler's own thread: dispatch only queues (see RunPipeline).
        try:
            self._dispatch(job, run_times, lambda: self._finished(job.id))
        except Exception:
            self._finished(job.id)
            self._logger.exception("executor.dispatch_failed")

    def run_now(self, func: Callable[[], Any]) -> None:
        """Run a plain callable on the pool (rechecks, manual triggers)."""
        assert self._pool is not None, "executor not started"
        self._pool.submit(self._guard, func)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:  # pragma: no cover
        raise NotImplementedError("submit_job is overridden")  # abstract in BaseExecutor

    def _finished(self, job_id: str) -> None:
        with self._running_lock:
            self._running[job_id] -= 1
            if self._running[job_id] <= 0:
                del self._running[job_id]

    def _guard(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except BaseException:
            # The fire callback records its own failures; anything reaching here is a bug, and a
            # worker thread must survive it.
            self._logger.exception("executor.unhandled_error")
            if not isinstance(sys.exc_info()[1], Exception):
                raise
