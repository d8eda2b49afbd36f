"""ScheduleWatcher: keeps the scheduler's jobs equal to the enabled, valid rows of `schedules`.

Three kinds of pass, each touching only what changed:
- notified: LISTEN schedules_changed; the ids named by notifications (debounced 20 ms) are
  fetched and applied, so an edit reaches the scheduler in well under a second;
- incremental, every SCHEDULE_CHECK_INTERVAL: rows whose configuration changed in a transaction
  not yet covered by the watermark (a transaction id, not a clock: see `changed_since`), and
  tombstones of deleted rows; this repairs any missed notification;
- full, every FULL_PASS_EVERY intervals: every row's stored hash against what was applied.
The daemon's own writes (next_run, last_*) never change the hash, so they never look like edits.
With shards (SCHEDULER_SHARDS > 1) every pass, the notifications and the start-up load cover the
owned shards only (`shards`); the shard keeper loads and drops whole shards through
`load_shards`/`drop_shards`, which take turns with the passes (one at a time, so a shard's load
never overwrites a newer row a notified pass applied meanwhile).
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from services.clock import Clock
from services.errors import DatabaseError, DatabaseUnavailable
from services.heap import release_free_memory
from services.log import get_logger
from services.metrics import Metrics
from services.model.records import Schedule
from services.model.shards import ShardSet
from services.store.listen import NotificationListener
from services.store.schedules import ScheduleRepository
from services.watch.loader import ScheduleLoader

log = get_logger(__name__)
CHANNEL = "schedules_changed"
FULL_PASS_EVERY = 10
DEBOUNCE_SECONDS = 0.02  # long enough to gather one statement's burst of notifications
# How often the LISTEN connection checks that its server still takes writes: after a failover
# that fenced the old primary read-only (instead of stopping it), this is when it moves over.
LISTENER_CHECK_SECONDS = 5.0
FETCH_BATCH = 5000


class ScheduleWatcher:
    def __init__(
        self,
        schedules: ScheduleRepository,
        loader: ScheduleLoader,
        metrics: Metrics,
        clock: Clock,
        *,
        listener: NotificationListener,
        interval: float,
        stop: threading.Event,
    ) -> None:
        self.schedules = schedules
        self.loader = loader
        self.metrics = metrics
        self.clock = clock
        self.listener = listener
        self.interval = interval
        self.stop = stop
        self.shards = ShardSet.everything()
        self._turn = threading.RLock()  # one pass, shard load or shard drop at a time
        self._applied: dict[UUID, str] = {}  # every row seen (valid or not) -> its config hash
        self._watermark: str | None = None
        self._notified: set[UUID] = set()
        self._notified_lock = threading.Lock()
        self._wake = threading.Event()
        self._passes = 0
        self._pass_requested = False
        self.listening = False
        self.notifications_received = 0
        self.last_pass: dict[str, Any] = {}
        self._threads: dict[str, threading.Thread] = {}
        # Other channels the listener's connection serves: channel -> callback(payload).
        self.channels: dict[str, Callable[[str], None]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def initial_load(
        self,
        *,
        catch_up: bool = True,
        shards: ShardSet | None = None,
        catch_up_shards: set[int] | None = None,
    ) -> Counter[str]:
        """Load every row (catching up on missed occurrences, unless `catch_up` is False), or,
        with `shards`, the rows of those shards (catching up on `catch_up_shards` only); the
        watermark is taken first, so a change committed during the load is seen by the first
        incremental pass."""
        started = self.clock.monotonic()
        self._watermark = self.schedules.current_xmin()
        if shards is not None:
            self.shards = shards
        # The load allocates millions of long-lived objects; cyclic GC passes over them while
        # they are being built cost more than the load itself at 100,000 schedules. Afterwards
        # they are frozen out of later full collections.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            if self.shards.sharded:
                caught = set(catch_up_shards or ()) & self.shards.owned
                outcomes, scanned = self._load_ranges(caught, catch_up=True, background=True)
                more, count = self._load_ranges(set(self.shards.owned) - caught, background=True)
                outcomes.update(more)
                scanned += count
            else:
                rows = self.schedules.all_schedules()
                scanned = len(rows)
                outcomes = self._apply(rows, catch_up=catch_up, background=True)
                del rows  # the records live on in the catalog; the list was the load's own
        finally:
            if gc_enabled:
                gc.enable()
            gc.freeze()  # no collection first: it took most of a second, for little garbage
        release_free_memory()  # the load's temporaries, freed, still count as resident
        self._record_pass("initial", started, outcomes, scanned)
        return outcomes

    def _load_ranges(
        self, shards: set[int], *, catch_up: bool = False, background: bool = False
    ) -> tuple[Counter[str], int]:
        if not shards:
            return Counter(), 0
        rows = self.schedules.all_schedules(self.shards.bounds(shards))
        return self._apply(rows, catch_up=catch_up, background=background), len(rows)

    # -- shards (the shard keeper's side) -----------------------------------------------------

    def load_shards(self, shards: set[int], *, catch_up: set[int]) -> Counter[str]:
        """Take on `shards`: from now on their notifications count, and their rows are loaded
        (catching up on those in `catch_up`: no other live owner had them loaded)."""
        started = self.clock.monotonic()
        with self._turn:
            self.shards = ShardSet(self.shards.shards, self.shards.owned | shards)
            outcomes, scanned = self._load_ranges(shards & catch_up, catch_up=True)
            more, count = self._load_ranges(shards - catch_up)
        outcomes.update(more)
        self._record_pass("shards_taken", started, outcomes, scanned + count)
        return outcomes

    def drop_shards(self, shards: set[int]) -> int:
        """Give up `shards`: their schedules leave the scheduler (runs under way finish)."""
        started = self.clock.monotonic()
        with self._turn:
            self.shards = ShardSet(self.shards.shards, self.shards.owned - shards)
            gone = [
                sid
                for sid in set(self._applied) | self.loader.loaded_ids()
                if not self.shards.holds(sid)
            ]
            for sid in gone:
                self._applied.pop(sid, None)
                self.loader.remove(sid)
        self._record_pass("shards_dropped", started, Counter(removed=len(gone)), len(gone))
        release_free_memory()
        return len(gone)

    def start(self) -> None:
        for name, target in (("schedule-watcher", self._loop), ("schedule-listener", self._listen)):
            self._start_thread(name, target)

    def ensure_alive(self) -> None:
        for name, thread in list(self._threads.items()):
            if not thread.is_alive() and not self.stop.is_set():
                log.error("thread.died_restarting", thread=name)
                self._start_thread(name, self._loop if name == "schedule-watcher" else self._listen)

    def join(self, timeout: float) -> None:
        self._wake.set()
        for thread in self._threads.values():
            thread.join(timeout)

    def _start_thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    # -- the watcher loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        next_interval = self.clock.monotonic() + self.interval
        while not self.stop.is_set():
            self._wake.wait(max(0.0, next_interval - self.clock.monotonic()))
            if self.stop.is_set():
                break
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    self.stop.wait(DEBOUNCE_SECONDS)  # gather the rest of a burst of edits
                    self.notified_pass()
                if self._pass_requested or self.clock.monotonic() >= next_interval:
                    self._pass_requested = False
                    self._passes += 1
                    if self._passes % FULL_PASS_EVERY == 0:
                        self.full_pass()
                    else:
                        self.incremental_pass()
                    next_interval = self.clock.monotonic() + self.interval
            except (DatabaseUnavailable, DatabaseError) as exc:
                log.warning("watcher.pass_failed", error=str(exc))
                next_interval = self.clock.monotonic() + min(self.interval, 5.0)
            except Exception:
                log.exception("watcher.pass_crashed")
                next_interval = self.clock.monotonic() + self.interval

    def request_pass(self) -> None:
        """Ask for an incremental pass now (e.g. after the listener reconnected)."""
        self._pass_requested = True
        self._wake.set()

    # -- passes -------------------------------------------------------------------------------

    def notified_pass(self) -> Counter[str]:
        with self._notified_lock:
            ids, self._notified = self._notified, set()
        if not ids:
            return Counter()
        started = self.clock.monotonic()
        with self._turn:
            outcomes = self._refresh({sid for sid in ids if self.shards.holds(sid)})
        self._record_pass("notified", started, outcomes, len(ids))
        return outcomes

    def incremental_pass(self) -> Counter[str]:
        with self._turn:
            return self._incremental_pass()

    def _incremental_pass(self) -> Counter[str]:
        started = self.clock.monotonic()
        if self._watermark is None:
            self._watermark = self.schedules.current_xmin()
        since = self._watermark
        found = self.schedules.changed_since(since)
        changed = {
            sid
            for sid, h in found.hashes.items()
            if self._applied.get(sid) != h and self.shards.holds(sid)
        }
        deleted = self.schedules.deleted_since(since)
        outcomes = self._refresh(changed | (deleted & set(self._applied)))
        self._watermark = found.watermark
        self._record_pass("incremental", started, outcomes, len(found.hashes))
        return outcomes

    def full_pass(self) -> Counter[str]:
        with self._turn:
            return self._full_pass()

    def _full_pass(self) -> Counter[str]:
        started = self.clock.monotonic()
        watermark = self.schedules.current_xmin()
        present = self.schedules.all_hashes(self.shards.bounds() if self.shards.sharded else None)
        changed = {sid for sid, h in present.items() if self._applied.get(sid) != h}
        gone = (set(self._applied) | self.loader.loaded_ids()) - set(present)
        outcomes = self._refresh(changed | gone)
        self._watermark = watermark
        self.schedules.prune_tombstones()
        self._record_pass("full", started, outcomes, len(present))
        return outcomes

    def _refresh(self, ids: Iterable[UUID]) -> Counter[str]:
        """Fetch the current rows of `ids` and apply them; ids with no row are removed."""
        wanted = list(ids)
        outcomes: Counter[str] = Counter()
        for start in range(0, len(wanted), FETCH_BATCH):
            batch = wanted[start : start + FETCH_BATCH]
            rows = self.schedules.schedules_by_ids(batch)
            outcomes.update(self._apply(rows))
            for missing in set(batch) - {r.schedule_id for r in rows}:
                self._applied.pop(missing, None)
                if self.loader.remove(missing):
                    outcomes["removed"] += 1
        return outcomes

    def _apply(
        self, rows: list[Schedule], *, catch_up: bool = False, background: bool = False
    ) -> Counter[str]:
        outcomes = self.loader.apply_many(rows, catch_up=catch_up, background=background)
        for row in rows:
            self._applied[row.schedule_id] = row.config_hash
        return outcomes

    def _record_pass(self, kind: str, started: float, outcomes: Counter[str], scanned: int) -> None:
        duration = self.clock.monotonic() - started
        self.metrics.watch_duration.observe(duration)
        for outcome, count in outcomes.items():
            if outcome != "unchanged":
                self.metrics.watch_changes.labels(kind=outcome).inc(count)
        self.last_pass = {
            "kind": kind,
            "at": self.clock.now().isoformat(),
            "duration_s": round(duration, 4),
            "scanned": scanned,
            "changes": {k: v for k, v in outcomes.items() if k != "unchanged"},
            "jobs_loaded": self.loader.count,
        }
        if any(k != "unchanged" for k in outcomes):
            log.info("watcher.pass", **self.last_pass)

    # -- LISTEN -------------------------------------------------------------------------------

    def _listen(self) -> None:
        delay = 0.5
        while not self.stop.is_set():
            try:
                with self.listener.session((CHANNEL, *self.channels)) as connection:
                    self.listening = True
                    delay = 0.5
                    log.info("watcher.listening", channel=CHANNEL)
                    # Edits committed before LISTEN held sent notifications nobody heard: on the
                    # first connection those since the start-up load's watermark, after a
                    # reconnect those of the outage. A pass from the watermark applies them now.
                    self.request_pass()
                    checked = self.clock.monotonic()
                    while not self.stop.is_set():
                        for channel, payload in connection.notifications(timeout=1.0):
                            callback = self.channels.get(channel, self._on_notification)
                            callback(payload)
                        if self.clock.monotonic() - checked >= LISTENER_CHECK_SECONDS:
                            connection.check_writable()
                            checked = self.clock.monotonic()
            except (DatabaseUnavailable, DatabaseError) as exc:
                if self.listening:
                    log.warning("watcher.listener_lost", error=str(exc).splitlines()[0])
                self.listening = False
                self.stop.wait(delay)
                delay = min(delay * 2, 10.0)
        self.listening = False

    def _on_notification(self, payload: str) -> None:
        try:
            schedule_id = UUID(payload)
        except ValueError:
            return
        self.notifications_received += 1
        if not self.shards.holds(schedule_id):
            return  # another shard's (checked again at the pass: a shard may come meanwhile)
        with self._notified_lock:
            self._notified.add(schedule_id)
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return {
            "last_pass": self.last_pass,
            "listening": self.listening,
            "notifications_received": self.notifications_received,
            "watermark": self._watermark,
        }
