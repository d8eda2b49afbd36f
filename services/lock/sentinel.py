"""A client of the master that Redis Sentinel names, with the same bound and time-outs as the
single-server client.

redis-py's `SentinelConnectionPool` asks the sentinels for the master whenever a connection
(re)connects; it drops idle connections when the answer changes, and a connection that gets
READONLY (its server was demoted to a replica) disconnects and fails with ConnectionError, so the
client's one retry reconnects to the new master. That pool is a plain `ConnectionPool`, though:
past `max_connections` it raises at once instead of waiting. `BlockingSentinelConnectionPool`
keeps the discovery and adds `BlockingConnectionPool`'s wait for a free connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from services.lock.target import RedisTarget

log = structlog.get_logger(__name__)

# After the sentinels named no master, ask again only this much later. A silent check costs up
# to half a connect time-out (2.5 s at LOCK_TIMEOUT=60), which must not delay every heartbeat;
# and the pause loses nothing: sentinels we cannot reach cannot name a new master, and while
# the master is down its connections fail, and each reconnection asks the sentinels itself.
QUIET_AFTER_SILENCE_S = 10.0


class BlockingSentinelConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's master discovery (first in the MRO: its `__init__`, `reset` and
    `owns_connection`) over the blocking pool's queue (`get_connection`, `release`,
    `make_connection`). A connection given back after the master moved is not owned any more:
    the blocking pool disconnects it and puts a free slot back, so the bound holds across a
    failover."""

    def release(self, connection: Any) -> None:
        owned = self.owns_connection(connection)  # type: ignore[no-untyped-call]
        super().release(connection)  # type: ignore[no-untyped-call]
        if not owned and connection in self._connections:
            # The blocking pool remembers every connection it made, to disconnect them at
            # close; one given back after the master moved would stay there for good.
            self._connections.remove(connection)

    def close(self) -> None:
        super().close()
        # The sentinels' own clients belong to this pool alone (one Sentinel per client).
        self.sentinel_manager.close()


def sentinel_client(
    target: RedisTarget,
    *,
    max_connections: int,
    socket_timeout: float,
    connect_timeout: float,
    health_check_interval: int,
    retry: Retry,
) -> redis.Redis:
    """A client of `target.service`'s master; a new connection costs at most `connect_timeout`
    in all: half to ask the sentinels (one after the other, each a share), half to connect."""
    assert target.service is not None, "RedisTarget guarantees a service with sentinels"
    options: dict[str, Any] = parse_url(target.url)  # type: ignore[no-untyped-call]
    options.pop("host", None)  # the sentinels say where the master is
    options.pop("port", None)
    tls = options.pop("connection_class", None) is not None  # rediss://
    per_sentinel = connect_timeout / (2 * len(target.sentinels))
    # redis.sentinel and parse_url ship without type hints, hence the ignores.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={
            "socket_timeout": per_sentinel,
            "socket_connect_timeout": per_sentinel,
            "password": target.sentinel_password,
            # No retry on one sentinel: discovery goes on to the next at once.
            "retry": Retry(NoBackoff(), 0),
        },
    )
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        target.service,
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=max_connections,
        timeout=connect_timeout,  # wait for a free pooled connection no longer than for a new one
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout / 2,
        health_check_interval=health_check_interval,
        retry=retry,
        ssl=tls,
        **options,
    )
    return client


class MasterFollower:
    """Asks the sentinels which server is master now and, if it moved, drops the pool's idle
    connections to the old one (busy ones are dropped when given back).

    The pool asks only when a connection (re)connects, and after a graceful failover
    (SENTINEL FAILOVER, maintenance) the old master keeps accepting writes until the sentinels
    demote it, about 10 s later: without this, locks and heartbeats would go on being written
    where nobody else reads them. The daemon checks with each heartbeat, which bounds that
    split to one heartbeat period. Without Sentinel, `check` does nothing.
    """

    def __init__(
        self, client: redis.Redis, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self.monotonic = monotonic
        self._unanswered = False  # the last check found no sentinel naming a master
        self._quiet_until = 0.0

    def check(self) -> bool:
        """True when the master moved. Never raises: sentinels that cannot answer, or that name
        no master (it is down, a failover is under way), say nothing new about the master we
        are on (its connections fail on their own if it is gone); the client stays where it
        is, and the silence is logged once."""
        pool = self.client.connection_pool
        if not isinstance(pool, SentinelConnectionPool) or self.monotonic() < self._quiet_until:
            return False
        before = pool.master_address
        try:
            after = pool.get_master_address()  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # MasterNotFoundError too
            if not self._unanswered:
                # redis-py's message goes on with each sentinel client's repr; its head says it.
                reason = str(exc).split(" : ", 1)[0]
                log.warning("redis.no_master_named", service=pool.service_name, error=reason)
            self._unanswered = True
            self._quiet_until = self.monotonic() + QUIET_AFTER_SILENCE_S
            return False
        if self._unanswered:
            log.info("redis.master_named", service=pool.service_name)
            self._unanswered = False
        if before is None or before == after:
            return False
        log.warning(
            "redis.master_changed", old=f"{before[0]}:{before[1]}", new=f"{after[0]}:{after[1]}"
        )
        return True


def endpoint(client: redis.Redis) -> dict[str, Any]:
    """Which Redis `client` talks to, for /ready and status (never a password): the master
    its pool last connected to, or None before its first connection."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        address = pool.master_address
        sentinels = [
            "{host}:{port}".format_map(node.connection_pool.connection_kwargs)
            for node in pool.sentinel_manager.sentinels
        ]
        return {
            "mode": "sentinel",
            "service": pool.service_name,
            "master": None if address is None else f"{address[0]}:{address[1]}",
            "sentinels": sorted(sentinels),
        }
    kwargs = pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    return {"mode": "single", "master": where}
