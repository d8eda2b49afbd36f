"""Heartbeat and Reaper (issue 21) against the real Redis (this test's key prefix) and this test's
own database. Time, for the in-process rule "our own beats steady for a TTL", is a hand-driven
monotonic clock; the Redis keys keep their real TTLs (5 s: longer than each test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
import redis

from database.connection import DatabaseConnection
from services.engine.liveness import Heartbeat, Reaper, heartbeat_key, live_instances
from services.engine.liveness_timing import LivenessTiming
from services.lock.keys import schedule_lock_key
from services.store.executions import ExecutionStore
from services.store.run_requests import RunRequestStore
from tests.support import services
from tests.support.schedules import insert_interval_schedules, query

pytestmark = pytest.mark.timeout(60)

TIMING = LivenessTiming.derive(lock_timeout=5, heartbeat_interval=5, check_interval=2)
US = "reaper-us"


class HandClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def ours(client: redis.Redis, redis_prefix: str, clock: HandClock) -> Heartbeat:
    return Heartbeat(client, US, TIMING, redis_prefix, monotonic=clock)


@pytest.fixture
def reaper(
    db: DatabaseConnection,
    client: redis.Redis,
    redis_prefix: str,
    ours: Heartbeat,
    clock: HandClock,
) -> Reaper:
    return Reaper(ExecutionStore(db, US), client, ours, prefix=redis_prefix, monotonic=clock)


def running_row(url: str, instance_id: str) -> dict[str, Any]:
    (schedule,) = insert_interval_schedules(
        url, 1, seconds=3600, job_type="python", payload={"callable": "tests.support:x"}
    )
    (row,) = query(
        url,
        "INSERT INTO job_executions (execution_id, schedule_id, job_id, domain, "
        "domain_config_id, status, started_at, scheduled_for, attempt, instance_id) "
        "SELECT gen_random_uuid(), schedule_id, 'j', domain, domain_config_id, 'running', "
        "now(), now(), 1, %s FROM schedules WHERE schedule_id = %s "
        "RETURNING execution_id, schedule_id",
        (instance_id, schedule["schedule_id"]),
    )
    return row


def status(url: str, execution_id: UUID) -> str:
    sql = "SELECT status FROM job_executions WHERE execution_id = %s"
    (row,) = query(url, sql, (execution_id,))
    return str(row["status"])


def beat_for(seconds: float, clock: HandClock, *beating: Heartbeat) -> None:
    """Let `seconds` of hand-driven time pass with every heartbeat beating on time."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now = min(end, clock.now + TIMING.beat)
        for heartbeat in beating:
            heartbeat.beat()


def test_a_dead_instance_row_is_abandoned_once_our_own_beats_have_settled(
    database_url: str, reaper: Reaper, ours: Heartbeat, clock: HandClock
) -> None:
    ghost = running_row(database_url, "ghost")
    ours.beat()
    assert reaper.sweep() == 0  # our heartbeat is brand new: a TTL first
    beat_for(TIMING.settle, clock, ours)
    assert reaper.sweep() == 1
    assert status(database_url, ghost["execution_id"]) == "abandoned"


def test_a_lock_still_holding_the_run_token_keeps_the_row(
    database_url: str,
    reaper: Reaper,
    ours: Heartbeat,
    clock: HandClock,
    client: redis.Redis,
    redis_prefix: str,
) -> None:
    ghost = running_row(database_url, "ghost")
    key = schedule_lock_key(ghost["schedule_id"], redis_prefix)
    client.set(key, f"ghost|{ghost['execution_id']}|20300101T000000.000000Z", px=5000)
    ours.beat()
    beat_for(TIMING.settle, clock, ours)
    assert reaper.sweep() == 0
    client.delete(key)
    assert reaper.sweep() == 1


def test_an_emptied_redis_abandons_no_live_peer(
    database_url: str,
    reaper: Reaper,
    ours: Heartbeat,
    clock: HandClock,
    client: redis.Redis,
    redis_prefix: str,
) -> None:
    """Redis restarted empty: every heartbeat and lock is gone at once. Our own heartbeat is
    gone too, then recreated (a new generation): nothing is reaped until a TTL of steady beats
    has passed, by when the live peer has written its heartbeat again."""
    peer = Heartbeat(client, "peer", TIMING, redis_prefix, monotonic=clock)
    ghost, alive = running_row(database_url, "ghost"), running_row(database_url, "peer")
    client.set(schedule_lock_key(alive["schedule_id"], redis_prefix), "peer|x|y", px=5000)
    ours.beat()
    peer.beat()
    beat_for(TIMING.settle, clock, ours, peer)
    services.delete_prefixed_keys(client, redis_prefix)  # the restart, as far as we can tell

    assert reaper.sweep() == 0  # our own key is gone
    ours.beat()  # recreated before the peer's next beat: the dangerous moment
    assert client.get(heartbeat_key(US, redis_prefix)) == ours.value
    assert not client.exists(heartbeat_key("peer", redis_prefix))
    assert reaper.sweep() == 0
    assert status(database_url, alive["execution_id"]) == "running"
    beat_for(TIMING.settle, clock, ours, peer)
    assert reaper.sweep() == 1
    assert status(database_url, ghost["execution_id"]) == "abandoned"
    assert status(database_url, alive["execution_id"]) == "running"


def test_late_or_missing_beats_of_ours_hold_the_reaper_back(
    database_url: str, reaper: Reaper, ours: Heartbeat, clock: HandClock
) -> None:
    """A frozen Redis (or a frozen us) shows as our own beats coming late: the peers' beats were
    held up as well, so nothing is judged until a TTL of steady beats has passed again."""
    ours.beat()
    beat_for(TIMING.settle, clock, ours)
    running_row(database_url, "ghost")
    clock.now += TIMING.max_gap + 0.1  # no beat for over half a TTL
    assert reaper.sweep() == 0  # our last beat is overdue
    ours.beat()  # came through, late
    assert reaper.sweep() == 0
    beat_for(TIMING.settle - TIMING.beat, clock, ours)
    assert reaper.sweep() == 0  # not yet a whole TTL since the late beat
    beat_for(TIMING.beat, clock, ours)
    assert reaper.sweep() == 1


def test_heartbeat_refresh_keeps_its_value_and_remove_deletes_only_ours(
    client: redis.Redis, redis_prefix: str, ours: Heartbeat
) -> None:
    ours.beat()
    first = ours.value
    assert first is not None and first.startswith(ours.token)
    ours.beat()
    assert ours.value == first == client.get(heartbeat_key(US, redis_prefix))
    assert 0 < client.pttl(heartbeat_key(US, redis_prefix)) <= TIMING.ttl_ms
    assert live_instances(client, redis_prefix) == {US}
    client.set(heartbeat_key(US, redis_prefix), f"{uuid.uuid4().hex}:other", px=5000)
    ours.remove()  # another process's heartbeat under our id: left alone
    assert client.exists(heartbeat_key(US, redis_prefix))
    ours.beat()  # not ours: written anew, with a new generation
    assert ours.value != first and str(ours.value).startswith(ours.token)
    ours.remove()
    assert not client.exists(heartbeat_key(US, redis_prefix))


def test_a_dead_instance_trigger_requests_go_back_to_every_instance(
    database_url: str,
    db: DatabaseConnection,
    client: redis.Redis,
    redis_prefix: str,
    ours: Heartbeat,
    clock: HandClock,
) -> None:
    """A request claimed by an instance that died before resolving it would stay claimed
    forever (the API said 202, nothing ever ran): the reaper unclaims it on the evidence it
    abandons rows on; a live peer's request stays with it."""
    requests = RunRequestStore(db)
    reaper = Reaper(
        ExecutionStore(db, US),
        client,
        ours,
        prefix=redis_prefix,
        monotonic=clock,
        requests=requests,
    )
    (schedule,) = insert_interval_schedules(
        database_url, 1, seconds=3600, job_type="python", payload={"callable": "tests.support:x"}
    )
    ghosts = requests.request_trigger(schedule["schedule_id"])
    peers = requests.request_trigger(schedule["schedule_id"])
    for claimant, request in (("ghost", ghosts), ("peer", peers)):
        claimed = requests.claim_trigger(claimant)
        assert claimed is not None and claimed.request_id == request.request_id
    peer = Heartbeat(client, "peer", TIMING, redis_prefix, monotonic=clock)
    peer.beat()
    ours.beat()
    assert requests.claim_trigger(US) is None  # both are taken
    reaper.sweep()
    assert requests.claim_trigger(US) is None  # our own beats have not settled yet
    beat_for(TIMING.settle, clock, ours, peer)
    reaper.sweep()
    again = requests.claim_trigger(US)
    assert again is not None and again.request_id == ghosts.request_id
    assert requests.claim_trigger(US) is None  # the peer's stays its own
