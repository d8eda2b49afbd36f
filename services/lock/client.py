"""The Redis client factory: explicit time-outs, a bounded pool, one quick retry; a single
server or the master Sentinel names (`RedisTarget`). Every client the process builds (daemon,
readiness probe, CLI, `serve`) comes from `create_redis_client`."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from services.lock.sentinel import sentinel_client
from services.lock.target import RedisTarget, as_target
from services.process_wide import ProcessWide

# One quick retry heals a pooled connection that died with a Redis restart (or, with Sentinel,
# one that finds its server demoted: it reconnects to the new master); redis-py's default
# (10 retries up to 1 s apart) would hide an outage for seconds and delay loss detection.
CLIENT_RETRIES = 1


def create_redis_client(
    target: RedisTarget | str,
    *,
    max_connections: int = 50,
    socket_timeout: float = 5.0,
    connect_timeout: float = 5.0,
    health_check_interval: int = 30,
) -> redis.Redis:
    """A client with explicit time-outs and a bounded pool (callers wait for a free connection)."""
    target = as_target(target)
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=CLIENT_RETRIES)
    if target.uses_sentinel:
        return sentinel_client(
            target,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
            retry=retry,
        )
    pool = redis.BlockingConnectionPool.from_url(
        target.url,
        max_connections=max_connections,
        timeout=connect_timeout,  # wait for a free pooled connection no longer than for a new one
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=health_check_interval,
        retry=retry,
    )
    # from_pool: closing the client also closes its pool.
    return redis.Redis.from_pool(pool)


def lock_client(
    target: RedisTarget | str, *, lock_timeout: float, max_connections: int
) -> redis.Redis:
    """The daemon's client: socket time-outs well under LOCK_TIMEOUT/3, so that a hung Redis
    is noticed before a lock could expire under a run."""
    timeout = min(5.0, lock_timeout / 6)
    return create_redis_client(
        target, max_connections=max_connections, socket_timeout=timeout, connect_timeout=timeout
    )


def _default_client() -> redis.Redis:
    from services.config import get_settings  # late: settings are read on first use

    settings = get_settings()
    # Small enough that a hung Redis cannot block a renewal past a third of the TTL.
    socket_timeout = min(5.0, settings.lock_timeout / (3 * (CLIENT_RETRIES + 1)))
    return create_redis_client(
        RedisTarget.from_settings(settings),
        max_connections=settings.redis_max_connections,
        socket_timeout=socket_timeout,
    )


_client: ProcessWide[redis.Redis] = ProcessWide(_default_client, close=redis.Redis.close)


def get_redis_client() -> redis.Redis:
    """The process-wide client, built on first use from the settings (REDIS_URL or REDIS_HOST,
    or REDIS_SENTINELS)."""
    return _client.get()


def close_redis_client() -> None:
    """Close and forget the process-wide client (at shutdown, and between tests)."""
    _client.reset()
