"""Case 10: PostgreSQL failover. Two instances on a multi-host DATABASE_URL
(`...@primary,standby/scheduler?target_session_attrs=read-write`) run 50 schedules firing every
second and eight commands and python jobs lasting 3 s (so results are in flight at the crash);
the primary is killed with SIGKILL (every backend with it), and after ~2.5 s the synchronous
standby is promoted. The instances must find the new primary by themselves, write the results
they queued during the outage, resume firing and watching, and never run an occurrence twice.

Beyond check_invariants: the occurrences due during the outage ran (or were recorded) once the
new primary was there, runs resumed within RESUME_BOUND of the promotion (the first run started
after the promotion, read from the new primary), and the watcher follows the new primary (an
edit made after the failover reaches both instances).

Case 10b: the same, but the old primary is fenced (made read-only, left running) instead of
killed, as some failover tools do: writes refused as read-only must wait, never be dropped, and
the daemons' connections, their LISTEN connection included, must leave the fenced host.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.faults.common import (
    NOOP,
    Spawn,
    db_now,
    engine_env,
    events_named,
    keep_alive_for,
    lateness,
    percentile,
    scaled,
    server_env,
    start_all,
)
from tests.faults.invariants import CaseRecord, Ending, Report, check_invariants
from tests.support.daemon import DaemonProcess
from tests.support.postgres_pair import PostgresPair
from tests.support.redis_server import RedisServer
from tests.support.schedules import (
    Row,
    insert_interval_schedule,
    insert_interval_schedules,
    interval_occurrences,
    query,
)
from tests.support.waiting import wait_until

SCHEDULES, PERIOD = 50, 1
LONG_SECONDS, LONG_PERIOD = 3, 4  # the commands and python jobs in flight at the crash
BEFORE, AFTER = scaled(15), scaled(20)
PROMOTE_AFTER = 2.5  # seconds between the primary's death and the standby's promotion
RESUME_BOUND = 10.0
LOCK_TIMEOUT, HEARTBEAT = 3.0, 0.5
CHECK_INTERVAL = 6 * HEARTBEAT + 2.0
EDGE = 2.0  # seconds either side of the outage whose occurrences may fall either way


@pytest.mark.timeout(int(180 + BEFORE + AFTER))
def test_failover_to_a_promoted_standby_loses_nothing_and_runs_nothing_twice(
    postgres_pair: tuple[PostgresPair, str],
    private_redis: RedisServer,
    redis_prefix: str,
    spawn: Spawn,
) -> None:
    pair, url = postgres_pair
    schedules = insert_interval_schedules(
        url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    # Long jobs with phases 0..3 s of their 4-s period: whenever the primary dies, some finish
    # during the outage, and their results must wait for the new primary.
    base = db_now(url).replace(microsecond=0) - timedelta(seconds=LONG_PERIOD)
    for phase in range(LONG_PERIOD):
        created_at = base + timedelta(seconds=phase)
        insert_interval_schedule(
            url,
            seconds=LONG_PERIOD,
            job_type="command",
            payload={"argv": ["sleep", str(LONG_SECONDS)]},
            created_at=created_at,
        )
        insert_interval_schedule(
            url,
            seconds=LONG_PERIOD,
            job_type="python",
            payload={"callable": "tests.support.handler_funcs:stubborn", "seconds": LONG_SECONDS},
            created_at=created_at,
        )
    daemons = [spawn(_environ(url, private_redis, redis_prefix), f"inst-{n}") for n in range(2)]
    start_all(daemons)
    start = db_now(url)
    keep_alive_for(BEFORE, daemons)

    in_flight = query(url, "SELECT count(*) AS n FROM job_executions WHERE status = 'running'")
    killed_at = db_now(url)
    pair.kill_primary()
    keep_alive_for(PROMOTE_AFTER, daemons)
    pair.promote_standby()
    promoted_at = db_now(url)  # the URL now lands on the promoted standby
    keep_alive_for(AFTER / 2, daemons)

    _watcher_follows(url, daemons)
    keep_alive_for(AFTER / 2, daemons)
    end = db_now(url)

    report = _stop_and_check(
        url,
        private_redis,
        redis_prefix,
        daemons,
        schedules,
        [(start, killed_at), (promoted_at, end)],
    )

    # Runs resumed on the new primary within the bound: the first run started after the
    # promotion that completed, as the new primary recorded it.
    resumed = [
        r["started_at"]
        for r in report.rows
        if r["status"] == "completed" and r["started_at"] > promoted_at
    ]
    assert resumed, "no run completed after the promotion"
    resumed_s = (min(resumed) - promoted_at).total_seconds()

    # Nothing vanished around the failover either (the invariants leave out the outage and
    # EDGE seconds either side): every occurrence due then has its row, run or skipped.
    vanished, outage_outcomes = _around(report.rows, schedules, killed_at, promoted_at)

    deferred = [e for d in daemons for e in events_named(d, "store.write_deferred")]
    results_queued = sum(1 for e in deferred if e.get("query") == "finish_executions")
    flushed = sum(
        int(e.get("written", 0))
        for d in daemons
        for e in events_named(d, "store.deferred_writes_flushed")
    )
    refused = sum(len(events_named(d, "store.deferred_write_refused")) for d in daemons)
    late = lateness(r for r in report.rows if r["trigger"] == "schedule")
    outage_s = (promoted_at - killed_at).total_seconds()
    print(
        f"\nfailover: primary killed {killed_at:%T.%f}, standby promoted {promoted_at:%T.%f} "
        f"({outage_s:.2f} s later), {in_flight[0]['n']} runs in flight at the kill"
    )
    print(f"case 10: {report}")
    print(
        f"case 10: 0 duplicates; first completed run started {resumed_s:.2f} s after the "
        f"promotion; writes queued {len(deferred)} (results {results_queued}), written "
        f"{flushed}, refused {refused}"
    )
    print(f"case 10 outage occurrences: {dict(outage_outcomes)}")
    print(f"case 10 lateness: p50 {percentile(late, 50):.3f} s, p99 {percentile(late, 99):.3f} s")

    assert vanished == [], f"{len(vanished)} occurrences vanished:\n" + "\n".join(vanished[:30])
    assert resumed_s <= RESUME_BOUND, f"runs resumed {resumed_s:.2f} s after the promotion"
    assert results_queued > 0, "no result waited for PostgreSQL: the case proved nothing"
    assert flushed == len(deferred) and refused == 0, (len(deferred), flushed, refused)


@pytest.mark.timeout(int(150 + BEFORE))
def test_a_primary_fenced_read_only_is_left_for_the_promoted_standby(
    postgres_pair: tuple[PostgresPair, str],
    private_redis: RedisServer,
    redis_prefix: str,
    spawn: Spawn,
) -> None:
    pair, url = postgres_pair
    schedules = insert_interval_schedules(url, 20, seconds=PERIOD, job_type="python", payload=NOOP)
    daemons = [spawn(_environ(url, private_redis, redis_prefix), f"inst-{n}") for n in range(2)]
    start_all(daemons)
    start = db_now(url)
    keep_alive_for(BEFORE / 2, daemons)

    old = pair.primary.url("scheduler")
    fenced_at = db_now(old)
    query(old, "ALTER SYSTEM SET default_transaction_read_only = on")
    query(old, "SELECT pg_reload_conf()")
    keep_alive_for(PROMOTE_AFTER, daemons)
    pair.promote_standby()
    promoted_at = db_now(url)  # libpq now skips the read-only old primary
    _watcher_follows(url, daemons)
    for daemon in daemons:
        moved = [
            e
            for e in events_named(daemon, "watcher.listener_lost")
            if "accepts no writes" in str(e.get("error"))
        ]
        assert moved, f"{daemon.instance_id}'s listener never left the fenced primary"
    keep_alive_for(BEFORE / 2, daemons)
    end = db_now(url)

    report = _stop_and_check(
        url,
        private_redis,
        redis_prefix,
        daemons,
        schedules,
        [(start, fenced_at), (promoted_at, end)],
    )
    vanished, outcomes = _around(report.rows, schedules, fenced_at, promoted_at)
    refused = sum(len(events_named(d, "store.deferred_write_refused")) for d in daemons)
    dropped = sum(len(events_named(d, "store.result_refused")) for d in daemons)
    deferred = sum(len(events_named(d, "store.write_deferred")) for d in daemons)
    print(f"\ncase 10b: fenced {fenced_at:%T.%f}, promoted {promoted_at:%T.%f}: {report}")
    print(
        f"case 10b: writes queued {deferred}, refused {refused}, results refused {dropped}; "
        f"around the fencing: {dict(outcomes)}"
    )
    assert vanished == [], f"{len(vanished)} occurrences vanished:\n" + "\n".join(vanished[:30])
    assert refused == 0 and dropped == 0, (refused, dropped)
    # The fence bit: each daemon found its writes refused (and waited) before the promotion.
    for daemon in daemons:
        assert events_named(daemon, "store.database_down"), daemon.instance_id


def _environ(url: str, redis: RedisServer, redis_prefix: str) -> dict[str, str]:
    return engine_env(
        server_env(url, redis.url, redis_prefix),
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
        MAX_WORKERS="16",
    )


def _watcher_follows(url: str, daemons: list[DaemonProcess]) -> None:
    """Each daemon's listener reconnected, and an edit made now reaches both and runs."""
    for daemon in daemons:
        wait_until(
            lambda d=daemon: _listened_again(d),
            timeout=15.0,
            message=f"{daemon.instance_id} LISTENs",
        )
    added_before = [_schedules_added(d) for d in daemons]
    edited = insert_interval_schedule(url, seconds=PERIOD, job_type="python", payload=NOOP)
    for daemon, before in zip(daemons, added_before, strict=True):
        wait_until(
            lambda d=daemon, b=before: _schedules_added(d) > b,
            timeout=15.0,
            message=f"{daemon.instance_id} loads the schedule inserted after the failover",
        )
    wait_until(
        lambda: query(
            url,
            "SELECT 1 FROM job_executions WHERE schedule_id = %s AND status = 'completed'",
            (edited["schedule_id"],),
        ),
        timeout=15.0,
        message="a schedule inserted after the failover runs",
    )


def _stop_and_check(
    url: str,
    redis: RedisServer,
    redis_prefix: str,
    daemons: list[DaemonProcess],
    schedules: list[Row],
    healthy: list[tuple[datetime, datetime]],
) -> Report:
    endings = []
    for daemon in daemons:
        assert daemon.terminate(timeout=40) == 0, daemon.tail()
        endings.append(Ending(daemon.instance_id, db_now(url)))
    return check_invariants(
        CaseRecord(
            database_url=url,
            redis_url=redis.url,
            redis_prefix=redis_prefix,
            lock_timeout=LOCK_TIMEOUT,
            check_interval=CHECK_INTERVAL,
            heartbeat_ttl=3 * HEARTBEAT,
            endings=endings,
            schedules=schedules,
            period=PERIOD,
            healthy=healthy,
            edge=EDGE,
            daemons=daemons,
        )
    )


def _around(
    rows: list[Row], schedules: list[Row], down: datetime, up: datetime
) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Occurrences due from EDGE before `down` to EDGE after `up` without a row; and how the
    others ended (status, the kind of skip)."""
    keys = {(r["schedule_id"], r["scheduled_for"]): r for r in rows}
    vanished: list[str] = []
    outcomes: Counter[tuple[str, str]] = Counter()
    edge = timedelta(seconds=EDGE)
    for schedule in schedules:
        for moment in interval_occurrences(schedule["created_at"], PERIOD, down - edge, up + edge):
            row = keys.get((schedule["schedule_id"], moment))
            if row is None:
                vanished.append(f"{schedule['schedule_id']} {moment:%T}")
            else:
                outcomes[(row["status"], (row["error_details"] or {}).get("reason", ""))] += 1
    return vanished, outcomes


def _listened_again(daemon: DaemonProcess) -> bool:
    """The daemon lost its LISTEN connection and opened one again afterwards."""
    names = [e["event"] for e in daemon.events() if e.get("event", "").startswith("watcher.listen")]
    lost = names.index("watcher.listener_lost") if "watcher.listener_lost" in names else None
    return lost is not None and "watcher.listening" in names[lost:]


def _schedules_added(daemon: DaemonProcess) -> int:
    return sum(
        int((e.get("changes") or {}).get("added", 0)) for e in events_named(daemon, "watcher.pass")
    )
