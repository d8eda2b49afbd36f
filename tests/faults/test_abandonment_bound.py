"""Issue 21, acceptance 1 at long settings: LOCK_TIMEOUT=60, SCHEDULE_CHECK_INTERVAL=60 and the
default HEARTBEAT_INTERVAL (5). Three instances share twelve long runs (four each); one is killed
with SIGKILL; each of its `running` rows must be `abandoned` within LOCK_TIMEOUT +
SCHEDULE_CHECK_INTERVAL = 120 s of the kill (the heartbeat's TTL is 15 s, so the lock's 60 s is
what it waits for), and the survivors' runs go on, none run twice.

The short settings (LOCK_TIMEOUT=5, interval 2; 7 s + 2 s) are in
tests/faults/test_liveness_bound.py.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.common import Spawn, engine_env, start_all
from tests.support.liveness import insert_long_runs, kill_and_time_abandonment, ranked, wait_running
from tests.support.schedules import duplicated_occurrences, executions, query

LOCK_TIMEOUT, CHECK_INTERVAL = 60.0, 60.0
BOUND = LOCK_TIMEOUT + CHECK_INTERVAL
SCHEDULES, RUN_SECONDS = 12, 600


@pytest.mark.timeout(int(BOUND + 120))
def test_killed_instance_rows_abandoned_within_lock_timeout_plus_interval_at_60_s(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    environ = engine_env(
        env,
        LOCK_TIMEOUT=f"{LOCK_TIMEOUT:g}",
        SCHEDULE_CHECK_INTERVAL=f"{CHECK_INTERVAL:g}",
        HEARTBEAT_INTERVAL="5",
        MAX_WORKERS="2",  # at most 4 claimed runs per instance: 12 are 4 on each
    )
    daemons = [spawn(environ, f"inst-{n}") for n in range(3)]
    start_all(daemons)
    insert_long_runs(database_url, SCHEDULES, run_seconds=RUN_SECONDS)
    by_instance = wait_running(database_url, SCHEDULES, timeout=60)
    victim_id, *survivor_ids = ranked(by_instance, daemons)
    victim = next(d for d in daemons if d.instance_id == victim_id)
    print(f"\nrunning rows per instance: { {i: len(r) for i, r in by_instance.items()} }")

    delays, latest = kill_and_time_abandonment(
        database_url, victim, by_instance[victim_id], give_up_after=BOUND + 5
    )
    print(
        f"abandoned {len(delays)} of {len(latest)} rows of {victim_id} after the kill: "
        f"min {min(delays.values(), default=0):.2f} s, max {max(delays.values(), default=0):.2f} s"
        f" (bound {BOUND:g} s)"
    )
    assert [r["status"] for r in latest.values()] == ["abandoned"] * len(latest), latest
    assert max(delays.values()) <= BOUND, delays

    survivors = [d for d in daemons if d.instance_id in survivor_ids]
    theirs = [r["execution_id"] for i in survivor_ids for r in by_instance.get(i, [])]
    rows = query(
        database_url,
        "SELECT status FROM job_executions WHERE execution_id = ANY(%s)",
        (theirs,),
    )
    assert Counter(r["status"] for r in rows) == {"running": len(theirs)}, rows
    for daemon in survivors:
        assert daemon.terminate(timeout=30) == 0, daemon.tail()
    assert duplicated_occurrences(executions(database_url)) == []
