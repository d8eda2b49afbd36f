"""DistributedLock against real Redis: expiry, renewal, loss detection, outages, contention.

Shared Redis (127.0.0.1:6379, or REDIS_URL): each test uses its own uuid key and deletes it.
Outage tests run a private redis-server (tests.support.redis_server) and stop or freeze that one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import structlog
from structlog.testing import capture_logs

from services.errors import LockNotAcquired, LockUnavailable
from services.lock.client import create_redis_client
from services.lock.keys import schedule_lock_key
from services.lock.lock import DistributedLock
from services.ops.timer import TimerHandle, shared_timer
from tests.support.redis_server import RedisServer, free_port

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Outage tests: calls must fail well within ttl/3 for loss to be detected on time.
FAST_TIMEOUT = 0.2


def renew_threads(key: str | None = None) -> list[TimerHandle]:
    """Pending renewals of locks on `key`: steps scheduled on the shared timer thread."""
    return [
        handle
        for handle in shared_timer().pending_handles()
        if isinstance(handle.owner, DistributedLock) and (key is None or handle.owner.key == key)
    ]


def wait_for(condition: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = create_redis_client(REDIS_URL, socket_timeout=2.0, connect_timeout=2.0)
    yield c
    c.close()


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    k = schedule_lock_key(uuid.uuid4(), prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield k
    client.delete(k)
    # No test may leave a renewal thread behind.
    assert wait_for(lambda: not renew_threads(k), 3.0), renew_threads(k)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@pytest.fixture
def fast_client(server: RedisServer) -> Iterator[redis.Redis]:
    c = create_redis_client(
        server.url, socket_timeout=FAST_TIMEOUT, connect_timeout=FAST_TIMEOUT, max_connections=8
    )
    yield c
    server.resume()  # a frozen server would make close() wait for time-outs
    c.close()


# 1. expiry without renewal, survival with renewal


def test_key_expires_after_ttl_without_renewal(client: redis.Redis, key: str) -> None:
    lock = DistributedLock(client, key, ttl=0.5, instance_id="i1", renew=False)
    started = time.monotonic()
    assert lock.acquire()
    assert client.get(key) == lock.token
    assert not renew_threads(key)
    assert wait_for(lambda: client.exists(key) == 0, 2.0)
    elapsed = time.monotonic() - started
    print(f"key expired after {elapsed:.3f}s (ttl 0.5s)")
    assert elapsed >= 0.45
    assert not lock.held
    assert not lock.release()  # expired: nothing of ours to delete


def test_renewal_keeps_key_beyond_ttl(client: redis.Redis, key: str) -> None:
    lost: list[DistributedLock] = []
    lock = DistributedLock(client, key, ttl=1.0, instance_id="i1", on_lost=lost.append)
    assert lock.acquire()
    assert len(renew_threads(key)) == 1
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # checked all along, not only at the end
        assert client.get(key) == lock.token
        assert lock.held
        time.sleep(0.25)
    assert 0 < client.pttl(key) <= 1000
    assert not lock.lost.is_set() and not lost
    assert lock.release()
    assert client.exists(key) == 0
    assert not renew_threads(key)


# 2. overwritten key -> lost within one renewal interval


def test_overwritten_key_is_detected_within_renew_interval(client: redis.Redis, key: str) -> None:
    ttl = 1.5
    called: list[DistributedLock] = []
    lock = DistributedLock(client, key, ttl=ttl, instance_id="i1", on_lost=called.append)
    with capture_logs() as logs:
        assert lock.acquire()
        time.sleep(0.1)  # land between two renewals rather than at acquisition
        client.set(key, "intruder", px=10_000)
        overwritten = time.monotonic()
        assert lock.lost.wait(ttl)
        elapsed = time.monotonic() - overwritten
    print(f"loss detected {elapsed:.3f}s after overwrite (bound ttl/3={ttl / 3:.3f}s + 0.3s)")
    assert elapsed <= ttl / 3 + 0.3
    assert called == [lock]
    assert not lock.held
    lost_logs = [e for e in logs if e["event"] == "lock.lost" and e["token"] == lock.token]
    assert len(lost_logs) == 1
    assert lost_logs[0]["key"] == key and lost_logs[0]["token"] == lock.token
    assert lost_logs[0]["reason"]
    assert not lock.release()  # after loss: no-op, and the intruder keeps its key
    assert client.get(key) == "intruder"
    assert not renew_threads(key)


def test_on_lost_exception_is_logged_and_release_from_callback_works(
    client: redis.Redis, key: str
) -> None:
    def on_lost(lock: DistributedLock) -> None:
        lock.release()  # from the renewal thread itself
        raise RuntimeError("callback bug")

    lock = DistributedLock(client, key, ttl=0.6, instance_id="i1", on_lost=on_lost)
    with capture_logs() as logs:
        assert lock.acquire()
        client.delete(key)
        assert lock.lost.wait(2.0)
        assert wait_for(lambda: not renew_threads(key), 2.0)
    assert "lock.on_lost_failed" in [e["event"] for e in logs]


# 3. Redis stopped or frozen while held -> lost by the TTL; a new acquire works once it is back


def test_lost_when_redis_stops_then_reacquire_after_restart(
    server: RedisServer, fast_client: redis.Redis
) -> None:
    ttl = 1.5
    key = schedule_lock_key(uuid.uuid4())
    lock = DistributedLock(fast_client, key, ttl=ttl, instance_id="i1")
    assert lock.acquire()
    time.sleep(0.2)
    server.stop()
    stopped = time.monotonic()
    assert lock.lost.wait(ttl + 1.0)
    elapsed = time.monotonic() - stopped
    print(f"loss detected {elapsed:.3f}s after Redis stopped (ttl {ttl}s)")
    assert elapsed <= ttl + 0.25
    # Not earlier than the key could have expired on the server.
    assert elapsed >= ttl - ttl / 3 - 0.25
    assert not lock.release()  # Redis still down: returns, never raises
    with pytest.raises(LockUnavailable, match=key):
        DistributedLock(fast_client, key, ttl=ttl, instance_id="i2").acquire()

    server.start()
    again = DistributedLock(fast_client, key, ttl=ttl, instance_id="i2")
    assert again.acquire()
    assert again.holder() == again.token
    assert again.release()
    assert fast_client.exists(key) == 0
    assert not renew_threads(key)


def test_lost_when_redis_freezes_then_reacquire_after_resume(
    server: RedisServer, fast_client: redis.Redis
) -> None:
    ttl = 1.5
    key = schedule_lock_key(uuid.uuid4())
    lock = DistributedLock(fast_client, key, ttl=ttl, instance_id="i1")
    assert lock.acquire()
    server.pause()
    paused = time.monotonic()
    assert lock.lost.wait(ttl + 2.0)
    elapsed = time.monotonic() - paused
    # A renewal blocked in a call may end one socket time-out per attempt (2 attempts) late.
    print(f"loss detected {elapsed:.3f}s after Redis froze (ttl {ttl}s)")
    assert elapsed <= ttl + 2 * FAST_TIMEOUT + 0.5
    server.resume()
    again = DistributedLock(fast_client, key, ttl=ttl, instance_id="i2")
    assert again.acquire(wait=ttl)  # the frozen key has expired by wall clock meanwhile
    assert lock.release() is False
    assert again.release()
    assert fast_client.exists(key) == 0


# 4. contention: 4 processes x 10 threads, never two holders at once

_ACQUIRED, _RELEASED, _LOST, _ERRORS, _VIOLATIONS = range(5)


def _contention_worker(
    url: str,
    key: str,
    duration: float,
    threads: int,
    worker: int,
    start: Any,
    marker: Any,
    counters: Any,
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    client = create_redis_client(url, max_connections=threads * 2)

    def count(index: int) -> None:
        with counters.get_lock():
            counters[index] += 1

    def loop(me: int) -> None:
        rng = random.Random(me)
        end = time.monotonic() + duration
        while time.monotonic() < end:
            try:
                lock = DistributedLock(client, key, ttl=2.0, instance_id=f"w{me}")
                if not lock.acquire():
                    time.sleep(rng.uniform(0.005, 0.02))
                    continue
                count(_ACQUIRED)
                with marker.get_lock():
                    if marker.value != 0:
                        count(_VIOLATIONS)
                    marker.value = me
                time.sleep(rng.uniform(0.0, 0.005))
                with marker.get_lock():
                    if marker.value != me:
                        count(_VIOLATIONS)
                    marker.value = 0
                if lock.release():
                    count(_RELEASED)
                elif lock.lost.is_set():
                    count(_LOST)
                else:
                    count(_ERRORS)
            except Exception:
                count(_ERRORS)
                time.sleep(0.05)

    workers = [
        threading.Thread(target=loop, args=(worker * 100 + n + 1,), name=f"contender-{n}")
        for n in range(threads)
    ]
    start.wait(60)  # all processes start contending together
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    client.close()


def test_contention_never_two_holders(client: redis.Redis, key: str) -> None:
    processes, threads, duration = 4, 10, 10.0
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes + 1)
    marker = ctx.Value("i", 0)
    counters = ctx.Array("q", 5)
    procs = [
        ctx.Process(
            target=_contention_worker,
            args=(REDIS_URL, key, duration, threads, w, start, marker, counters),
        )
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        start.wait(60)
        began = time.monotonic()
        for p in procs:
            p.join(duration + 20)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    took = time.monotonic() - began
    acquired, released, lost, errors, violations = counters[:]
    print(
        f"{processes}x{threads} contenders, {took:.1f}s: {acquired} acquisitions, "
        f"{released} released, {lost} lost, {errors} errors, {violations} overlaps"
    )
    assert [p.exitcode for p in procs] == [0] * processes
    assert violations == 0
    assert errors == 0
    assert acquired > 100
    assert acquired == released + lost
    assert client.exists(key) == 0


# 5. release by a non-owner


def test_release_by_non_owner_keeps_owner_key(client: redis.Redis, key: str) -> None:
    owner = DistributedLock(client, key, ttl=5, instance_id="owner")
    assert owner.acquire()
    other = DistributedLock(client, key, ttl=5, instance_id="other")
    assert other.token != owner.token
    assert other.acquire() is False
    assert other.release() is False
    assert client.get(key) == owner.token
    assert other.holder() == owner.token
    assert owner.release()


def test_release_by_stale_owner_keeps_new_owner_key(client: redis.Redis, key: str) -> None:
    stale = DistributedLock(client, key, ttl=0.3, instance_id="stale", renew=False)
    assert stale.acquire()
    fresh = DistributedLock(client, key, ttl=5, instance_id="fresh")
    assert fresh.acquire(wait=2.0)  # once the stale one has expired
    assert stale.release() is False  # compare-and-delete on its own token: no effect
    assert client.get(key) == fresh.token
    assert fresh.release()


# 6. unreachable Redis, context manager, bounded wait, threads


def test_acquire_against_closed_port_raises_lock_unavailable_quickly() -> None:
    unreachable = create_redis_client(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5, connect_timeout=0.5
    )
    key = schedule_lock_key(uuid.uuid4())
    lock = DistributedLock(unreachable, key, ttl=5, instance_id="i1")
    started = time.monotonic()
    with pytest.raises(LockUnavailable, match=key) as raised:
        lock.acquire()
    elapsed = time.monotonic() - started
    print(f"LockUnavailable after {elapsed:.3f}s: {raised.value}")
    assert elapsed < 1.5
    assert "ConnectionError" in str(raised.value)
    assert not lock.held
    assert lock.release() is False
    with pytest.raises(LockUnavailable):
        lock.holder()
    assert not renew_threads(key)
    unreachable.close()


def test_context_manager(client: redis.Redis, key: str) -> None:
    with DistributedLock(client, key, ttl=5, instance_id="i1") as lock:
        assert lock.held
        assert client.get(key) == lock.token
        assert lock.token.startswith("i1|")
        assert len(renew_threads(key)) == 1
        with pytest.raises(LockNotAcquired, match=lock.token):
            with DistributedLock(client, key, ttl=5, instance_id="i2"):
                pytest.fail("entered a lock held by someone else")
    assert not lock.held
    assert client.exists(key) == 0
    assert not renew_threads(key)
    with pytest.raises(RuntimeError):
        lock.acquire()  # one acquisition per object


def test_bounded_wait(client: redis.Redis, key: str) -> None:
    holder = DistributedLock(client, key, ttl=0.5, instance_id="i1", renew=False)
    assert holder.acquire()
    waiter = DistributedLock(client, key, ttl=5, instance_id="i2", token="i2|run-42")
    started = time.monotonic()
    assert waiter.acquire(wait=0.15) is False
    assert 0.1 <= time.monotonic() - started < 0.5
    assert waiter.acquire(wait=2.0)
    assert time.monotonic() - started < 1.5
    assert client.get(key) == "i2|run-42"
    assert waiter.release()
