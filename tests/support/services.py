"""Real PostgreSQL and Redis for tests: a database cloned per test, a Redis key prefix per test.

The servers are the machine's (127.0.0.1:5432, 127.0.0.1:6379) unless TEST_DATABASE_URL /
TEST_REDIS_URL say otherwise. A server that does not answer fails the run with a clear message:
`make test` starts them (deploy/local/ensure-services.sh); nothing is ever skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from database.migrations import Migrator

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_postgres(url: str = ADMIN_URL) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise RuntimeError(
            f"PostgreSQL for tests is not reachable ({exc}); run `make test`, which starts it, "
            "or set TEST_DATABASE_URL"
        ) from None


def require_redis(url: str = REDIS_URL) -> None:
    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        raise RuntimeError(
            f"Redis for tests is not reachable ({exc}); run `make test`, which starts it, "
            "or set TEST_REDIS_URL"
        ) from None


def database_url(name: str) -> str:
    """ADMIN_URL pointed at another database, still as a URL (DATABASE_URL accepts URLs only)."""
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


def create_database(name: str, template: str | None = None) -> str:
    if template is None:
        _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    else:
        _admin(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return database_url(name)


def drop_database(name: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def migrated_template() -> Iterator[str]:
    """A database with every migration applied, to be cloned per test; dropped afterwards."""
    name = f"es_tpl_{uuid.uuid4().hex[:10]}"
    url = create_database(name)
    try:
        Migrator(url).apply()
        yield name
    finally:
        drop_database(name)


@contextmanager
def cloned_database(template: str) -> Iterator[str]:
    name = f"es_t_{uuid.uuid4().hex[:12]}"
    url = create_database(name, template)
    try:
        yield url
    finally:
        drop_database(name)


@contextmanager
def empty_database() -> Iterator[str]:
    name = f"es_e_{uuid.uuid4().hex[:12]}"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


def delete_prefixed_keys(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
