"""acquire_many / holders_many / release_many: many DistributedLocks in one Redis round trip.

Real Redis (the shared server, this test's own key prefix) and, for the unreachable case, a
client pointed at a port nothing listens on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from services.errors import LockUnavailable
from services.lock.client import create_redis_client
from services.lock.keys import schedule_lock_key
from services.lock.lock import DistributedLock, acquire_many, holders_many, release_many
from services.ops.timer import shared_timer
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(30)


def pending_renewals(locks: list[DistributedLock]) -> list[object]:
    """Renewal steps still scheduled on the shared timer for these locks."""
    ids = {id(lock) for lock in locks}
    return [h for h in shared_timer().pending_handles() if id(h.owner) in ids]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = create_redis_client(redis_url, socket_timeout=2.0, connect_timeout=2.0)
    yield c
    c.close()


@pytest.fixture
def made(client: redis.Redis) -> Iterator[list[DistributedLock]]:
    """Every lock a test builds goes here; at the end none may still be renewing."""
    locks: list[DistributedLock] = []
    yield locks
    for lock in locks:
        lock.release()
    wait_until(lambda: not pending_renewals(locks), 3.0, 0.02, "no renewal left behind")


def keys(prefix: str, n: int) -> list[str]:
    return [schedule_lock_key(uuid.uuid4(), prefix) for _ in range(n)]


def new_locks(
    made: list[DistributedLock],
    client: redis.Redis,
    names: list[str],
    ttl: float = 10.0,
    instance_id: str = "me",
) -> list[DistributedLock]:
    locks = [DistributedLock(client, k, ttl, instance_id) for k in names]
    made.extend(locks)
    return locks


def test_acquire_many_takes_the_free_keys_and_leaves_a_held_one_alone(
    client: redis.Redis, redis_prefix: str, made: list[DistributedLock]
) -> None:
    names = keys(redis_prefix, 5)
    assert client.set(names[-1], "someone-else|token", px=30_000)
    locks = new_locks(made, client, names, ttl=10.0)

    answers = acquire_many(locks)

    assert answers == [True, True, True, True, False]
    for lock in locks[:-1]:
        assert lock.held
        assert client.get(lock.key) == lock.token
        assert 0 < client.pttl(lock.key) <= 10_000
    assert not locks[-1].held
    assert client.get(names[-1]) == "someone-else|token"  # untouched
    assert client.pttl(names[-1]) > 10_000
    assert len(pending_renewals(locks[:-1])) == 4 and not pending_renewals(locks[-1:])
    assert holders_many(locks) == [*(lock.token for lock in locks[:-1]), "someone-else|token"]


def test_a_lock_taken_by_acquire_many_is_renewed_and_released(
    client: redis.Redis, redis_prefix: str, made: list[DistributedLock]
) -> None:
    """Regression: redis-py's Lock must know the token acquire_many stored, or its renewals
    (and its release) act as if the lock were not ours."""
    ttl = 1.5
    lost: list[DistributedLock] = []
    locks = [
        DistributedLock(client, k, ttl, "me", on_lost=lost.append) for k in keys(redis_prefix, 3)
    ]
    made.extend(locks)
    assert acquire_many(locks) == [True, True, True]
    started = time.monotonic()
    while time.monotonic() - started < 2 * ttl + 0.5:  # well past the TTL of the first SET
        for lock in locks:
            assert client.get(lock.key) == lock.token, f"{lock.key} gone after renewal"
        time.sleep(0.1)
    for lock in locks:
        assert not lock.lost.is_set()
        assert lock.held
        assert 0 < client.pttl(lock.key) <= 1500
    assert lost == []
    assert locks[0].release() is True
    assert client.exists(locks[0].key) == 0
    release_many(locks[1:])
    assert client.exists(*(lock.key for lock in locks[1:])) == 0
    assert not any(lock.held for lock in locks)
    wait_until(lambda: not pending_renewals(locks), 2.0, 0.02, "renewals stopped")
    assert lost == []  # a released lock is not reported lost


def test_holders_many_reads_every_key_in_order(
    client: redis.Redis, redis_prefix: str, made: list[DistributedLock]
) -> None:
    names = keys(redis_prefix, 4)
    client.set(names[1], "other|abc", px=10_000)
    locks = new_locks(made, client, names)
    assert locks[2].acquire()
    assert holders_many(locks) == [None, "other|abc", locks[2].token, None]
    assert holders_many([]) == []


def test_release_many_deletes_only_keys_still_holding_our_token(
    client: redis.Redis, redis_prefix: str, made: list[DistributedLock]
) -> None:
    locks = new_locks(made, client, keys(redis_prefix, 4))
    assert acquire_many(locks) == [True] * 4
    client.set(locks[1].key, "intruder|xyz", px=10_000)  # overwritten before a renewal saw it

    release_many(locks)  # never raises

    assert client.get(locks[1].key) == "intruder|xyz"
    assert client.exists(locks[0].key, locks[2].key, locks[3].key) == 0
    assert not any(lock.held for lock in locks)
    # Releasing again, or locks never taken, is a quiet no-op.
    never = new_locks(made, client, keys(redis_prefix, 2))
    release_many([*locks, *never])
    release_many([])
    assert client.get(locks[1].key) == "intruder|xyz"


def test_release_many_does_not_raise_when_redis_is_gone(
    redis_prefix: str, made: list[DistributedLock]
) -> None:
    with RedisServer() as server:
        private = create_redis_client(server.url, socket_timeout=0.5, connect_timeout=0.5)
        try:
            locks = [DistributedLock(private, k, 10.0, "me") for k in keys(redis_prefix, 3)]
            made.extend(locks)
            assert acquire_many(locks) == [True] * 3
            server.stop()
            started = time.monotonic()
            release_many(locks)  # must not raise: the keys would expire after their TTL
            assert time.monotonic() - started < 5.0
            assert not any(lock.held for lock in locks)
        finally:
            private.close()


def test_acquire_many_against_a_dead_port_returns_lock_unavailable_quickly(
    redis_prefix: str, made: list[DistributedLock]
) -> None:
    dead = create_redis_client(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, connect_timeout=0.5
    )
    try:
        locks = [DistributedLock(dead, k, 10.0, "me") for k in keys(redis_prefix, 3)]
        made.extend(locks)
        started = time.monotonic()
        answers = acquire_many(locks)
        elapsed = time.monotonic() - started
        assert len(answers) == 3
        assert all(isinstance(a, LockUnavailable) for a in answers), answers
        assert all(lock.key in str(a) for lock, a in zip(locks, answers, strict=True))
        assert elapsed < 3.0, f"acquire_many took {elapsed:.2f}s against a closed port"
        assert not any(lock.held for lock in locks)
        assert not pending_renewals(locks)
        holders = holders_many(locks)
        assert len(holders) == 3 and all(isinstance(h, LockUnavailable) for h in holders)
    finally:
        dead.close()
