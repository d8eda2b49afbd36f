"""Case 1: three instances, 200 schedules firing every second, while a chaos loop `kill -9`s a
random instance every 10-20 s and restarts it (at once, or after up to 3 s down, so that both
the restart's own recovery and the other instances' reaper take over its runs).

Occurrences due while an instance is dead are run by the other two: the whole run is one
healthy window, and every occurrence in it must have exactly one row.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis

from services.lock.keys import schedule_lock_key
from tests.faults.chaos import kill_chaos_case
from tests.faults.common import (
    NOOP,
    Spawn,
    db_now,
    engine_env,
    keep_alive_for,
    scaled,
    start_all,
)
from tests.support.schedules import insert_interval_schedules, interval_occurrences, query
from tests.support.waiting import wait_until

DURATION = scaled(60)
LOCK_TIMEOUT, HEARTBEAT = 3.0, 0.5


@pytest.mark.timeout(int(150 + 2 * DURATION))
def test_kill_9_chaos_loses_nothing_and_runs_nothing_twice(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    kill_chaos_case("case 1", env, database_url, redis_url, redis_prefix, spawn, duration=DURATION)


@pytest.mark.timeout(120)
def test_instance_killed_between_lock_and_claim_loses_no_occurrence(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    """The chaos loop's narrowest window, made wide on purpose: an instance takes an
    occurrence's lock, then dies before its claim reaches the database (here its INSERT waits
    on an uncommitted row of this test's, and dies with the process before that row is rolled
    back). The other instance, which saw the lock held "for this very occurrence", must not
    let the occurrence vanish: once the dead holder's lock expires, the occurrence gets a row
    (run, or skipped saying why)."""
    period = 2
    (schedule,) = insert_interval_schedules(
        database_url, 1, seconds=period, job_type="python", payload=NOOP
    )
    sid = schedule["schedule_id"]
    environ = engine_env(env, LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}", HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}")
    daemons = {name: spawn(environ, name) for name in ("inst-a", "inst-b")}
    start_all(daemons.values())
    grid = interval_occurrences(
        schedule["created_at"],
        period,
        db_now(database_url) + timedelta(seconds=2),
        db_now(database_url) + timedelta(seconds=2 + period),
    )
    target = grid[0]
    stamp = target.strftime("%Y%m%dT%H%M%S.%fZ")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    blocker = psycopg.connect(database_url)  # a transaction left open: the claim waits on it
    try:
        blocker.execute(
            "INSERT INTO job_executions (execution_id, schedule_id, job_id, domain, "
            "domain_config_id, status, started_at, scheduled_for, attempt) "
            "SELECT gen_random_uuid(), schedule_id, 'blocker', domain, domain_config_id, "
            "'skipped', now(), %s, 1 FROM schedules WHERE schedule_id = %s",
            (target, sid),
        )
        key = schedule_lock_key(sid, redis_prefix)
        token = wait_until(
            lambda: (t := client.get(key)) and t.split("|")[2] == stamp and t,
            period + 10,
            0.01,
            f"the lock of occurrence {stamp}",
        )
        holder = daemons[token.split("|")[0]]
        (other,) = (d for d in daemons.values() if d is not holder)
        while datetime.now(UTC) < target + timedelta(seconds=1):  # both have fired it by then
            time.sleep(0.05)
        holder.kill()
        # Its claim, still waiting in a backend of its own, dies with it (as when the host is
        # lost): terminated before the blocking row goes, so it never reaches the table.
        query(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE '%%INSERT INTO job_executions%%'",
        )
    finally:
        blocker.rollback()
        blocker.close()
        client.close()
    keep_alive_for(LOCK_TIMEOUT + 3 * period, [other])
    assert other.terminate(timeout=40) == 0, other.tail()
    rows = query(
        database_url,
        "SELECT status, instance_id, error_message FROM job_executions "
        "WHERE schedule_id = %s AND scheduled_for = %s",
        (sid, target),
    )
    print(f"\noccurrence {target:%T}: lock held by {holder.instance_id}; rows {rows}")
    assert rows, (
        f"occurrence {target:%T} vanished: {holder.instance_id} died holding its lock before "
        f"claiming it, and {other.instance_id}, which lost the lock race, dropped it for good"
    )
