"""Lock round trips per second, single thread, on the local Redis: `python -m bench.bench_lock`.

REDIS_URL selects the server (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import logging
import os
import time
import uuid

import redis
import structlog

from services.lock.client import create_redis_client
from services.lock.keys import schedule_lock_key
from services.lock.lock import DistributedLock

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _round_trips(client: redis.Redis, key: str, n: int, *, renew: bool) -> float:
    """acquire+release pairs per second; each pair is a fresh lock, as a job run takes one."""
    started = time.perf_counter()
    for _ in range(n):
        lock = DistributedLock(client, key, ttl=60, instance_id="bench", renew=renew)
        if not lock.acquire() or not lock.release():
            raise RuntimeError(f"bench lock {key} was taken or lost: is another writer using it?")
    return n / (time.perf_counter() - started)


def _contended_attempts(client: redis.Redis, key: str, n: int) -> float:
    """acquire() attempts per second on a key someone else holds (the "skip this run" path)."""
    holder = DistributedLock(client, key, ttl=60, instance_id="bench-holder", renew=False)
    if not holder.acquire():
        raise RuntimeError(f"bench lock {key} is taken")
    try:
        started = time.perf_counter()
        for _ in range(n):
            if DistributedLock(client, key, ttl=60, instance_id="bench", renew=False).acquire():
                raise RuntimeError(f"bench lock {key} was acquired twice")
        return n / (time.perf_counter() - started)
    finally:
        holder.release()


def run() -> list[dict[str, object]]:
    client = create_redis_client(REDIS_URL, max_connections=4)
    key = schedule_lock_key(f"bench-{uuid.uuid4().hex}")
    try:
        _round_trips(client, key, 200, renew=False)  # warm up: connection, script cache
        plain = _round_trips(client, key, 5000, renew=False)
        renewed = _round_trips(client, key, 2000, renew=True)
        contended = _contended_attempts(client, key, 5000)
    finally:
        client.delete(key)
        client.close()
    return [
        {
            "figure": "lock acquire+release round trips, renew=False",
            "value": round(plain, 1),
            "unit": "ops/s",
            "n": 5000,
        },
        {
            "figure": "lock acquire+release round trips, renewal on (shared timer)",
            "value": round(renewed, 1),
            "unit": "ops/s",
            "n": 2000,
        },
        {
            "figure": "lock acquire attempts on a held key (SET NX + GET)",
            "value": round(contended, 1),
            "unit": "ops/s",
            "n": 5000,
        },
    ]


if __name__ == "__main__":
    # Measure the lock, not console rendering of its debug lines.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    for row in run():
        print(f"{row['figure']}: {row['value']} {row['unit']} (n={row['n']})")
