"""A libpq multi-host DATABASE_URL (`postgresql://u@a:p1,b:p2/db?target_session_attrs=read-write`)
for PostgreSQL failover: accepted and masked by the settings, and every door to the database (the
pool, the LISTEN connection, the migrator, the CLI) lands on whichever host accepts writes, whatever
the first host in the list is: a closed port, a hot standby, or a primary that just died."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from database.connection import DatabaseConnection, describe_target
from database.migrations import Migrator
from services.config import load_settings
from services.errors import ConfigurationError, DatabaseUnavailable
from services.log import secrets_of
from services.store.executions import ExecutionStore
from services.store.listen import NotificationListener
from tests.integration.test_store_batches import claimed, occurrence, result, schedules
from tests.support.daemon import ROOT
from tests.support.postgres_pair import PostgresPair
from tests.support.redis_server import free_port
from tests.support.schedules import query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
PASSWORD = "failover-secret-42"


@pytest.fixture(scope="module")
def pair() -> Iterator[PostgresPair]:
    """Shared by the tests that leave both servers as they found them."""
    with PostgresPair() as servers:
        yield servers


@pytest.fixture
def own_pair() -> Iterator[PostgresPair]:
    """For a test that kills the primary."""
    with PostgresPair() as servers:
        yield servers


def server_port(db: DatabaseConnection) -> int:
    return int(db.fetch_value("SELECT inet_server_port()"))


def test_settings_accept_the_multi_host_url_and_mask_its_password() -> None:
    url = (
        f"postgresql://app:{PASSWORD}@10.0.0.1:5432,10.0.0.2:5433/scheduler"
        "?target_session_attrs=read-write"
    )
    settings = load_settings({"DATABASE_URL": url}, env_file="")
    assert settings.database_url == url
    shown = settings.public_view()["DATABASE_URL"]
    assert shown == (
        "postgresql://app:***@10.0.0.1:5432,10.0.0.2:5433/scheduler?target_session_attrs=read-write"
    )
    assert PASSWORD in secrets_of(settings)  # so the log masker removes it from every line
    assert describe_target(url) == "10.0.0.1:5432,10.0.0.2:5433/scheduler"

    in_query = f"postgresql://app@a:1,b:2/db?password={PASSWORD}&target_session_attrs=read-write"
    settings = load_settings({"DATABASE_URL": in_query}, env_file="")
    assert PASSWORD not in settings.public_view()["DATABASE_URL"]
    assert PASSWORD in secrets_of(settings)

    # libpq's key=value form, the one its documentation shows for several hosts.
    dsn = (
        f"host=10.0.0.1,10.0.0.2 port=5432,5433 dbname=scheduler user=app "
        f"password='{PASSWORD}' target_session_attrs=read-write"
    )
    settings = load_settings({"DATABASE_URL": dsn}, env_file="")
    assert settings.database_url == dsn
    assert settings.public_view()["DATABASE_URL"] == (
        "host=10.0.0.1,10.0.0.2 port=5432,5433 dbname=scheduler user=app "
        "password=*** target_session_attrs=read-write"
    )
    assert PASSWORD in secrets_of(settings)
    assert describe_target(dsn) == "10.0.0.1:5432,10.0.0.2:5433/scheduler"
    with pytest.raises(ConfigurationError, match="key=value") as refused:
        load_settings({"DATABASE_URL": f"user=app password={PASSWORD}"}, env_file="")
    assert PASSWORD not in str(refused.value)


def test_pool_migrator_and_listener_skip_a_closed_port_and_a_standby(pair: PostgresPair) -> None:
    pair.create_database("skipping")
    closed = free_port()
    hosts = f"127.0.0.1:{closed},127.0.0.1:{pair.standby.port},127.0.0.1:{pair.primary.port}"
    url = f"postgresql://postgres@{hosts}/skipping?target_session_attrs=read-write"

    dsn = (
        f"host=127.0.0.1,127.0.0.1,127.0.0.1 port={closed},{pair.standby.port},{pair.primary.port}"
        " dbname=skipping user=postgres target_session_attrs=read-write"
    )

    Migrator(url).apply()  # run_migrations.py and `scheduler.py migrate` use this
    for conninfo in (url, dsn):
        assert Migrator(conninfo).pending() == []
        db = DatabaseConnection(conninfo, min_size=1, max_size=2)
        try:
            assert server_port(db) == pair.primary.port
            assert db.fetch_value("SELECT pg_is_in_recovery()") is False
            with NotificationListener(db).session(["failover_test"]) as listener:
                db.execute("SELECT pg_notify('failover_test', 'hello')")
                assert ("failover_test", "hello") in list(listener.notifications(timeout=2.0))
        finally:
            db.close()


def test_cli_works_with_the_standby_listed_first_and_never_prints_the_password(
    pair: PostgresPair, redis_url: str
) -> None:
    pair.create_database("cli")
    # Trust authentication ignores the password; it is there to be hidden.
    url = pair.url("cli", standby_first=True).replace(
        "postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@"
    )
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={pair.standby.port},{pair.primary.port} dbname=cli "
        f"user=postgres password={PASSWORD} target_session_attrs=read-write"
    )
    runs = [
        (url, ["run_migrations.py"]),
        (url, ["scheduler.py", "list", "--json"]),
        (dsn, ["scheduler.py", "list", "--json"]),
    ]
    for database_url, args in runs:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ENV_FILE": "",
            "LOG_FORMAT": "json",
        }
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert args[0] == "run_migrations.py" or json.loads(result.stdout) == []
        assert PASSWORD not in result.stdout + result.stderr
    assert Migrator(pair.primary.url("cli")).pending() == []


def test_pool_and_listener_follow_the_promoted_standby(own_pair: PostgresPair) -> None:
    pair = own_pair
    url = pair.create_database("scheduler")
    db = DatabaseConnection(url, min_size=2, max_size=4)
    listener = NotificationListener(db)
    try:
        assert server_port(db) == pair.primary.port
        with listener.session(["failover_test"]) as connection:
            pair.kill_primary()
            with pytest.raises(DatabaseUnavailable):
                list(connection.notifications(timeout=5.0))
        # Until the standby is promoted, no host accepts writes.
        with pytest.raises(DatabaseUnavailable):
            server_port(db)
        pair.promote_standby()

        def reconnected() -> bool:
            try:
                return server_port(db) == pair.standby.port
            except DatabaseUnavailable:
                return False

        wait_until(reconnected, timeout=10.0, interval=0.1, message="the pool on the new primary")
        # Every pooled connection is now to the new primary: none was kept to the dead host.
        ports = {server_port(db) for _ in range(8)}
        assert ports == {pair.standby.port}
        db.execute("CREATE TABLE written_after_failover (n int)")
        with listener.session(["failover_test"]) as connection:
            db.execute("SELECT pg_notify('failover_test', 'after')")
            assert ("failover_test", "after") in list(connection.notifications(timeout=2.0))
    finally:
        db.close()


def test_a_primary_fenced_read_only_is_left_for_the_promoted_standby(
    own_pair: PostgresPair,
) -> None:
    # A failover tool fences the old primary (read-only, still up) and promotes the standby.
    # A result written meanwhile is refused with 25006: it must wait like one during an outage
    # (never be dropped as refused), and the pool and the LISTEN connection must leave the
    # fenced host, which answers everything else as before.
    pair = own_pair
    url = pair.create_database("scheduler")
    Migrator(url).apply()
    db = DatabaseConnection(url, min_size=2, max_size=2)
    store = ExecutionStore(db, "read-only-test")
    listener = NotificationListener(db)
    try:
        (schedule,) = schedules(url, 1)
        (claim,) = claimed(store, [occurrence(schedule)])
        old = pair.primary.url("scheduler")
        with listener.session(["failover_test"]) as connection:
            connection.check_writable()  # a writable primary: no complaint
            query(old, "ALTER SYSTEM SET default_transaction_read_only = on")
            query(old, "SELECT pg_reload_conf()")
            wait_until(
                lambda: all(db.fetch_value("SHOW transaction_read_only") == "on" for _ in range(4)),
                timeout=10.0,
                message="the pooled connections see the primary read-only",
            )
            with pytest.raises(DatabaseUnavailable, match="accepts no writes"):
                connection.check_writable()

        assert store.finish_many([result(claim)]) == [(True, True)]  # waiting, not refused
        assert store.pending_count == 1 and store.database_down
        assert query(old, "SELECT status FROM job_executions") == [{"status": "running"}]

        pair.promote_standby()
        wait_until(
            lambda: store.flush_pending() == 1 or store.pending_count == 0,
            timeout=15.0,
            interval=0.2,
            message="the waiting result written on the promoted standby",
        )
        new = pair.standby.url("scheduler")
        assert query(new, "SELECT status FROM job_executions") == [{"status": "completed"}]
        # A connection still on the fenced host is closed by its first write: soon every write
        # goes through, and all of them to the new primary.
        query(new, "CREATE TABLE after_failover (port int)")

        def written() -> bool:
            try:
                db.execute("INSERT INTO after_failover VALUES (inet_server_port())")
            except DatabaseUnavailable:
                return False
            return True

        wait_until(
            lambda: all(written() for _ in range(4)), timeout=10.0, message="writes go through"
        )
        ports = query(new, "SELECT DISTINCT port FROM after_failover")
        assert ports == [{"port": pair.standby.port}]
        with listener.session(["failover_test"]) as connection:
            connection.check_writable()
            query(new, "SELECT pg_notify('failover_test', 'on the new primary')")
            heard = list(connection.notifications(timeout=2.0))
            assert ("failover_test", "on the new primary") in heard
    finally:
        db.close()
