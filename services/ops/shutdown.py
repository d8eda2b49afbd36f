"""Graceful shutdown: stop firing, let running jobs finish, abandon the rest, release locks.

Bounded by SHUTDOWN_TIMEOUT (plus a second for the side threads) even with PostgreSQL or Redis
gone: a run that ignores its cancel event is recorded `abandoned` and its lock released here.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.clock import Clock
from services.engine.pipeline import RunPipeline
from services.engine.runner import JobRunner
from services.log import get_logger
from services.ops.sd_notify import sd_notify
from services.ops.service_thread import ServiceThread
from services.scheduling.executor import DIRECT_RUN_THREADS
from services.scheduling.jobs import JobTable
from services.store.executions import ExecutionStore

log = get_logger(__name__)
POLL_S = 0.05
CANCEL_GRACE_S = 1.5  # after the cancel: handlers that honour it end within this


class Joinable(Protocol):
    def join(self, timeout: float) -> None: ...


@dataclass
class Shutdown:
    stop: threading.Event
    jobs: JobTable
    pipeline: RunPipeline
    runner: JobRunner
    store: ExecutionStore
    loops: Sequence[ServiceThread]
    watcher: Joinable
    timeout: float
    clock: Clock
    remove_heartbeat: Callable[[], None]
    closers: Sequence[Callable[[], None]]  # in order, once everything has stopped
    # Once firing has stopped, before the wait for runs: hand our shards over now, not after
    # SHUTDOWN_TIMEOUT (with SHARD_REPLICAS=1 nobody else fires them meanwhile).
    leave_shards: Callable[[], None] = lambda: None
    _done: bool = False

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        self.stop.set()
        sd_notify("STOPPING=1")
        log.info("scheduler.stopping", running=len(self.runner.active_runs()))
        self.jobs.pause()
        self.leave_shards()
        deadline = self.clock.monotonic() + self.timeout
        # A batch being locked and claimed right now must register its runs before we look.
        self.pipeline.stop_starting(timeout=self.timeout)
        self._wait_for_runs(deadline)
        self.runner.stop_all()
        self._wait_for_runs(self.clock.monotonic() + CANCEL_GRACE_S)
        for run in self.runner.active_runs():
            # A handler that ignores its cancel event: record it and free its lock ourselves.
            self.store.abandon(run.execution_id, "the instance shut down before the run finished")
            if run.lock is not None:
                run.lock.release()
        self.pipeline.close(timeout=0.5)
        self.jobs.shutdown()
        # One deadline for all side threads (not one each): a dead PostgreSQL must not add up
        # to many seconds of joins past SHUTDOWN_TIMEOUT. They were told to stop when shutdown
        # began, so their time counts from then; one stuck in a call to a dead server is a
        # daemon thread and is left behind.
        join_by = max(deadline + 1.0, self.clock.monotonic() + 0.2)
        for loop in self.loops:
            loop.poke()
        for loop in self.loops:
            loop.join(max(0.0, join_by - self.clock.monotonic()))
        self.watcher.join(max(0.0, join_by - self.clock.monotonic()))
        self._write_pending()
        self.remove_heartbeat()
        for close in self.closers:
            close()
        log.info("scheduler.stopped")

    def _wait_for_runs(self, until: float) -> None:
        while self.runner.active_runs() and self.clock.monotonic() < until:
            self.clock.sleep(POLL_S)

    def _write_pending(self) -> None:
        if self.store.pending_count and not self.store.database_down:
            self.store.flush_pending()
        if self.store.pending_count:
            log.error(
                "scheduler.results_unwritten",
                count=self.store.pending_count,
                reason="PostgreSQL unreachable at shutdown",
            )


def exit_even_if_a_handler_hangs(code: int, clock: Clock) -> None:
    # The direct-run pool's threads are joined at interpreter exit (the pipeline's workers are
    # daemon threads); a python handler there that ignores its cancel event would keep the
    # process alive past SHUTDOWN_TIMEOUT. Its row is already abandoned and its lock released,
    # so leave now.
    deadline = clock.monotonic() + 0.5
    for thread in threading.enumerate():
        if thread.name.startswith(DIRECT_RUN_THREADS):
            thread.join(max(0.0, deadline - clock.monotonic()))
    if any(t.name.startswith(DIRECT_RUN_THREADS) and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
