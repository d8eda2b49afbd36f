"""Fixtures of the fault suite: the integration suite's (a migrated database per test, a Redis
key prefix per test), daemon processes that are always cleaned up, and private PostgreSQL and
Redis servers for the cases that stop, restart or freeze them (the shared ones never are)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.migrations import Migrator
from tests.faults.common import Spawn
from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    database_url,
    db,
    env,
    redis_prefix,
    redis_url,
    settings,
    template_database,
)
from tests.support.daemon import DaemonProcess
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Makes daemon processes (not started); whatever is still alive at the end is killed."""
    made: list[DaemonProcess] = []

    def make(
        environ: dict[str, str], instance_id: str, log_name: str | None = None
    ) -> DaemonProcess:
        log = tmp_path / f"{log_name or instance_id}.log"
        daemon = DaemonProcess(environ, log, instance_id=instance_id)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.process is not None and daemon.process.poll() is None:
            os.kill(daemon.pid, signal.SIGCONT)  # in case a test froze it
            daemon.kill()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: it may be stopped, restarted and frozen."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL cluster of this test's own (it gets restarted), migrated; and its URL."""
    with PostgresServer() as pg:
        url = pg.create_database("scheduler")
        Migrator(url).apply()
        yield pg, url
