"""The shard keeper's rounds against a real database: the assignment, make-before-break, a dead
owner's shards moving, a lapsed lease taken again. Each keeper drives a stand-in for the
watcher that records what it was asked to load and drop (the daemons' own tests, with real
watchers, are in test_shards.py); the leases, the members and their expiry are PostgreSQL's."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from database.connection import DatabaseConnection
from services.clock import SystemClock
from services.metrics import Metrics
from services.model.shards import ShardSet, assign, shard_of
from services.store.shards import ShardLeaseStore
from services.watch.shard_keeper import ShardKeeper
from tests.support.waiting import wait_until

SHARDS = 8
LEASE = 1.0


class RecordingWatcher:
    """What ShardKeeper asks of the watcher: the shards in memory, loads and drops."""

    def __init__(self) -> None:
        self.shards = ShardSet(SHARDS, frozenset())
        self.loads: list[tuple[set[int], set[int]]] = []
        self.drops: list[set[int]] = []
        self.load_seconds = 0.0  # how long a load takes (a big shard's rows)

    def load_shards(self, shards: set[int], *, catch_up: set[int]) -> Counter[str]:
        self.loads.append((set(shards), set(catch_up)))
        time.sleep(self.load_seconds)
        self.shards = ShardSet(SHARDS, self.shards.owned | shards)
        return Counter(added=len(shards))

    def drop_shards(self, shards: set[int]) -> int:
        self.drops.append(set(shards))
        self.shards = ShardSet(SHARDS, self.shards.owned - shards)
        return len(shards)


def keeper(db: DatabaseConnection, instance_id: str, *, replicas: int = 1) -> ShardKeeper:
    return ShardKeeper(
        ShardLeaseStore(db, instance_id, lease_seconds=LEASE),
        RecordingWatcher(),  # type: ignore[arg-type]
        Metrics(),
        SystemClock(),
        shards=SHARDS,
        replicas=replicas,
        settle=0.0,
        stop=threading.Event(),
    )


def start(k: ShardKeeper) -> set[int]:
    """What EnhancedScheduler.start does: join, load what was leased, mark it loaded."""
    owned, catch_up = k.join()
    k.watcher.load_shards(set(owned.owned), catch_up=catch_up)
    k.loaded()
    return set(owned.owned)


def loaded_owners(db: DatabaseConnection) -> dict[int, set[str]]:
    rows = db.fetch_all(
        "SELECT shard, instance_id FROM scheduler_shards"
        " WHERE loaded_at IS NOT NULL AND lease_until > now()"
    )
    owners: dict[int, set[str]] = {k: set() for k in range(SHARDS)}
    for row in rows:
        owners[row["shard"]].add(row["instance_id"])
    return owners


def test_a_joining_instance_takes_its_shards_and_the_other_drops_them_only_once_loaded(
    db: DatabaseConnection,
) -> None:
    a = keeper(db, "a")
    assert start(a) == set(range(SHARDS))  # alone: everything, caught up (nobody had it)
    assert a.watcher.loads == [(set(range(SHARDS)), set(range(SHARDS)))]

    b = keeper(db, "b")
    owned_b, catch_up_b = b.join()  # leased, not loaded yet
    wanted_b = {k for k, o in assign(SHARDS, ["a", "b"], 1).items() if o == ["b"]}
    assert set(owned_b.owned) == wanted_b and wanted_b
    assert catch_up_b == set()  # a has them loaded: firing them, nothing was missed
    a.round()
    assert a.watcher.drops == []  # b has not loaded them: a keeps firing them
    assert all(loaded_owners(db)[k] == {"a"} for k in range(SHARDS))

    b.watcher.load_shards(set(owned_b.owned), catch_up=catch_up_b)
    b.loaded()
    a.round()
    assert a.watcher.drops == [wanted_b]
    owners = loaded_owners(db)
    assert all(len(owners[k]) == 1 for k in range(SHARDS))
    assert {k for k in range(SHARDS) if owners[k] == {"b"}} == wanted_b
    assert a.describe()["owned"] == sorted(set(range(SHARDS)) - wanted_b)


def test_a_dead_owners_shards_move_once_its_lease_lapses_and_are_caught_up(
    db: DatabaseConnection,
) -> None:
    a, b = keeper(db, "a"), keeper(db, "b")
    start(a)
    start(b)
    a.round()  # drops what b now holds
    b_shards = set(b.watcher.shards.owned)
    assert b_shards and not (b_shards & set(a.watcher.shards.owned))

    # b is killed: it renews nothing more. Its leases lapse LEASE seconds after its last round.
    def a_owns_everything() -> bool:
        a.round()
        return set(a.watcher.shards.owned) == set(range(SHARDS))

    wait_until(a_owns_everything, timeout=LEASE * 5, interval=0.1)
    taken = [shards for shards, _ in a.watcher.loads[1:]]
    caught_up = [catch_up for _, catch_up in a.watcher.loads[1:]]
    assert taken == [{k} for k in sorted(b_shards)]  # one at a time
    assert caught_up == taken  # no live owner had them: missed occurrences are a's to handle
    assert all(loaded_owners(db)[k] == {"a"} for k in range(SHARDS))


def test_with_two_replicas_every_shard_keeps_two_loaded_owners_through_a_hand_over(
    db: DatabaseConnection,
) -> None:
    a, b, c = (keeper(db, name, replicas=2) for name in "abc")
    for k in (a, b):
        start(k)
    assert all(owners == {"a", "b"} for owners in loaded_owners(db).values())
    start(c)
    for k in (a, b, c):
        k.round()
        assert all(len(owners) >= 2 for owners in loaded_owners(db).values())
    for k in (a, b, c):
        k.round()
    owners = loaded_owners(db)
    assert all(len(o) == 2 for o in owners.values())
    expected = assign(SHARDS, ["a", "b", "c"], 2)
    assert owners == {k: set(v) for k, v in expected.items()}
    counts = Counter(name for o in owners.values() for name in o)
    assert sorted(counts.values()) == [5, 5, 6]  # bounded: never 7 of 8 on one instance


def test_a_lease_that_lapsed_under_a_live_instance_is_taken_again_loaded(
    db: DatabaseConnection,
) -> None:
    a = keeper(db, "a")
    start(a)
    # a froze past its lease and someone deleted the lapsed rows meanwhile.
    db.execute("DELETE FROM scheduler_shards")
    a.round()
    assert a.watcher.drops == []  # still ours to fire: taken again, not reloaded
    assert len(a.watcher.loads) == 1
    assert all(owners == {"a"} for owners in loaded_owners(db).values())


def test_a_load_that_outlasts_the_lease_keeps_the_instance_and_its_leases_alive(
    db: DatabaseConnection,
) -> None:
    """A round taking over shards loads them for four leases' time; the lease loop keeps the
    membership and every lease alive meanwhile, so nobody re-assigns them and the round, once
    done, has nothing to take again."""
    a, b = keeper(db, "a"), keeper(db, "b")
    start(a)
    start(b)
    a.round()
    b_shards = set(b.watcher.shards.owned)
    b.leave()  # b's shards are a's again: a's next round loads them, slowly
    a.watcher.load_seconds = LEASE  # each of b's four shards: four leases' time in all
    lease_loop = threading.Event()

    def renew_every_beat() -> None:
        while not lease_loop.wait(LEASE / 4):
            a.renew_leases()

    renewer = threading.Thread(target=renew_every_beat)
    renewer.start()
    rounds = threading.Thread(target=a.round)
    rounds.start()
    lapsed: list[str] = []
    taken = False
    try:
        while rounds.is_alive():
            alive = db.fetch_value(
                "SELECT count(*) FROM scheduler_members WHERE instance_id = 'a'"
                " AND lease_until > now()"
            )
            if alive != 1:
                lapsed.append("membership")
            leases = db.fetch_value(
                "SELECT count(*) FROM scheduler_shards WHERE instance_id = 'a'"
                " AND lease_until > now()"
            )
            taken = taken or leases == SHARDS  # the round has leased b's old shards
            if taken and leases != SHARDS:
                lapsed.append(f"{leases} leases of {SHARDS}")
            time.sleep(LEASE / 10)
        rounds.join()
    finally:
        lease_loop.set()
        renewer.join()
    assert taken and lapsed == []
    assert all(owners == {"a"} for owners in loaded_owners(db).values())
    a.round()
    # The start-up load, then b's shards once each: nothing lapsed, so nothing taken again.
    assert [shards for shards, _ in a.watcher.loads[1:]] == [{k} for k in sorted(b_shards)]
    assert a.watcher.drops == [set(b.watcher.shards.owned)]  # the first round, to b


def test_instances_with_other_settings_are_left_out_and_each_group_covers_every_shard(
    db: DatabaseConnection,
) -> None:
    """A rolling change of SHARD_REPLICAS (or SCHEDULER_SHARDS): each instance assigns over the
    alike ones only, so neither drops a shard on the strength of the other's leases, which mean
    something else under other settings; between them they load everything twice."""
    a, b = keeper(db, "a", replicas=1), keeper(db, "b", replicas=2)
    start(a)
    start(b)
    for k in (a, b, a, b):
        k.round()
    assert a.watcher.drops == [] and b.watcher.drops == []
    assert set(a.watcher.shards.owned) == set(b.watcher.shards.owned) == set(range(SHARDS))
    # b found no alike owner with the shards loaded: catch-up is its own (through the lock).
    assert b.watcher.loads == [(set(range(SHARDS)), set(range(SHARDS)))]


def test_an_instance_restarted_at_once_is_not_taken_for_loaded_before_it_has_loaded(
    db: DatabaseConnection,
) -> None:
    """b has loaded its shards and dies before a has handed them over; restarted at once
    under the same INSTANCE_ID, it finds its leases still live. Its predecessor's loaded marks
    must not let a drop those shards while the new process has none of their rows."""
    a = keeper(db, "a")
    start(a)
    start(keeper(db, "b"))  # loaded and marked, then killed: a has not run a round since
    b = keeper(db, "b")  # the new process: nothing in memory
    owned, _ = b.join()
    a.round()
    assert a.watcher.drops == []  # a still fires them: nobody else has their rows
    b.watcher.load_shards(set(owned.owned), catch_up=set())
    b.loaded()
    a.round()
    assert a.watcher.drops == [set(owned.owned)]


def test_a_graceful_stop_leaves_at_once(db: DatabaseConnection) -> None:
    a, b = keeper(db, "a"), keeper(db, "b")
    start(a)
    start(b)
    a.round()
    b.leave()
    assert db.fetch_value("SELECT count(*) FROM scheduler_members WHERE instance_id = 'b'") == 0
    a.round()  # no lease lapse to wait for
    assert set(a.watcher.shards.owned) == set(range(SHARDS))


@pytest.mark.parametrize("shards", [1, 3, 8, 64])
def test_sql_and_python_agree_on_every_schedules_shard(db: DatabaseConnection, shards: int) -> None:
    rows = db.fetch_all(
        "SELECT id, scheduler_shard(id, %(s)s) AS shard"
        " FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 2000)) t",
        {"s": shards},
    )
    assert all(shard_of(row["id"], shards) == row["shard"] for row in rows)
