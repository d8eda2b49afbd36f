"""A private Redis Sentinel deployment: a master, one replica and three sentinels, each a
redis-server of its own on a spare port (tests/support/redis_server.py), stopped by PID.

    with SentinelCluster() as cluster:
        env = {"REDIS_SENTINELS": cluster.sentinels_setting,
               "REDIS_SENTINEL_MASTER": cluster.service}
        old = cluster.master_address()
        cluster.master.kill(); cluster.wait_for_failover(old)   # the replica is promoted

Sentinels notice a dead master after `down-after-milliseconds` (1 s) and need two of three to
agree (quorum 2) and a majority to elect the leader that promotes the replica.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import redis

from tests.support.managed import Managed
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until

T = TypeVar("T")

SERVICE = "scheduler-test"


class SentinelCluster(Managed):
    def __init__(
        self,
        *,
        service: str = SERVICE,
        password: str | None = None,
        sentinel_password: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.startup_timeout = startup_timeout
        self.master = RedisServer(password=password)
        self.replica = RedisServer(
            password=password, extra_args=("--replicaof", self.master.host, str(self.master.port))
        )
        self.sentinels = [self._sentinel() for _ in range(3)]

    def _sentinel(self) -> RedisServer:
        port = free_port()
        node = RedisServer(port, password=self.sentinel_password, extra_args=("--sentinel",))
        lines = [
            "sentinel resolve-hostnames no",
            f"sentinel monitor {self.service} {self.master.host} {self.master.port} 2",
            f"sentinel down-after-milliseconds {self.service} 1000",
            f"sentinel failover-timeout {self.service} 5000",
            f"sentinel parallel-syncs {self.service} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.service} {self.password}")
        conf = node.dir / "sentinel.conf"  # a sentinel rewrites its file: it must be its own
        conf.write_text("\n".join(lines) + "\n")
        node.config_file = conf
        return node

    @property
    def sentinels_setting(self) -> str:
        """REDIS_SENTINELS for these sentinels."""
        return ",".join(f"{node.host}:{node.port}" for node in self.sentinels)

    def sentinel_client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(
            node.host,
            node.port,
            password=self.sentinel_password,
            decode_responses=True,
            socket_timeout=2,
        )

    def master_seen_by(self, node: RedisServer) -> dict[str, object]:
        client = self.sentinel_client(node)
        try:
            state: dict[str, object] = client.sentinel_master(self.service)
            return state
        finally:
            client.close()

    def master_address(self) -> tuple[str, int]:
        """The master every running sentinel names now (AssertionError if they disagree)."""
        answers = set()
        for node in self.sentinels:
            if node.running:
                state = self.master_seen_by(node)
                answers.add((str(state["ip"]), int(str(state["port"]))))
        assert len(answers) == 1, f"sentinels disagree on the master: {answers}"
        (address,) = answers
        return address

    def server_at(self, address: tuple[str, int]) -> RedisServer:
        (server,) = (s for s in (self.master, self.replica) if (s.host, s.port) == address)
        return server

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        for node in self.sentinels:
            node.start()
        self._wait(self._settled, "sentinels that see the master, its replica and each other")

    def wait_for_failover(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Wait until every running sentinel names a new master that answers as one; return it."""

        def promoted() -> tuple[str, int] | None:
            try:
                address = self.master_address()
            except (AssertionError, redis.RedisError):
                return None
            if address == old:
                return None
            client = self.server_client(self.server_at(address))
            try:
                return address if client.info("replication")["role"] == "master" else None
            finally:
                client.close()

        return self._wait(promoted, f"a master other than {old}", timeout)

    def server_client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)

    def _settled(self) -> bool:
        try:
            replica = self.server_client(self.replica)
            try:
                if replica.info("replication").get("master_link_status") != "up":
                    return False  # still in its first sync: a write now might not reach it
            finally:
                replica.close()
            for node in self.sentinels:
                state = self.master_seen_by(node)
                flags = str(state.get("flags", ""))
                if "s_down" in flags or "o_down" in flags:
                    return False
                if int(str(state["num-slaves"])) < 1 or int(str(state["num-other-sentinels"])) < 2:
                    return False
        except redis.RedisError:
            return False
        return True

    def _wait(self, condition: Callable[[], T], what: str, timeout: float | None = None) -> T:
        try:
            return wait_until(condition, timeout or self.startup_timeout, 0.1, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tails()}") from None

    def close(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.close()

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {name} :{server.port}\n{server.log_tail()}"
            for name, server in (
                ("master", self.master),
                ("replica", self.replica),
                *((f"sentinel {n}", s) for n, s in enumerate(self.sentinels)),
            )
        )
