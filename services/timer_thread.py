"""One thread that calls things at given monotonic times (lock renewals, time-out backstops).

A thread per lock or per run cost more than the run itself at a few hundred runs per second
(starting a thread waits for it to be scheduled). Callbacks run on this thread, in due order,
and must be short; one that raises is logged and the thread goes on.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from services.logging import get_logger

log = get_logger(__name__)


class TimerHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerThread:
    def __init__(self, name: str = "timer") -> None:
        self.name = name
        self._heap: list[tuple[float, int, TimerHandle, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_at(self, due: float, callback: Callable[[], None]) -> TimerHandle:
        """Call `callback` at time.monotonic() >= due (soon after), unless cancelled first."""
        handle = TimerHandle()
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._sequence), handle, callback))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(time.monotonic() + delay, callback)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                _, _, handle, callback = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            try:
                callback()
            except Exception:
                log.exception("timer.callback_failed", timer=self.name)


_shared: TimerThread | None = None
_shared_lock = threading.Lock()


def shared_timer() -> TimerThread:
    """The process-wide timer thread."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TimerThread("timer")
        return _shared
