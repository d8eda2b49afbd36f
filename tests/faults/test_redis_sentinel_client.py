"""Redis through Sentinel (issue 20): the client factory finds the master through the
sentinels (database and both passwords passed through), a lock taken through it works and
rides out a graceful failover, a lock whose key the new master lacks is reported lost, and
/ready names the master in use.

One private deployment for the module (tests/support/redis_sentinel.py): a master, a replica
and three sentinels, with passwords on the data nodes and on the sentinels. The kill -9 of the
master under two daemons is the fault case tests/faults/test_redis_sentinel_failover.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.config import Settings, load_settings
from services.enhanced_scheduler import EnhancedScheduler
from services.lock.client import create_redis_client, lock_client
from services.lock.lock import DistributedLock
from services.lock.sentinel import (
    QUIET_AFTER_SILENCE_S,
    BlockingSentinelConnectionPool,
    MasterFollower,
    endpoint,
)
from services.lock.target import RedisTarget
from tests.integration.test_cli import cli_json
from tests.integration.test_health import get_json, ops_server
from tests.support.api import serving
from tests.support.redis_sentinel import SentinelCluster
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

DATA_PASSWORD = "data-pw-4e1b"
SENTINEL_PASSWORD = "sentinel-pw-90ad"
DB = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster(password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD) as nodes:
        yield nodes


@pytest.fixture
def sentinel_env(env: dict[str, str], cluster: SentinelCluster) -> dict[str, str]:
    """A daemon's environment in Sentinel mode. REDIS_URL is left out on purpose: REDIS_HOST
    and REDIS_PORT (defaults, 127.0.0.1:6379, the shared Redis) must be ignored, and REDIS_DB
    and REDIS_PASSWORD must reach the master."""
    environ = {key: value for key, value in env.items() if key != "REDIS_URL"}
    return {
        **environ,
        "REDIS_SENTINELS": cluster.sentinels_setting,
        "REDIS_SENTINEL_MASTER": cluster.service,
        "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "REDIS_PASSWORD": DATA_PASSWORD,
        "REDIS_DB": str(DB),
        "LOCK_TIMEOUT": "3",
    }


@pytest.fixture
def sentinel_settings(sentinel_env: dict[str, str]) -> Settings:
    return load_settings(sentinel_env, env_file="")


def _on_server(cluster: SentinelCluster, address: tuple[str, int]) -> redis.Redis:
    """A direct client of one data node, on the test's database."""
    server = cluster.server_at(address)
    return redis.Redis(
        server.host, server.port, db=DB, password=DATA_PASSWORD, decode_responses=True
    )


def test_the_factory_finds_the_master_through_the_sentinels_and_a_lock_works(
    sentinel_settings: Settings, cluster: SentinelCluster
) -> None:
    target = RedisTarget.from_settings(sentinel_settings)
    assert str(target) == f"sentinel service {cluster.service!r} via {cluster.sentinels_setting}"
    client = lock_client(target, lock_timeout=3, max_connections=4)
    master = cluster.master_address()
    direct = _on_server(cluster, master)
    try:
        pool = client.connection_pool
        assert isinstance(pool, BlockingSentinelConnectionPool)
        assert pool.max_connections == 4  # the bound of today's pool, kept
        key = f"{sentinel_settings.redis_key_prefix}lock:{uuid.uuid4()}"
        lock = DistributedLock(client, key, ttl=3, instance_id="it")
        assert lock.acquire()
        # On the master the sentinels name, in REDIS_DB, holding our token.
        assert direct.get(key) == lock.token
        assert endpoint(client)["master"] == f"{master[0]}:{master[1]}"
        assert not DistributedLock(client, key, ttl=3, instance_id="other").acquire()
        assert lock.release()
        assert direct.exists(key) == 0
    finally:
        direct.close()
        client.close()


def test_the_pool_waits_for_a_free_connection_instead_of_failing(
    sentinel_settings: Settings,
) -> None:
    """redis-py's SentinelConnectionPool raises "Too many connections" at its bound; ours
    waits, as the single-server BlockingConnectionPool does."""
    client = create_redis_client(
        RedisTarget.from_settings(sentinel_settings), max_connections=2, connect_timeout=5
    )
    pool = client.connection_pool
    try:
        held = [pool.get_connection(), pool.get_connection()]
        threading.Timer(0.2, pool.release, args=(held[0],)).start()
        third = pool.get_connection()  # waits for the release above (up to 5 s), then reuses it
        assert third is held[0]
        pool.release(third)
        pool.release(held[1])
    finally:
        client.close()


def test_a_wrong_sentinel_password_fails_with_the_reason(
    sentinel_settings: Settings, cluster: SentinelCluster
) -> None:
    target = RedisTarget.from_settings(sentinel_settings)
    wrong = RedisTarget(target.url, target.sentinels, target.service, "not-the-password")
    client = create_redis_client(wrong, max_connections=2, socket_timeout=1, connect_timeout=1)
    try:
        with pytest.raises(redis.ConnectionError, match="No master found"):
            client.ping()
    finally:
        client.close()


def test_a_held_lock_rides_out_a_failover_and_a_missing_token_is_a_lost_lock(
    sentinel_settings: Settings, cluster: SentinelCluster
) -> None:
    client = lock_client(
        RedisTarget.from_settings(sentinel_settings), lock_timeout=3, max_connections=4
    )
    key = f"{sentinel_settings.redis_key_prefix}lock:{uuid.uuid4()}"
    lost: list[DistributedLock] = []
    lock = DistributedLock(client, key, ttl=3, instance_id="it", on_lost=lost.append)
    old = cluster.master_address()
    pool = client.connection_pool
    assert isinstance(pool, BlockingSentinelConnectionPool)
    try:
        assert lock.acquire()
        busy = pool.get_connection()  # in use across the failover, as a slow command would be
        # A graceful failover (SENTINEL FAILOVER): the replica, in sync, is promoted and the
        # old master demoted. Pooled connections to it get READONLY and go to the new master.
        sentinel = cluster.sentinel_client(cluster.sentinels[0])
        try:
            assert sentinel.sentinel_failover(cluster.service)
        finally:
            sentinel.close()
        new = cluster.wait_for_failover(old)
        on_new = _on_server(cluster, new)
        try:
            # The old master takes writes until the sentinels demote it (~10 s): the daemon
            # asks the sentinels with each heartbeat, and so does this test, once.
            assert MasterFollower(client).check()
            assert endpoint(client)["master"] == f"{new[0]}:{new[1]}"
            # Given back after the move: not the pool's any more, closed, its slot free again.
            pool.release(busy)
            assert busy not in pool._connections and busy._sock is None
            assert len(pool._connections) <= pool.max_connections
            # Renewal (every ttl/3 = 1 s) carries on against the new master: the TTL there is
            # refreshed, and the lock was never lost.
            assert on_new.get(key) == lock.token
            wait_until(lambda: on_new.pttl(key) > 2500, 5, 0.05, "a renewal on the new master")
            assert lock.held and not lost

            # What async replication can do to a lock taken just before a master dies: the new
            # master lacks the key. The next renewal finds no token: the lock is lost (fencing
            # then stops the run; the occurrence's unique key stops a second one).
            on_new.delete(key)
            wait_until(lambda: lost, 3, 0.05, "the lock reported lost")
            assert lost == [lock] and not lock.held
        finally:
            on_new.close()
    finally:
        lock.release()
        client.close()


def test_ready_and_status_name_the_master_in_use(
    sentinel_env: dict[str, str], sentinel_settings: Settings, cluster: SentinelCluster
) -> None:
    scheduler = EnhancedScheduler(settings=sentinel_settings)
    server = ops_server(scheduler)
    server.start()
    try:
        master = cluster.master_address()
        status, body = get_json(server.port, "/ready")
        # Not started, so not ready; but Redis answered, through the master the sentinels gave.
        assert (status, body["reasons"]) == (503, ["scheduler: not started"]), body
        assert body["redis_master"] == f"{master[0]}:{master[1]}"
        _, detailed = get_json(server.port, "/health/detailed")
        assert detailed["checks"]["redis"]["mode"] == "sentinel"
        assert detailed["checks"]["redis"]["master"] == f"{master[0]}:{master[1]}"
        scheduler.redis.ping()
        where = scheduler.status()["redis"]
        assert where["service"] == cluster.service
        assert where["master"] == f"{master[0]}:{master[1]}"
        assert DATA_PASSWORD not in str(where) and SENTINEL_PASSWORD not in str(body)
        # The CLI builds its client from the same factory; REDIS_URL's host (a closed port
        # here) is ignored in Sentinel mode, its database and password are not.
        url = f"redis://:{DATA_PASSWORD}@127.0.0.1:1/{DB}"
        report = cli_json({**sentinel_env, "REDIS_URL": url}, "status")
        assert report["redis"]["mode"] == "sentinel", report
        assert report["redis"]["master"] == f"{master[0]}:{master[1]}", report
        assert report["problems"] == [], report
    finally:
        server.stop()
        scheduler.db.close()
        scheduler.redis.close()


def test_serve_is_ready_through_the_sentinels(
    sentinel_env: dict[str, str], cluster: SentinelCluster, tmp_path: Path
) -> None:
    master = "{}:{}".format(*cluster.master_address())
    with serving(sentinel_env, tmp_path / "serve.log") as server:
        assert get_json(server.port, "/ready") == (200, {"ready": True, "redis_master": master})
        status, body = get_json(server.port, "/status")
        assert (status, body["mode"], body["redis"]["mode"]) == (200, "serve", "sentinel"), body
        assert body["redis"]["service"] == cluster.service
        # /status does no I/O (it runs on the event loop): the master of the pool's last
        # connection, None before serve's own client has been used.
        assert body["redis"]["master"] in (None, master), body


def test_sentinels_that_do_not_answer_leave_the_client_on_its_master(
    sentinel_settings: Settings, cluster: SentinelCluster
) -> None:
    client = lock_client(
        RedisTarget.from_settings(sentinel_settings), lock_timeout=3, max_connections=4
    )
    now = [0.0]
    follower = MasterFollower(client, monotonic=lambda: now[0])
    try:
        client.ping()
        before = endpoint(client)["master"]
        for node in cluster.sentinels:
            node.pause()  # SIGSTOP: connections hang, as behind a partition
        try:
            # The heartbeat's check says nothing moved (and does not fail the beat): the
            # master itself still answers on the pooled connection.
            assert follower.check() is False
            assert client.ping() and endpoint(client)["master"] == before
        finally:
            for node in cluster.sentinels:
                node.resume()
        # Silent sentinels are not asked again at every beat (each silent check costs up to
        # half a connect time-out), only QUIET_AFTER_SILENCE_S later.
        now[0] = QUIET_AFTER_SILENCE_S - 1
        assert follower.check() is False and follower._unanswered
        now[0] = QUIET_AFTER_SILENCE_S + 1
        wait_until(lambda: follower.check() is False and not follower._unanswered, 10, 0.1)
    finally:
        client.close()
