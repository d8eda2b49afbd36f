"""Abandonment within the bound (issue 21, acceptance 1 and 2), with real daemons.

LOCK_TIMEOUT=5, SCHEDULE_CHECK_INTERVAL=2 and the default HEARTBEAT_INTERVAL (5): a `running` row
of a kill -9'd instance must become `abandoned` within LOCK_TIMEOUT + SCHEDULE_CHECK_INTERVAL
= 7 s of the kill (+ 2 s margin), while a live instance frozen for 3 s (SIGSTOP), or a Redis
frozen for 3 s (a private redis-server of this test's, SIGSTOPped), abandons nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, Spawn, daemon_spawner, start_all
from tests.support.liveness import (
    insert_long_runs,
    kill_and_time_abandonment,
    ranked,
    rows_by_id,
    wait_running,
)
from tests.support.redis_server import RedisServer
from tests.support.schedules import duplicated_occurrences, executions

LOCK_TIMEOUT, CHECK_INTERVAL = 5.0, 2.0
BOUND, MARGIN = LOCK_TIMEOUT + CHECK_INTERVAL, 2.0
FREEZE = 3.0
# After a freeze, long enough for any wrong abandonment to show: a heartbeat (TTL <= 5 s) or a
# lock (5 s) lost in the freeze is gone by then, and the reapers have swept several times.
WATCH_AFTER_FREEZE = LOCK_TIMEOUT + 2 * CHECK_INTERVAL + 1
SCHEDULES, RUN_SECONDS = 12, 120


def bound_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    return {
        **env,
        "LOCK_TIMEOUT": f"{LOCK_TIMEOUT:g}",
        "SCHEDULE_CHECK_INTERVAL": f"{CHECK_INTERVAL:g}",
        "PYTHON_HANDLER_ALLOWLIST": "tests.support",
        # An instance claims at most 2 x MAX_WORKERS occurrences (the pipeline's slots) and
        # leaves the rest to the others: 12 long runs on 3 instances are 4 on each.
        "MAX_WORKERS": "2",
        "SHUTDOWN_TIMEOUT": "2",
        "STARTUP_TIMEOUT": "20",
        **overrides,
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    yield from daemon_spawner(tmp_path)


def keep_alive_for(seconds: float, daemons: list[DaemonProcess]) -> None:
    """Let a stretch of time pass (the case is about it), failing at once if a daemon exits."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for daemon in daemons:
            assert daemon.process is not None and daemon.process.poll() is None, daemon.tail()
        time.sleep(min(0.25, left))


def events(daemons: list[DaemonProcess], name: str) -> list[dict[str, object]]:
    return [e for d in daemons for e in d.events() if e.get("event") == name]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("heartbeat", ["5", "0.5"])
def test_killed_instance_rows_abandoned_within_the_bound_and_a_frozen_one_keeps_its_own(
    env: dict[str, str], database_url: str, spawn: Spawn, heartbeat: str
) -> None:
    """HEARTBEAT_INTERVAL=5: the heartbeat (TTL 5 s) outlives the 3-s freeze. 0.5: it does not
    (TTL 1.5 s); the frozen instance's locks (renewed every 1.67 s, 3.33 s left) keep its rows."""
    daemons = [spawn(bound_env(env, HEARTBEAT_INTERVAL=heartbeat), f"inst-{n}") for n in range(3)]
    start_all(daemons)
    insert_long_runs(database_url, SCHEDULES, run_seconds=RUN_SECONDS)
    by_instance = wait_running(database_url, SCHEDULES, timeout=30)
    victim_id, frozen_id, other_id = ranked(by_instance, daemons)
    by_id = {d.instance_id: d for d in daemons}
    victim, frozen, other = by_id[victim_id], by_id[frozen_id], by_id[other_id]
    print(f"\nrunning rows per instance: { {i: len(r) for i, r in by_instance.items()} }")
    assert by_instance.get(victim_id) and by_instance.get(frozen_id), by_instance

    # 1. kill -9: every running row of the victim abandoned within 7 s + 2 s.
    delays, latest = kill_and_time_abandonment(
        database_url, victim, by_instance[victim_id], give_up_after=BOUND + MARGIN + 2
    )
    print(
        f"abandoned {len(delays)} rows of {victim_id} after the kill: "
        f"min {min(delays.values(), default=0):.2f} s, max {max(delays.values(), default=0):.2f} s"
        f" (bound {BOUND:g} s + {MARGIN:g} s)"
    )
    assert [r["status"] for r in latest.values()] == ["abandoned"] * len(latest), latest
    assert all("heartbeat" in str(r["error_message"]) for r in latest.values())
    assert max(delays.values()) <= BOUND + MARGIN, delays

    # 2. SIGSTOP another instance (with running rows) for 3 s: none of its rows abandoned.
    frozen_rows = [r["execution_id"] for r in by_instance[frozen_id]]
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        keep_alive_for(FREEZE, [other])
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    keep_alive_for(WATCH_AFTER_FREEZE, [frozen, other])
    after = rows_by_id(database_url, frozen_rows)
    statuses = dict(Counter(r["status"] for r in after.values()))
    lost = [e for e in events([frozen], "lock.lost")]
    print(
        f"{frozen_id} frozen {FREEZE:g} s (HEARTBEAT_INTERVAL={heartbeat}): its rows {statuses}, "
        f"locks lost {len(lost)}"
    )
    assert [r for r in after.values() if r["status"] == "abandoned"] == []
    assert [e for e in events([other], "reaper.abandoned") if e["instance"] == frozen_id] == []

    for daemon in (frozen, other):
        assert daemon.terminate(timeout=30) == 0, daemon.tail()
    assert duplicated_occurrences(executions(database_url)) == []


@pytest.mark.timeout(150)
@pytest.mark.parametrize("heartbeat", ["5", "0.5"])
def test_a_frozen_redis_abandons_nothing(
    env: dict[str, str], database_url: str, spawn: Spawn, heartbeat: str
) -> None:
    """HEARTBEAT_INTERVAL=5: heartbeats (TTL 5 s) outlive the freeze. HEARTBEAT_INTERVAL=0.5:
    every heartbeat (TTL 1.5 s) lapses in it; the locks (5 s, renewed every 1.67 s) and the
    reapers' check of their own heartbeat (recreated, so held back for a TTL) keep the runs."""
    with RedisServer() as server:
        environ = bound_env(env, REDIS_URL=server.url, HEARTBEAT_INTERVAL=heartbeat)
        daemons = [spawn(environ, f"inst-{n}") for n in range(3)]
        start_all(daemons)
        insert_long_runs(database_url, SCHEDULES, run_seconds=RUN_SECONDS)
        by_instance = wait_running(database_url, SCHEDULES, timeout=30)
        print(f"\nrunning rows per instance: { {i: len(r) for i, r in by_instance.items()} }")
        ids = [r["execution_id"] for rows in by_instance.values() for r in rows]

        server.pause()
        try:
            keep_alive_for(FREEZE, daemons)
        finally:
            server.resume()
        keep_alive_for(WATCH_AFTER_FREEZE, daemons)

        after = rows_by_id(database_url, ids)
        statuses = dict(Counter(r["status"] for r in after.values()))
        lost = events(daemons, "lock.lost")
        counts = {
            name: len(events(daemons, name))
            for name in ("heartbeat.failed", "heartbeat.late", "heartbeat.recreated")
        }
        held = events(daemons, "reaper.held_back")
        print(
            f"Redis frozen {FREEZE:g} s (HEARTBEAT_INTERVAL={heartbeat}): rows {statuses}, "
            f"locks lost {len(lost)}, {counts}, reapers held back {len(held)}"
        )
        assert [r for r in after.values() if r["status"] == "abandoned"] == []
        assert events(daemons, "reaper.abandoned") == []
        for daemon in daemons:
            assert daemon.terminate(timeout=30) == 0, daemon.tail()
    assert duplicated_occurrences(executions(database_url)) == []
