"""Fixtures of the fault suite: the integration suite's (a migrated database per test, a Redis
key prefix per test), daemon processes that are always cleaned up, and private PostgreSQL and
Redis servers for the cases that stop, restart or freeze them (the shared ones never are)."""

from __future__ import annotations

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
from tests.support.daemon import daemon_spawner
from tests.support.postgres_pair import PostgresPair
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Makes daemon processes (not started); whatever is still alive at the end is killed."""
    yield from daemon_spawner(tmp_path)


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


@pytest.fixture
def postgres_pair() -> Iterator[tuple[PostgresPair, str]]:
    """A primary and its synchronous streaming standby of this test's own (the primary gets
    killed, the standby promoted), migrated; and the multi-host URL of both."""
    with PostgresPair() as pair:
        url = pair.create_database("scheduler")
        Migrator(url).apply()
        yield pair, url
