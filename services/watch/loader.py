"""Keeps APScheduler's jobs equal to the loaded schedules: add, update, remove, mark invalid.

This is the one interface through which schedules reach the scheduler: the start-up load uses it
now, and the watcher uses it to apply changes. A row that does not parse is never scheduled; it
gets `last_status='invalid'` and the reason once. `next_run` is written whenever a schedule is
loaded or changed, from the same function APScheduler fires by.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from services.clock import Clock
from services.errors import DatabaseError, DatabaseUnavailable, InvalidScheduleError
from services.log import get_logger
from services.metrics import Metrics
from services.model.catalog import Catalog
from services.model.fire_times import next_fire_time
from services.model.occurrence import LoadedSchedule, Occurrence, OccurrenceSink, misfire_grace
from services.model.records import NextRunWrite, Schedule
from services.model.vocabulary import RunTrigger
from services.scheduling.jobs import JobTable
from services.watch.next_run_writer import NextRunWriter

log = get_logger(__name__)
MAX_CATCHUP_SKIP_ROWS = 100  # per schedule; beyond that the skipped count is logged, not stored
VERBOSE_LIMIT = 100  # larger batches log one summary instead of a line per schedule
MAX_MISSED_SCAN = 100_000  # bound on walking missed occurrences (a 1 s interval down for a day)
_TICK = timedelta(microseconds=1)


class ScheduleMarks(Protocol):
    """The daemon's bookkeeping writes on `schedules` (never configuration, never audited)."""

    def set_next_runs(self, writes: Sequence[NextRunWrite]) -> int: ...

    def mark_schedule_status(self, schedule_id: UUID, status: str, error: str | None) -> bool: ...

    def clear_schedule_mark(self, schedule_id: UUID) -> None: ...


class ScheduleLoader:
    def __init__(
        self,
        *,
        catalog: Catalog,
        jobs: JobTable,
        marks: ScheduleMarks,
        sink: OccurrenceSink,
        fire: Callable[..., Any],
        metrics: Metrics,
        clock: Clock,
        stop: threading.Event,
        default_grace: float,
    ) -> None:
        self.catalog = catalog
        self.jobs = jobs
        self.marks = marks
        self.sink = sink
        self.fire = fire
        self.metrics = metrics
        self.clock = clock
        self.stop = stop
        self.default_grace = default_grace
        self._lock = threading.RLock()

    @property
    def count(self) -> int:
        return len(self.catalog)

    def get(self, schedule_id: UUID) -> LoadedSchedule | None:
        return self.catalog.get(schedule_id)

    def loaded_ids(self) -> set[UUID]:
        with self._lock:
            return self.catalog.ids()

    def parse(self, schedule: Schedule) -> LoadedSchedule:
        return self.catalog.parse(schedule)

    # -- whole-table load ---------------------------------------------------------------------

    def apply_many(
        self, schedules: Sequence[Schedule], *, catch_up: bool = False, background: bool = False
    ) -> Counter[str]:
        """Bring rows into the scheduler; count the outcomes ('added', 'updated', 'unchanged',
        'removed', 'invalid', 'expired'). next_run is written in one statement for all, or, for
        the start-up load (`background`), by a thread, a chunk at a time while the load goes on."""
        outcomes: Counter[str] = Counter()
        writer = NextRunWriter(self.marks.set_next_runs, self.stop) if background else None
        next_runs: list[NextRunWrite] = []
        add = next_runs.append if writer is None else writer.add
        verbose = len(schedules) <= VERBOSE_LIMIT
        # One "now" for the batch: every row is judged against the same moment (and reading
        # the clock per row showed at 100,000 rows).
        now = self.clock.now()
        try:
            for schedule in schedules:
                outcome, next_run = self._apply(schedule, now, catch_up=catch_up, verbose=verbose)
                outcomes[outcome] += 1
                if outcome != "unchanged" and next_run != schedule.next_run:
                    add(NextRunWrite(schedule.schedule_id, next_run, schedule.config_hash))
        finally:
            if writer is not None:
                writer.finish()
        if outcomes.keys() - {"unchanged", "disabled"}:
            self.jobs.wakeup()  # once per batch: its next wake-up may be earlier now
        if writer is None:
            self.marks.set_next_runs(next_runs)
        self.metrics.schedules_loaded.set(self.count)
        return outcomes

    def remove(self, schedule_id: UUID) -> bool:
        with self._lock:
            existed = self.catalog.pop(schedule_id)
            self.jobs.discard(str(schedule_id))
        self.metrics.schedules_loaded.set(self.count)
        return existed

    def _apply(
        self, schedule: Schedule, now: datetime, *, catch_up: bool, verbose: bool = True
    ) -> tuple[str, datetime | None]:
        sid = schedule.schedule_id
        if not schedule.enabled:
            # next_run is cleared so that re-enabling later never "catches up" on the pause.
            return ("removed" if self.remove(sid) else "disabled"), None
        with self._lock:
            current = self.catalog.get(sid)
            if (
                current is not None
                and schedule.config_hash
                and (current.schedule.config_hash == schedule.config_hash)
            ):
                return "unchanged", None
            try:
                loaded = self.parse(schedule)
            except InvalidScheduleError as exc:
                self._mark(schedule, "invalid", exc.reason)
                self.remove(sid)
                return "invalid", None
            grace = misfire_grace(loaded, self.default_grace)
            if catch_up:
                self._catch_up(loaded, now, grace)
            first = self._first_fire(loaded, current, now, grace)
            if first is None:
                self._mark(
                    schedule,
                    "expired",
                    "nothing left to fire (once in the past, end_date passed or a cron's last "
                    "year over, beyond the misfire grace time)",
                )
                self.remove(sid)
                return "expired", None
            if schedule.last_status in ("invalid", "expired"):
                self._clear_mark(sid)
            self.catalog.put(loaded)
            job_id = loaded.spec.schedule_id or str(sid)
            self.jobs.put(job_id, loaded.spec, first=first, fire=self.fire)
        if verbose:  # a bulk load logs one summary instead (a line each would dominate it)
            log.info(
                "schedule.loaded" if current is None else "schedule.updated",
                schedule_id=str(sid),
                frequency=schedule.frequency,
                next_run=first.isoformat(),
            )
        return ("added" if current is None else "updated"), first

    def _first_fire(
        self, loaded: LoadedSchedule, current: LoadedSchedule | None, now: datetime, grace: float
    ) -> datetime | None:
        """The next occurrence to fire. On an update, an occurrence that was due but not yet
        fired (the edit landed at its very moment) is kept, so an edit never loses it. A `once`
        that is already due but within its grace fires now (the claim keeps it to one run)."""
        start = now
        if loaded.spec.frequency == "once":
            start = now - timedelta(seconds=grace)
        if current is not None:
            pending = self.jobs.pending_fire(str(loaded.schedule_id))
            if pending is not None and pending < now:
                start = pending
        return next_fire_time(loaded.spec, start - _TICK, now)

    def _catch_up(self, loaded: LoadedSchedule, now: datetime, grace: float) -> None:
        """Occurrences missed while no instance ran: the latest runs once ('catchup') if within
        its grace; the others are recorded 'skipped' (no burst)."""
        persisted = loaded.schedule.next_run
        if persisted is None or persisted >= now:
            return
        missed: list[datetime] = []
        moment = next_fire_time(loaded.spec, persisted - _TICK, now)
        while moment is not None and moment < now and len(missed) < MAX_MISSED_SCAN:
            missed.append(moment)
            moment = next_fire_time(loaded.spec, moment, now)
        if not missed:
            return
        runnable = missed[-1] if (now - missed[-1]).total_seconds() <= grace else None
        skipped = missed[:-1] if runnable is not None else missed
        sid = str(loaded.schedule_id)
        for moment in skipped[-MAX_CATCHUP_SKIP_ROWS:]:
            self.sink.skip(
                Occurrence(loaded, moment, moment, job_id=sid),
                "missed while no scheduler instance was running (beyond the misfire grace time)",
                "downtime",
            )
        if len(skipped) > MAX_CATCHUP_SKIP_ROWS:
            log.warning(
                "schedule.catchup_skipped_unrecorded",
                schedule_id=sid,
                unrecorded=len(skipped) - MAX_CATCHUP_SKIP_ROWS,
            )
        if runnable is not None:
            log.info("schedule.catchup", schedule_id=sid, scheduled_for=runnable.isoformat())
            self.sink.submit(
                Occurrence(loaded, runnable, runnable, trigger=RunTrigger.CATCHUP, job_id=sid)
            )

    def _mark(self, schedule: Schedule, status: str, reason: str) -> None:
        try:
            changed = self.marks.mark_schedule_status(schedule.schedule_id, status, reason)
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning(
                "schedule.mark_failed", schedule_id=str(schedule.schedule_id), error=str(exc)
            )
            return
        if changed:
            log.warning(f"schedule.{status}", schedule_id=str(schedule.schedule_id), reason=reason)

    def _clear_mark(self, schedule_id: UUID) -> None:
        try:
            self.marks.clear_schedule_mark(schedule_id)
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("schedule.mark_failed", schedule_id=str(schedule_id), error=str(exc))
