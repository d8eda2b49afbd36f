"""Redis Sentinel failover (issue 20, acceptance 2): two daemons on a private master, replica
and three sentinels; 50 schedules every second and a few 4-s commands; the master is killed
(`kill -9`) mid-run, the sentinels promote the replica, and the daemons go on against it.

Every occurrence of the case gets exactly one row: those due while no master answered are
`skipped` (Redis unreachable), never run unlocked and never run twice. Runs resume on the new
master (their lock keys are there, `completed` rows follow the failover), and a lock the
failover lost (a renewal finding its token gone) stops its run instead of letting a second one
start: the unique key and fencing hold across the failover. (Here the failover is shorter than
LOCK_TIMEOUT and replication keeps up, so locks usually survive it; the lost-token branch is
made to happen in tests/faults/test_redis_sentinel_client.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import redis

from tests.faults.common import NOOP, Spawn, db_now, engine_env, keep_alive_for, scaled, start_all
from tests.faults.invariants import CaseRecord, Ending, Report, check_invariants
from tests.support.daemon import DaemonProcess
from tests.support.redis_sentinel import SentinelCluster
from tests.support.schedules import duplicated_occurrences, insert_interval_schedules, query
from tests.support.waiting import wait_until

SCHEDULES, PERIOD = 50, 1
LONG_SCHEDULES, LONG_PERIOD, LONG_SECONDS = 3, 5, 4
BEFORE, AFTER = scaled(15), scaled(20)
LOCK_TIMEOUT, HEARTBEAT = 3.0, 0.5
CHECK_INTERVAL = 6 * HEARTBEAT + 2.0


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    with SentinelCluster() as nodes:
        yield nodes


def _first_completed_after(database_url: str, moment: datetime) -> datetime | None:
    (row,) = query(
        database_url,
        "SELECT min(started_at) AS first FROM job_executions "
        "WHERE status = 'completed' AND started_at > %s",
        (moment,),
    )
    first: datetime | None = row["first"]
    return first


def _sentinel_env(env: dict[str, str], cluster: SentinelCluster) -> dict[str, str]:
    base = {key: value for key, value in env.items() if key != "REDIS_URL"}  # no direct Redis
    return engine_env(
        base,
        REDIS_SENTINELS=cluster.sentinels_setting,
        REDIS_SENTINEL_MASTER=cluster.service,
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
        MAX_WORKERS="10",
    )


def _check(
    database_url: str,
    master_url: str,
    redis_prefix: str,
    window: tuple[datetime, datetime],
    endings: list[Ending],
    schedules: list[dict[str, Any]],
    daemons: list[DaemonProcess],
) -> Report:
    """The fault suite's invariants, the whole run one healthy window: master or not, every
    occurrence gets a row (run, or skipped saying why)."""
    return check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=master_url,
            redis_prefix=redis_prefix,
            lock_timeout=LOCK_TIMEOUT,
            check_interval=CHECK_INTERVAL,
            heartbeat_ttl=3 * HEARTBEAT,
            endings=endings,
            schedules=schedules,
            period=PERIOD,
            healthy=[window],
            daemons=daemons,
        )
    )


def _lock_keys(client: redis.Redis, prefix: str) -> list[str]:
    return [str(key) for key in client.scan_iter(match=f"{prefix}lock:*", count=1000)]


@pytest.mark.timeout(int(180 + 2 * (BEFORE + AFTER)))
def test_runs_resume_on_the_new_master_and_nothing_runs_twice(
    env: dict[str, str],
    database_url: str,
    redis_prefix: str,
    cluster: SentinelCluster,
    spawn: Spawn,
) -> None:
    schedules = insert_interval_schedules(
        database_url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    insert_interval_schedules(
        database_url,
        LONG_SCHEDULES,
        seconds=LONG_PERIOD,
        job_type="command",
        payload={"argv": ["sleep", str(LONG_SECONDS)]},
    )
    daemons = [spawn(_sentinel_env(env, cluster), f"inst-{n}") for n in range(2)]
    start_all(daemons)
    start = db_now(database_url)
    keep_alive_for(BEFORE, daemons)

    old = cluster.master_address()
    kill_clock = time.monotonic()
    cluster.master.kill()
    killed_at = db_now(database_url)  # after the kill: a run started later is on the new master
    new = cluster.wait_for_failover(old)
    failover_s = time.monotonic() - kill_clock
    first = wait_until(
        lambda: _first_completed_after(database_url, killed_at),
        30,
        0.1,
        "a run completed after the master was killed",
    )
    resumed_s = (first - killed_at).total_seconds()
    on_new = cluster.server_client(cluster.server_at(new))
    try:
        # The 4-s commands hold their locks most of the time: their keys are on the new master.
        wait_until(lambda: _lock_keys(on_new, redis_prefix), 15, 0.1, "lock keys on the new master")
        keep_alive_for(AFTER, daemons)
    finally:
        on_new.close()
    end = db_now(database_url)
    endings = []
    for daemon in daemons:
        assert daemon.terminate(timeout=40) == 0, daemon.tail()
        endings.append(Ending(daemon.instance_id, db_now(database_url)))

    master_url = cluster.server_at(new).url
    report = _check(
        database_url, master_url, redis_prefix, (start, end), endings, schedules, daemons
    )
    # Master or not, every occurrence of the run got a row: one healthy window.
    assert report.expected_occurrences >= SCHEDULES * (BEFORE + AFTER - 5)
    rows = report.rows
    after: list[dict[str, Any]] = [r for r in rows if r["started_at"] > killed_at]
    completed_after = sum(1 for r in after if r["status"] == "completed")
    unreachable = sum(
        1
        for r in after
        if r["status"] == "skipped" and "unreachable" in (r["error_message"] or "").lower()
    )
    lost = [r for r in rows if (r["error_details"] or {}).get("lock_lost")]
    print(
        f"\nsentinel failover: {report}\n"
        f"kill -9 of master {old[0]}:{old[1]} -> {new[0]}:{new[1]} promoted in {failover_s:.2f} s; "
        f"first run completed {resumed_s:.2f} s after the kill; {len(rows)} rows, "
        f"{completed_after} completed after the kill, "
        f"{len(duplicated_occurrences(rows))} duplicates, {unreachable} skipped (Redis "
        f"unreachable), {len(lost)} runs stopped by a lost lock"
    )
    for row in rows:
        if row["status"] not in ("completed", "skipped"):
            print(
                f"  {row['status']} {row['instance_id']} {row['scheduled_for']:%T} "
                f"{row['started_at']:%T.%f}-{row['completed_at']:%T.%f}: {row['error_message']} "
                f"{row['error_details']}"
            )
    print(f"  killed at {killed_at:%T.%f}")
    assert completed_after >= SCHEDULES * (AFTER - 5), completed_after
    assert duplicated_occurrences(rows) == []
    masters_named = {
        e.get("new")
        for d in daemons
        for e in d.events()
        if e.get("event") == "redis.master_changed"
    }
    assert masters_named <= {f"{new[0]}:{new[1]}"}, masters_named


@pytest.mark.timeout(int(150 + 2 * AFTER))
def test_a_graceful_failover_moves_the_daemons_before_the_old_master_is_demoted(
    env: dict[str, str],
    database_url: str,
    redis_prefix: str,
    cluster: SentinelCluster,
    spawn: Spawn,
) -> None:
    """SENTINEL FAILOVER (maintenance): the old master stays up and takes writes until the
    sentinels demote it, ~10 s later. The daemons must not write locks and heartbeats there
    meanwhile: each asks the sentinels with its heartbeats and moves within a beat."""
    schedules = insert_interval_schedules(
        database_url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    daemons = [spawn(_sentinel_env(env, cluster), f"inst-{n}") for n in range(2)]
    start_all(daemons)
    start = db_now(database_url)
    keep_alive_for(3, daemons)
    old = cluster.master_address()
    sentinel = cluster.sentinel_client(cluster.sentinels[0])
    try:
        clock = time.monotonic()
        assert sentinel.sentinel_failover(cluster.service)
    finally:
        sentinel.close()
    new = cluster.wait_for_failover(old)
    promoted_s = time.monotonic() - clock
    named = f"{new[0]}:{new[1]}"
    for daemon in daemons:
        daemon.wait_for_event("redis.master_changed", timeout=10, new=named)
    moved_s = time.monotonic() - clock
    old_master = cluster.server_client(cluster.server_at(old))
    try:
        demoted = old_master.info("replication")["role"] == "slave"
    finally:
        old_master.close()
    keep_alive_for(AFTER, daemons)
    end = db_now(database_url)
    endings = []
    for daemon in daemons:
        assert daemon.terminate(timeout=40) == 0, daemon.tail()
        endings.append(Ending(daemon.instance_id, db_now(database_url)))
    report = _check(
        database_url,
        cluster.server_at(new).url,
        redis_prefix,
        (start, end),
        endings,
        schedules,
        daemons,
    )
    print(
        f"\ngraceful failover: {report}\npromoted {promoted_s:.2f} s after SENTINEL FAILOVER; "
        f"both daemons on {named} {moved_s:.2f} s after it (old master demoted by then: "
        f"{demoted})"
    )
    assert duplicated_occurrences(report.rows) == []
    assert report.statuses["completed"] >= SCHEDULES * (AFTER - 5)
