"""The global pause as this instance knows it: the switch the runner asks before it starts a run.

The state lives in PostgreSQL (`scheduler_state`, `store/scheduler_state.py`). The daemon reads
it once at start-up, before the first fire, so that an instance started during a pause stays
paused; then the `pause-switch` side loop reads it every REFRESH_SECONDS, and a notification on
the `scheduler_state` channel pokes that loop at once. Polling alone keeps the promise that,
within a second of a pause, no instance starts a run: a notification can be lost while the
listener reconnects. With PostgreSQL unreachable the last known state holds (logged once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from services.errors import DatabaseError, DatabaseUnavailable, StartupError
from services.log import get_logger
from services.model.records import NOT_PAUSED, SchedulerPause

log = get_logger(__name__)
REFRESH_SECONDS = 0.5  # a pause reaches every instance within this (plus one read)


class PauseSwitch:
    def __init__(self, read: Callable[[], SchedulerPause]) -> None:
        self.read = read
        # One reference, replaced whole: readers on other threads never see half a state.
        self._state: SchedulerPause | None = None
        self._unreadable = False  # the last read failed (logged once until one succeeds)
        self._first_read = threading.Lock()

    @property
    def current(self) -> SchedulerPause:
        """The last state read (what `status` shows); never blocks, not paused until read."""
        return self._state or NOT_PAUSED

    def skip_reason(self) -> str | None:
        """Why an occurrence must not start now (`scheduler paused: <note>`), or None."""
        state = self._state or self._read_first()
        return state.skip_reason if state.paused else None

    def _read_first(self) -> SchedulerPause:
        """A daemon built but never started (`trigger --local`) reads the state once, when it
        first starts a run. Unreadable then counts as not paused: the run's own claim needs
        PostgreSQL anyway, and the side loop, when there is one, keeps asking."""
        with self._first_read:
            if self._state is None:
                self.refresh()
            if self._state is None:
                self._state = NOT_PAUSED
            return self._state

    def load(self) -> SchedulerPause:
        """Start-up, before the first fire: the state, or StartupError when it cannot be read
        (an instance that cannot tell whether it is paused must not start firing)."""
        try:
            state = self.read()
        except (DatabaseUnavailable, DatabaseError) as exc:
            raise StartupError(f"cannot read the scheduler's pause state: {exc}") from None
        self._apply(state)
        return state

    def refresh(self) -> None:
        """The side loop's step: read the state; unreadable, keep the last known one."""
        try:
            state = self.read()
        except (DatabaseUnavailable, DatabaseError) as exc:
            if not self._unreadable:
                log.warning(
                    "pause.state_unreadable",
                    error=str(exc),
                    keeping="paused" if self._state and self._state.paused else "running",
                )
            self._unreadable = True
            return
        if self._unreadable:
            log.info("pause.state_readable")
            self._unreadable = False
        self._apply(state)

    def _apply(self, state: SchedulerPause) -> None:
        before, self._state = self._state, state
        if state.paused and (before is None or not before.paused or before.note != state.note):
            log.warning(
                "scheduler.paused",
                note=state.note,
                paused_by=state.paused_by,
                paused_at=None if state.paused_at is None else state.paused_at.isoformat(),
            )
        elif before is not None and before.paused and not state.paused:
            log.info("scheduler.resumed")
