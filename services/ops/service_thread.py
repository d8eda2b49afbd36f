"""Named side loops (heartbeat, reaper, result writer, ...) that never die silently.

Each loop waits on the stop event with its interval as time-out (so it wakes at once on
shutdown, or early when poked), runs one step, and logs any exception instead of dying. The
daemon's main loop checks they are alive and restarts, loudly, any that died anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from services.log import get_logger

log = get_logger(__name__)


class ServiceThread:
    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval: float,
        stop: threading.Event,
        *,
        run_first: bool = True,
    ) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self.stop = stop
        self.run_first = run_first
        self.wake = threading.Event()
        self.restarts = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Run the next step now instead of at the end of the interval."""
        self.wake.set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_alive(self) -> None:
        if self._thread is not None and not self._thread.is_alive() and not self.stop.is_set():
            self.restarts += 1
            log.error("thread.died_restarting", thread=self.name, restarts=self.restarts)
            self.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        first = self.run_first
        while not self.stop.is_set():
            if not first:
                self.wake.wait(self.interval)
                self.wake.clear()
                if self.stop.is_set():
                    break
            first = False
            try:
                self.step()
            except Exception:
                log.exception("thread.step_failed", thread=self.name)
