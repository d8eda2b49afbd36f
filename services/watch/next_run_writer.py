"""Writes a bulk load's next_run values while the load goes on.

The start-up load computes next_run for every row; writing them is PostgreSQL's work (an UPDATE
of 10,000 rows at a time), parsing is Python's. Handed to this thread chunk by chunk as the load
produces them, the two run side by side: the database works on one core while the loader parses
on the other, instead of every write waiting for the last row to be parsed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from services.heap import release_free_memory
from services.log import get_logger
from services.model.records import NextRunWrite

log = get_logger(__name__)
NEXT_RUN_CHUNK = 10_000
ATTEMPTS = 3
THREAD_NAME = "next-run-writer"  # what benchmarks wait for
_DONE = None


class NextRunWriter:
    """`add` the writes of a load, then `finish`; a thread writes them a chunk at a time."""

    def __init__(
        self, write: Callable[[Sequence[NextRunWrite]], int], stop: threading.Event
    ) -> None:
        self._write = write
        self._stop = stop
        self._pending: list[NextRunWrite] = []
        self._chunks: queue.SimpleQueue[list[NextRunWrite] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def add(self, write: NextRunWrite) -> None:
        self._pending.append(write)
        if len(self._pending) >= NEXT_RUN_CHUNK:
            self._chunks.put(self._pending)
            self._pending = []

    def finish(self) -> None:
        """No more writes: the rest goes, and the thread ends after it."""
        if self._pending:
            self._chunks.put(self._pending)
            self._pending = []
        self._chunks.put(_DONE)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every write (tests); True once the thread is done."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not _DONE:
            if not self._stop.is_set():  # shutting down: the next start writes them
                self._write_chunk(chunk)
        release_free_memory()  # what the writes' parameters and results took, back to the system

    def _write_chunk(self, chunk: list[NextRunWrite]) -> None:
        # One lock order, fewer deadlocks with bulk edits. A row edited since the load keeps the
        # next_run its own pass wrote (the statement checks the configuration hash).
        chunk.sort(key=lambda pair: pair.schedule_id)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self._write(chunk)
                return
            except Exception as exc:  # e.g. the pool closed by a shutdown meanwhile
                # next_run is rewritten after every run: a gap only delays what it shows.
                log.warning(
                    "schedule.next_run_write_failed",
                    error=str(exc),
                    attempt=attempt,
                    rows=len(chunk),
                )
