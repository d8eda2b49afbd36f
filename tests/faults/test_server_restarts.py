"""Case 2: Redis restarted twice (empty each time: no persistence) and PostgreSQL restarted
once during a run of 100 schedules firing every second on two instances; both servers are this
test's own. Between the outages both instances are healthy and every occurrence must run once;
during them no occurrence may vanish either: Redis down means `skipped` rows saying so, and
PostgreSQL down means the occurrence waits and runs (or is recorded) when it returns.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.faults.common import (
    NOOP,
    Spawn,
    db_now,
    engine_env,
    keep_alive_for,
    lateness,
    percentile,
    scaled,
    server_env,
    start_all,
)
from tests.faults.invariants import CaseRecord, Ending, check_invariants
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.schedules import insert_interval_schedules, interval_occurrences

SCHEDULES, PERIOD = 100, 1
DURATION = scaled(60)
LOCK_TIMEOUT, HEARTBEAT = 3.0, 0.5
CHECK_INTERVAL = 6 * HEARTBEAT + 2.0
REDIS_DOWN, POSTGRES_DOWN = 3.0, 3.0
EDGE = 2.0  # seconds either side of an outage whose occurrences may fall either way


@pytest.mark.timeout(int(180 + 2 * DURATION))
def test_redis_and_postgres_restarts_lose_nothing_and_run_nothing_twice(
    private_postgres: tuple[PostgresServer, str],
    private_redis: RedisServer,
    redis_prefix: str,
    spawn: Spawn,
) -> None:
    pg, url = private_postgres
    schedules = insert_interval_schedules(
        url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    environ = engine_env(
        server_env(url, private_redis.url, redis_prefix),
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
        MAX_WORKERS="10",
    )
    daemons = [spawn(environ, f"inst-{n}") for n in range(2)]
    start_all(daemons)
    began = time.monotonic()
    start = db_now(url)
    outages: dict[str, tuple[datetime, datetime]] = {}

    def until(fraction: float) -> None:
        keep_alive_for(max(0.0, began + fraction * DURATION - time.monotonic()), daemons)

    def restart_redis(name: str) -> None:
        down = db_now(url)
        private_redis.stop()
        keep_alive_for(REDIS_DOWN, daemons)
        private_redis.start()
        outages[name] = (down, db_now(url))

    until(1 / 6)
    restart_redis("redis-1")
    until(5 / 12)
    down = db_now(url)
    pg.stop()
    keep_alive_for(POSTGRES_DOWN, daemons)
    pg.start()
    outages["postgres"] = (down, db_now(url))
    until(2 / 3)
    restart_redis("redis-2")
    until(1)
    end = db_now(url)

    endings = []
    for daemon in daemons:
        assert daemon.terminate(timeout=40) == 0, daemon.tail()
        endings.append(Ending(daemon.instance_id, db_now(url)))

    bounds = [start, *(t for pair in sorted(outages.values()) for t in pair), end]
    healthy = list(zip(bounds[::2], bounds[1::2], strict=True))
    report = check_invariants(
        CaseRecord(
            database_url=url,
            redis_url=private_redis.url,
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
    late = lateness(r for r in report.rows if r["trigger"] == "schedule")
    print(f"\noutages: { {k: f'{a:%T}-{b:%T}' for k, (a, b) in outages.items()} }")
    print(f"case 2: {report}")
    print(f"case 2 lateness: p50 {percentile(late, 50):.3f} s, p99 {percentile(late, 99):.3f} s")

    # Beyond the invariant: nothing vanished during the outages either.
    keys = {(r["schedule_id"], r["scheduled_for"]) for r in report.rows}
    rows_at = {(r["schedule_id"], r["scheduled_for"]): r for r in report.rows}
    edge = timedelta(seconds=EDGE)
    vanished, outcome = [], Counter()
    for name, (down, up) in outages.items():
        for schedule in schedules:
            for moment in interval_occurrences(schedule["created_at"], PERIOD, down + edge, up):
                key = (schedule["schedule_id"], moment)
                if key not in keys:
                    vanished.append(f"{name}: {schedule['schedule_id']} {moment:%T}")
                    continue
                row = rows_at[key]
                outcome[(name, row["status"], (row["error_message"] or "")[:40])] += 1
    print(f"occurrences due during the outages: {dict(outcome)}")
    assert vanished == [], f"{len(vanished)} occurrences vanished:\n" + "\n".join(vanished[:30])
    for (name, status, message), _n in outcome.items():
        if name.startswith("redis") and status == "skipped":
            assert message.startswith("Redis unreachable"), (name, status, message)
