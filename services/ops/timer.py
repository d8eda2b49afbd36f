"""One thread that calls things at given monotonic times (lock renewals, time-out backstops).

A thread per lock or per run cost more than the run itself at a few hundred runs per second
(starting a thread waits for it to be scheduled). Callbacks run on this thread, in due order,
and must be short; one that raises is logged and the thread goes on. A cancelled call forgets
its callback at once (so it keeps nothing alive), and the thread exits after IDLE_EXIT seconds
with nothing left to do (so a stopped daemon leaves no thread behind).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

from services.clock import SYSTEM_CLOCK, Clock
from services.log import get_logger
from services.process_wide import ProcessWide

log = get_logger(__name__)
MAX_WAIT = 3600.0  # the longest single wait for a deadline
IDLE_EXIT = 0.5  # seconds without any pending call before the thread exits


class TimerHandle:
    __slots__ = ("callback", "owner")

    def __init__(self, callback: Callable[[], None], owner: object = None) -> None:
        self.callback: Callable[[], None] | None = callback
        self.owner = owner  # what the call is about (e.g. a lock), for tests and debugging

    @property
    def cancelled(self) -> bool:
        return self.callback is None

    def cancel(self) -> None:
        self.callback = None


class TimerThread:
    def __init__(self, name: str = "timer", *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.clock = clock
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_at(
        self, due: float, callback: Callable[[], None], owner: object = None
    ) -> TimerHandle:
        """Call `callback` at clock.monotonic() >= due (soon after), unless cancelled first."""
        handle = TimerHandle(callback, owner)
        with self._wake:
            sequence = next(self._sequence)
            heapq.heappush(self._heap, (due, sequence, handle))
            # Cancelled calls stay in the heap until due: sweep now and then, not on every call.
            if sequence % 1024 == 0 and len(self._heap) > 2 * self.pending():
                self._purge()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is handle:
                self._wake.notify()  # only an earlier wake-up than planned needs the thread now
        return handle

    def call_later(
        self, delay: float, callback: Callable[[], None], owner: object = None
    ) -> TimerHandle:
        return self.call_at(self.clock.monotonic() + delay, callback, owner)

    def pending(self) -> int:
        return sum(1 for _, _, handle in self._heap if not handle.cancelled)

    def pending_handles(self) -> list[TimerHandle]:
        with self._wake:
            return [handle for _, _, handle in self._heap if not handle.cancelled]

    def _purge(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)

    def _next_call(self) -> Callable[[], None] | None:
        """Wait for the next due, live call; None when idle long enough to exit."""
        with self._wake:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    if not self._wake.wait(IDLE_EXIT) and not self._heap:
                        self._thread = None
                        return None
                    continue
                due = self._heap[0][0]
                now = self.clock.monotonic()
                if due > now:
                    # Capped: Condition.wait overflows (and kills this thread) beyond ~9.2e9 s,
                    # and a far deadline only needs checking now and then.
                    self._wake.wait(min(due - now, MAX_WAIT))
                    continue
                _, _, handle = heapq.heappop(self._heap)
                callback, handle.callback = handle.callback, None
                if callback is not None:
                    return callback

    def _loop(self) -> None:
        while (callback := self._next_call()) is not None:
            try:
                callback()
            except Exception:
                log.exception("timer.callback_failed", timer=self.name)


_shared: ProcessWide[TimerThread] = ProcessWide(lambda: TimerThread("timer"))


def shared_timer() -> TimerThread:
    """The process-wide timer thread, for locks used outside a daemon (the daemon has its own)."""
    return _shared.get()
