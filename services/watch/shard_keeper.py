"""The shard keeper: which shards this instance owns (DESIGN.md "Beyond one machine").

Each round (every heartbeat period) renews this instance's membership and leases in PostgreSQL
(a loop of their own renews them while a round is busy loading), then computes, over the live
members, the owners each shard should have (rendezvous hashing with bounded loads,
`model/shards.assign`). A shard this instance should own and does not is leased, loaded, then
marked loaded. A shard it owns and should not is dropped only once every owner it should have has
marked it loaded: make-before-break, so a hand-over never leaves a shard with fewer loaded owners
than before. A dead instance's leases lapse after LOCK_TIMEOUT; the next round of the others
re-assigns its shards. Exactly once never rests on any of this: two owners of one shard both fire
it, and the lock and the unique key keep each occurrence to one run, so a round that comes late,
or a member list that two instances see differently for a moment, costs only memory and lock
attempts.

Catch-up belongs to a shard nobody had loaded: a shard taken over from a live loaded owner is
being fired by it, so its persisted next_run in the past is not a missed occurrence.
"""

from __future__ import annotations

import threading
from typing import Any

from services.clock import Clock
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.metrics import Metrics
from services.model.shards import ShardSet, assign
from services.store.shards import Lease, Member, ShardLeaseStore
from services.watch.watcher import ScheduleWatcher

log = get_logger(__name__)


class ShardKeeper:
    def __init__(
        self,
        leases: ShardLeaseStore,
        watcher: ScheduleWatcher,
        metrics: Metrics,
        clock: Clock,
        *,
        shards: int,
        replicas: int,
        settle: float,
        stop: threading.Event,
    ) -> None:
        self.leases = leases
        self.watcher = watcher
        self.metrics = metrics
        self.clock = clock
        self.shards = shards
        self.replicas = replicas
        self.settle = settle  # how long a joining instance waits for peers starting with it
        self.stop = stop
        self.instance_id = leases.instance_id
        self._held: dict[int, Lease] = {}  # our leases as of the last round
        self._mismatch_logged: set[str] = set()
        self._state = threading.Lock()
        # A load (the start-up one, or a shard a round takes) may outlast a lease (LOCK_TIMEOUT):
        # while one is under way, `renew_leases` (a loop of its own) keeps our membership and
        # leases alive, or the others would re-assign our shards and a cascade of hand-overs
        # would follow. Until the start-up load is done, no round runs at all: what it loads
        # must not change under it.
        self._loading = threading.Event()
        self._busy = threading.Event()  # a round is under way
        # Every write to our rows holds this, and none is made once we have left: a stop never
        # waits for a load, and no lease or membership is written back after the leave.
        self._writes = threading.Lock()
        self._left = False

    @property
    def enabled(self) -> bool:
        return self.shards > 1

    # -- start-up ---------------------------------------------------------------------------

    def join(self) -> tuple[ShardSet, set[int]]:
        """Before the start-up load: register, give instances starting alongside a moment to
        register too, and lease the shards we should own. Returns them and the ones to catch up
        on (no other live owner has them loaded)."""
        self.leases.forget_loaded()  # a predecessor's (killed and restarted at once)
        self.leases.renew(self.shards, self.replicas)
        self.stop.wait(self.settle)
        members, held = self.leases.renew(self.shards, self.replicas)
        peers = self._peers(members)
        assignment = assign(self.shards, peers, self.replicas)
        taken = {**held, **self.leases.take(self._ours(assignment) - set(held))}
        with self._state:
            self._held = taken
        self._loading.set()
        mine = set(taken)
        self._publish()
        catch_up = mine - self._loaded_elsewhere(mine, peers)
        return ShardSet(self.shards, frozenset(mine)), catch_up

    def loaded(self) -> None:
        """After the start-up load: every lease we hold is loaded."""
        self._mark_loaded(set(self._held))
        self._loading.clear()

    # -- rounds -----------------------------------------------------------------------------

    def renew_leases(self) -> None:
        """The lease loop (every heartbeat period): while a load is under way, renew our
        membership and leases, which the busy round cannot. Otherwise the round renews."""
        if not (self._loading.is_set() or self._busy.is_set()):
            return
        try:
            self._renew()
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("shards.renew_failed", error=str(exc))

    def round(self) -> None:
        """One round; a database outage skips it (what is loaded keeps firing, under locks)."""
        if self._loading.is_set():
            return  # the start-up load: the lease loop renews meanwhile
        self._busy.set()
        try:
            renewed = self._renew()
            if renewed is not None:
                self._round(*renewed)
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("shards.round_failed", error=str(exc))
        finally:
            self._busy.clear()

    def _renew(self) -> tuple[list[Member], dict[int, Lease]] | None:
        with self._writes:
            if self._left:
                return None  # stopping: a renewal now would join again
            return self.leases.renew(self.shards, self.replicas)

    def _take(self, shards: set[int]) -> dict[int, Lease]:
        with self._writes:
            return {} if self._left else self.leases.take(shards)

    def _round(self, members: list[Member], held: dict[int, Lease]) -> None:
        peers = self._peers(members)
        assignment = assign(self.shards, peers, self.replicas)
        wanted = self._ours(assignment)
        in_memory = set(self.watcher.shards.owned)
        # Leases that lapsed under us (we were cut off past LOCK_TIMEOUT): still wanted, taken
        # again and, being loaded, marked so at once; otherwise dropped.
        lapsed = in_memory - set(held)
        if lapsed & wanted:
            retaken = self._take(lapsed & wanted)
            held.update({k: Lease(k, self.instance_id, v.epoch, True) for k, v in retaken.items()})
            self._write_marks({k: lease.epoch for k, lease in retaken.items()})
            log.warning("shards.leases_retaken", shards=sorted(retaken))
        if lapsed - wanted:
            self.watcher.drop_shards(lapsed - wanted)
            log.warning("shards.lapsed_dropped", shards=sorted(lapsed - wanted))
        missing = wanted - set(held)
        if missing:
            held.update(self._take(missing))
        with self._state:
            self._held = dict(held)
        # Not loaded yet, or loaded by an earlier process under our INSTANCE_ID (not by us).
        to_load = {
            k
            for k, lease in held.items()
            if k in wanted and (not lease.loaded or k not in in_memory)
        }
        if to_load:
            self._load(to_load, peers)
        self._drop_handed_over(set(held) - wanted, assignment)
        self._publish()

    def _load(self, shards: set[int], peers: list[str]) -> None:
        """Load `shards` one at a time, each marked loaded once in: a shard gets its new owner
        as soon as its own rows are in, and the watcher's lock (which edits wait for) is held
        for one shard's rows at a time, not for all of them."""
        started = self.clock.monotonic()
        catch_up = shards - self._loaded_elsewhere(shards, peers)
        loaded = 0
        for k in sorted(shards):
            if self.stop.is_set():
                break  # stopping: the leave deletes the leases not yet loaded
            if k not in self.watcher.shards.owned:
                loaded += sum(self.watcher.load_shards({k}, catch_up=catch_up & {k}).values())
            self._mark_loaded({k})
        log.info(
            "shards.taken",
            shards=sorted(shards),
            caught_up=sorted(catch_up),
            loaded=loaded,
            duration_s=round(self.clock.monotonic() - started, 3),
        )

    def _drop_handed_over(self, unwanted: set[int], assignment: dict[int, list[str]]) -> None:
        """Drop each shard we should no longer own once all its owners-to-be have loaded it."""
        if not unwanted:
            return
        loaded = {
            (lease.shard, lease.instance_id) for lease in self.leases.live_leases() if lease.loaded
        }
        ready = {k for k in unwanted if all((k, owner) in loaded for owner in assignment[k])}
        if not ready:
            return
        self.watcher.drop_shards(ready)
        with self._writes:
            if not self._left:  # else the leave has deleted every lease already
                self.leases.drop(ready)
        with self._state:
            for k in ready:
                self._held.pop(k, None)
        log.info("shards.dropped", shards=sorted(ready))

    def _mark_loaded(self, shards: set[int]) -> None:
        with self._state:
            epochs = {k: self._held[k].epoch for k in shards if k in self._held}
            for k, epoch in epochs.items():
                self._held[k] = Lease(k, self.instance_id, epoch, True)
        self._write_marks(epochs)

    def _write_marks(self, epochs: dict[int, int]) -> None:
        with self._writes:
            if epochs and not self._left:
                self.leases.mark_loaded(epochs)

    def _ours(self, assignment: dict[int, list[str]]) -> set[int]:
        return {k for k, chosen in assignment.items() if self.instance_id in chosen}

    def _peers(self, members: list[Member]) -> list[str]:
        """The live members with our SCHEDULER_SHARDS and SHARD_REPLICAS, us included. One with
        other settings numbers its shards differently (or assigns them differently), so its
        leases say nothing about ours: it is left out, and each group of alike instances covers
        every shard as if alone. During a rolling change of either setting, schedules are then
        loaded twice, never by nobody; the lock keeps each occurrence to one run."""
        peers = []
        for member in members:
            if (member.shards, member.replicas) == (self.shards, self.replicas):
                peers.append(member.instance_id)
            elif member.instance_id not in self._mismatch_logged:
                self._mismatch_logged.add(member.instance_id)
                log.error(
                    "shards.settings_differ",
                    instance=member.instance_id,
                    theirs=f"SCHEDULER_SHARDS={member.shards} SHARD_REPLICAS={member.replicas}",
                    ours=f"SCHEDULER_SHARDS={self.shards} SHARD_REPLICAS={self.replicas}",
                    effect="left out of the assignment: both load every shard between them",
                )
        if self.instance_id not in peers:
            peers.append(self.instance_id)  # renewed in this very transaction: only a clock step
        return peers

    def _loaded_elsewhere(self, shards: set[int], peers: list[str]) -> set[int]:
        """Those of `shards` another of our peers has loaded."""
        return {
            lease.shard
            for lease in self.leases.live_leases()
            if lease.loaded
            and lease.instance_id != self.instance_id
            and lease.instance_id in peers
            and lease.shard in shards
        }

    def _publish(self) -> None:
        self.metrics.shards_owned.set(len(self.watcher.shards.owned) if self.enabled else 1)

    def leave(self) -> None:
        """A graceful stop: leases and membership go now, so the others take over at their next
        round instead of after LOCK_TIMEOUT."""
        if not self.enabled:
            return
        with self._writes:  # waits for a write under way, never for a load
            self._left = True
            try:
                self.leases.leave()
            except (DatabaseUnavailable, DatabaseError) as exc:
                log.warning("shards.leave_failed", error=str(exc))

    def describe(self) -> dict[str, Any]:
        """What the heartbeat summary and the status show."""
        if not self.enabled:
            return {
                "count": 1,
                "replicas": self.replicas,
                "owned": [0],
                "loading": [],
                "epochs": {},
            }
        with self._state:
            held = dict(self._held)
        return {
            "count": self.shards,
            "replicas": self.replicas,
            "owned": sorted(k for k, lease in held.items() if lease.loaded),
            "loading": sorted(k for k, lease in held.items() if not lease.loaded),
            "epochs": {str(k): lease.epoch for k, lease in sorted(held.items())},
        }
