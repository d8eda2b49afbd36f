"""Occurrences due together start together, and finished runs are recorded together.

Three stages, so that a thousand occurrences due in the same second cost a few round trips
instead of four each:
- the starter thread takes as many queued occurrences as there are free slots and begins them
  at once (`JobRunner.begin`: one Redis round trip for their locks, one statement for their
  claims);
- each begun occurrence runs its handler on a worker (`JobRunner.execute`);
- the completer thread records the runs that ended meanwhile (`JobRunner.complete`: one
  statement for their results, one Redis round trip to release their locks).

An occurrence waits in the queue unlocked and unclaimed, so another instance with idle workers
is free to take it. Slots are twice the workers: while one batch runs, the next is being locked
and claimed (a round trip takes longer than a short job), and no instance holds more than
MAX_WORKERS claimed occurrences that wait for a worker. A slot is free again as soon as its
handler returns.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers import JobOutcome
from services.engine.runner import JobRunner
from services.engine.runs import Begun, Ended
from services.log import get_logger
from services.model.occurrence import Occurrence

log = get_logger(__name__)
MAX_BATCH = 500  # occurrences begun, or runs completed, per round trip
GATHER_SECONDS = 0.003  # an idle starter waits this long for the rest of a burst


@dataclass(frozen=True, slots=True)
class _Item:
    occurrence: Occurrence
    done: Callable[[], None] | None
    skip: tuple[str, str] | None = None  # (reason, kind): record as skipped, do not run


class RunPipeline:
    def __init__(self, runner: JobRunner, workers: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.runner = runner
        # Handlers run on the pipeline's own threads, fed by a SimpleQueue: a thread pool's
        # Future per run cost more than the queue's put and get.
        self._tasks: queue.SimpleQueue[_WorkerTask | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"job-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        self._free_slots = 2 * workers
        self._queue: deque[_Item] = deque()
        self._ended: deque[tuple[Ended, Callable[[], None] | None]] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._closed = False
        self._beginning = False  # the starter is locking and claiming a batch
        self._starter = threading.Thread(target=self._start_loop, name="run-starter", daemon=True)
        self._completer = threading.Thread(
            target=self._complete_loop, name="run-completer", daemon=True
        )

    def start(self) -> None:
        for worker in self._workers:
            worker.start()
        self._starter.start()
        self._completer.start()

    def submit(
        self,
        occurrence: Occurrence,
        done: Callable[[], None] | None = None,
        *,
        skip: tuple[str, str] | None = None,
    ) -> None:
        """Queue an occurrence to run (or, with `skip=(reason, kind)`, to record as skipped);
        `done` is called once it is fully accounted for. Never blocks."""
        with self._wake:
            if self._stopping:
                dropped = True
            else:
                dropped = False
                self._queue.append(_Item(occurrence, done, skip))
                self._wake.notify_all()
        if dropped:
            _call(done)

    def reserve(self, count: int) -> int:
        """Take up to `count` free slots for runs begun elsewhere (the queue loop); returns
        how many. Each must be given back (`release`) or used (`run_begun`)."""
        with self._wake:
            taken = 0 if self._stopping else max(0, min(count, self._free_slots))
            self._free_slots -= taken
            return taken

    def release(self, slots: int) -> None:
        self._free(slots)

    def run_begun(self, begun: Begun) -> None:
        """A begun run (its slot reserved) to a worker; its end goes to the completer."""
        self._tasks.put(_WorkerTask(self, begun, None))

    def queued(self) -> int:
        with self._wake:
            return len(self._queue)

    def stop_starting(self, timeout: float = 10.0) -> None:
        """Shutdown, first step: begin nothing more. Queued occurrences are dropped (logged):
        never locked nor claimed, they are the next start's catch-up. Returns once a batch
        being begun is through (its runs registered as active, so the shutdown sees them), or
        after `timeout`."""
        with self._wake:
            self._stopping = True
            dropped = list(self._queue)
            self._queue.clear()
            self._wake.notify_all()
            self._wake.wait_for(lambda: not self._beginning, timeout)
        for item in dropped:
            _call(item.done)
        if dropped:
            log.warning("pipeline.dropped_at_shutdown", occurrences=len(dropped))

    def close(self, timeout: float) -> None:
        """Shutdown, last step (after the running jobs ended): record what is left, stop."""
        with self._wake:
            self._stopping = self._closed = True
            self._wake.notify_all()
        # Runs never handed to a worker were abandoned by the shutdown: do not start them now.
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                _call(task.done)
        for _ in self._workers:
            self._tasks.put(None)
        deadline = self.clock.monotonic() + timeout
        for thread in (self._starter, self._completer, *self._workers):
            if thread.ident is not None:  # never started when start-up failed early
                thread.join(max(0.0, deadline - self.clock.monotonic()))

    # -- starter ----------------------------------------------------------------------------

    def _next_batch(self) -> list[_Item] | None:
        with self._wake:
            idle = not self._queue
            while not self._stopping and not (self._queue and self._free_slots > 0):
                self._wake.wait()
            if idle:
                # The first of a burst: APScheduler hands over the others one by one within
                # milliseconds. A moment's wait lets them go in this batch, not the next.
                gather_until = self.clock.monotonic() + GATHER_SECONDS
                while not self._stopping and len(self._queue) < self._free_slots:
                    left = gather_until - self.clock.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
            if self._stopping:
                return None
            # Skips need no slot: take them all, plus as many runs as there are free slots.
            batch: list[_Item] = []
            runs = 0
            while self._queue and len(batch) < MAX_BATCH:
                if self._queue[0].skip is None:
                    if runs == self._free_slots:
                        break
                    runs += 1
                batch.append(self._queue.popleft())
            self._free_slots -= runs
            self._beginning = True
            return batch

    def _start_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._start(batch)
            except Exception:  # a bug here must not stop every future run
                log.exception("pipeline.start_failed", occurrences=len(batch))
            finally:
                with self._wake:
                    self._beginning = False
                    self._wake.notify_all()

    def _start(self, batch: list[_Item]) -> None:
        for item in batch:
            if item.skip is not None:
                try:
                    self.runner.skip(item.occurrence, *item.skip)
                finally:
                    _call(item.done)
        items = [item for item in batch if item.skip is None]
        if not items:
            return
        answers: list[Begun | object] = []
        try:
            answers = list(self.runner.begin([item.occurrence for item in items]))
        finally:
            begun = sum(isinstance(answer, Begun) for answer in answers)
            self._free(len(items) - begun)  # slots reserved for occurrences that will not run
            if not answers:  # begin() failed: nothing of this batch will ever be done
                for item in items:
                    _call(item.done)
        for item, answer in zip(items, answers, strict=True):
            if isinstance(answer, Begun):
                self._tasks.put(_WorkerTask(self, answer, item.done))
            else:
                _call(item.done)

    def _free(self, slots: int) -> None:
        if slots:
            with self._wake:
                self._free_slots += slots
                self._wake.notify_all()

    # -- workers and completer ---------------------------------------------------------------

    def _work_loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            task()

    def _handler_returned(self, ended: Ended, done: Callable[[], None] | None) -> None:
        with self._wake:
            self._ended.append((ended, done))
            self._free_slots += 1
            self._wake.notify_all()

    def _next_ended(self) -> list[tuple[Ended, Callable[[], None] | None]] | None:
        with self._wake:
            while not self._ended:
                if self._closed:
                    return None
                self._wake.wait()
            count = min(len(self._ended), MAX_BATCH)
            return [self._ended.popleft() for _ in range(count)]

    def _complete_loop(self) -> None:
        while (batch := self._next_ended()) is not None:
            try:
                self.runner.complete([ended for ended, _ in batch])
            except Exception:  # complete() released the locks; the rows are the reaper's
                log.exception("pipeline.complete_failed", runs=len(batch))
            for _, done in batch:
                _call(done)


class _WorkerTask:
    """The handler of one begun occurrence, on a worker; its end goes to the completer."""

    __slots__ = ("begun", "done", "pipeline")

    def __init__(
        self, pipeline: RunPipeline, begun: Begun, done: Callable[[], None] | None
    ) -> None:
        self.pipeline = pipeline
        self.begun = begun
        self.done = done

    def __call__(self) -> None:
        try:
            ended = self.pipeline.runner.execute(self.begun)
        except Exception as exc:  # execute() contains handler errors; this is a last resort
            log.exception("pipeline.execute_failed")
            ended = Ended(
                self.begun, JobOutcome.failure(type(exc).__name__, str(exc), retryable=False), 0.0
            )
        self.pipeline._handler_returned(ended, self.done)


def _call(callback: Callable[[], None] | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:
        log.exception("pipeline.done_callback_failed")
