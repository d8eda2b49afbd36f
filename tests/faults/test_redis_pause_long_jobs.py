"""Case 3: long jobs (a 30 s `sleep`) with LOCK_TIMEOUT=5 on two instances while the private
Redis is frozen (SIGSTOP/SIGCONT): twice for 3 s, which the lock must ride out or else stop its
job and record the loss, and once for 7 s, beyond the TTL, which must lose every lock held at
the time and stop those jobs. Never two runners of one schedule at once: the time ranges of a
schedule's runs (rows, and the commands' own start/finish in the logs) do not overlap, except
that a run whose lock was lost may outlast the loss by the time it takes to notice and stop.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.faults.common import Spawn, db_now, engine_env, keep_alive_for, scaled, start_all
from tests.faults.invariants import CaseRecord, Ending, check_invariants
from tests.support.redis_server import RedisServer
from tests.support.schedules import executions, insert_interval_schedules
from tests.support.waiting import wait_until

SCHEDULES, PERIOD, JOB_SECONDS = 6, 10, 30
DURATION = max(scaled(60), 50.0)  # the freezes and a run after them need 50 s
LOCK_TIMEOUT, HEARTBEAT = 5.0, 0.5
CHECK_INTERVAL = 6 * HEARTBEAT + 2.0
# (seconds after every schedule's first run started, frozen for): all inside those 30 s runs.
PAUSES = ((4, 3.0), (11, 3.0), (18, 7.0))
# A run whose lock is lost is noticed within a renewal period (TTL/3), then SIGTERM: sleep dies
# at once. The next holder cannot start before the key expired; this is the overlap allowed.
LOST_OVERLAP = LOCK_TIMEOUT / 3 + 1.5


def _ranges_overlap(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    return (min(a[1], b[1]) - max(a[0], b[0])).total_seconds()


def _command_spans(daemons: list[Any]) -> dict[str, list[tuple[datetime, datetime, str]]]:
    """Per schedule: (start, end, execution_id) of every command, from the daemons' own logs."""
    started: dict[str, dict[str, Any]] = {}
    spans: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for daemon in daemons:
        for event in daemon.events():
            name = event.get("event")
            if name == "handler.command.started":
                started[event["execution_id"]] = event
            elif name == "handler.command.finished" and event["execution_id"] in started:
                begin = started.pop(event["execution_id"])
                spans[event["schedule_id"]].append(
                    (
                        datetime.fromisoformat(begin["timestamp"]),
                        datetime.fromisoformat(event["timestamp"]),
                        event["execution_id"],
                    )
                )
    assert not started, f"commands that never finished: {sorted(started)}"
    return spans


@pytest.mark.timeout(int(150 + 2 * DURATION))
def test_frozen_redis_never_lets_two_runners_overlap(
    env: dict[str, str],
    database_url: str,
    private_redis: RedisServer,
    redis_prefix: str,
    spawn: Spawn,
) -> None:
    schedules = insert_interval_schedules(
        database_url,
        SCHEDULES,
        seconds=PERIOD,
        job_type="command",
        payload={"argv": ["sleep", str(JOB_SECONDS)]},
    )
    environ = engine_env(
        {**env, "REDIS_URL": private_redis.url},
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        HEARTBEAT_INTERVAL=f"{HEARTBEAT:g}",
        MAX_WORKERS="10",
    )
    daemons = [spawn(environ, f"inst-{n}") for n in range(2)]
    start_all(daemons)
    start = db_now(database_url)

    def first_runs() -> list[dict[str, Any]]:
        rows = [r for r in executions(database_url) if r["status"] == "running"]
        return rows if len(rows) == SCHEDULES else []

    first = wait_until(first_runs, PERIOD + 15, 0.2, "every schedule's first run")
    began = time.monotonic()
    for at, frozen in PAUSES:
        keep_alive_for(max(0.0, began + at - time.monotonic()), daemons)
        private_redis.pause()
        try:
            keep_alive_for(frozen, daemons)
        finally:
            private_redis.resume()
    keep_alive_for(max(0.0, began + DURATION - 10 - time.monotonic()), daemons)
    end = db_now(database_url)
    endings = []
    for daemon in daemons:
        assert daemon.terminate(timeout=40) == 0, daemon.tail()
        endings.append(Ending(daemon.instance_id, db_now(database_url)))

    report = check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=private_redis.url,
            redis_prefix=redis_prefix,
            lock_timeout=LOCK_TIMEOUT,
            check_interval=CHECK_INTERVAL,
            heartbeat_ttl=3 * HEARTBEAT,
            endings=endings,
            schedules=schedules,
            period=PERIOD,
            healthy=[(start, end)],  # frozen or not, every occurrence gets a row
            edge=PERIOD,
            daemons=daemons,
        )
    )
    print(f"\ncase 3: {report}")

    runs = [r for r in report.rows if r["status"] != "skipped"]
    lost = {r["execution_id"] for r in runs if (r["error_details"] or {}).get("lock_lost")}
    problems, worst = [], 0.0
    by_schedule: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_schedule[run["schedule_id"]].append(run)
    for sid, rows in by_schedule.items():
        for n, a in enumerate(rows):
            for b in rows[n + 1 :]:
                overlap = _ranges_overlap(
                    (a["started_at"], a["completed_at"]), (b["started_at"], b["completed_at"])
                )
                if overlap <= 0:
                    continue
                worst = max(worst, overlap)
                either_lost = a["execution_id"] in lost or b["execution_id"] in lost
                if not either_lost or overlap > LOST_OVERLAP:
                    problems.append(f"{sid}: rows overlap {overlap:.2f} s: {a} / {b}")
    lost_ids = {str(x) for x in lost}
    for sid, spans in _command_spans(daemons).items():
        for n, (a0, a1, a_id) in enumerate(spans):
            for b0, b1, b_id in spans[n + 1 :]:
                overlap = _ranges_overlap((a0, a1), (b0, b1))
                if overlap <= 0:
                    continue
                worst = max(worst, overlap)
                if overlap > LOST_OVERLAP or not {a_id, b_id} & lost_ids:
                    problems.append(f"{sid}: commands {a_id}, {b_id} ran together {overlap:.2f} s")
    statuses = sorted(
        (r["status"], bool((r["error_details"] or {}).get("lock_lost"))) for r in runs
    )
    print(f"case 3 runs (status, lock lost): {statuses}; worst overlap {worst:.2f} s")
    assert problems == [], "\n".join(problems)
    # Both branches happened: the first runs rode out two 3 s freezes (no loss recorded before
    # the third), and the 7 s freeze, beyond LOCK_TIMEOUT, stopped every one of them.
    by_id = {r["execution_id"]: r for r in runs}
    for row in (by_id[r["execution_id"]] for r in first):
        assert row["status"] in ("failed", "abandoned"), row
        if row["status"] == "failed":
            assert row["execution_id"] in lost and "was lost" in row["error_message"], row
        assert row["completed_at"] - row["started_at"] < timedelta(seconds=JOB_SECONDS - 3), row
        assert row["completed_at"] - row["started_at"] > timedelta(seconds=PAUSES[-1][0]), row
    stopped = max(by_id[r["execution_id"]]["completed_at"] for r in first)
    later = [r for r in runs if r["started_at"] > stopped]
    assert later, "no run started after the locks were lost"
