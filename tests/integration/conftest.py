"""Fixtures for tests against real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from database.connection import DatabaseConnection
from services.config import Settings, load_settings
from tests.support import services


@pytest.fixture(scope="session")
def template_database() -> Iterator[str]:
    services.require_postgres()
    with services.migrated_template() as name:
        yield name


@pytest.fixture
def database_url(template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database of this test's own."""
    with services.cloned_database(template_database) as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[DatabaseConnection]:
    conn = DatabaseConnection(database_url, min_size=1, max_size=4)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    services.require_redis()
    return services.REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """This test's own Redis key prefix; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    services.delete_prefixed_keys(client, prefix)
    client.close()


@pytest.fixture
def env(database_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """Environment for a daemon or CLI process of this test."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": redis_prefix,
        "HTTP_PORT": "0",
        "LOG_FORMAT": "json",
        "ENV_FILE": "",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(env)
