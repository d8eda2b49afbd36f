"""Edits committed during start-up, after the load's snapshot and before LISTEN holds, are
applied right after start-up, not at the next interval pass (commit e98fffa).

Such an edit sends its notification before anybody listens, and the load did not see it. Only
the pass the listener asks for when LISTEN holds (from the load's watermark) applies it; with
SCHEDULE_CHECK_INTERVAL=60 nothing else would for a minute.

Where the edits land is not left to timing (an edit made as soon as /health answers lands before
the load's snapshot, and the load itself picks it up). The test holds the daemon inside the
window instead: once the load has begun it takes ACCESS EXCLUSIVE on job_executions, which the
daemon next reads in `retry_recovery.recover()`, after `initial_load()` and before
`watcher.start()`. While the daemon waits there on that lock (seen in pg_stat_activity), the
edits are committed, and then the lock is let go.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.integration.test_health import get_json
from tests.support.daemon import DaemonProcess, Spawn, daemon_spawner
from tests.support.redis_server import free_port
from tests.support.schedules import (
    db_now,
    insert_interval_schedule,
    insert_interval_schedules,
    interval_occurrences,
    query,
    schedule_row,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

ROWS = 10_000  # the load takes a few hundred ms: the gate has ample time to close behind it
APPLIED_WITHIN = 1.0  # seconds after scheduler.started
COMMAND = {"argv": ["true"]}
# The daemon's pool connections (application_name enhanced-scheduler), by the SQL they ran last:
# the start-up load (or the statements just before it) has begun, so the recovery of leftover
# runs, the last daemon statement on job_executions before the load, has finished.
LOAD_BEGUN = """
SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'enhanced-scheduler'
  AND (query LIKE '%%time_config::text AS time_config_json%%'
       OR query LIKE '%%pg_snapshot_xmin(pg_current_snapshot())%%')
"""
# The daemon waiting on the test's lock in retry recovery (orphaned_retries).
GATED = """
SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'enhanced-scheduler'
  AND wait_event_type = 'Lock' AND query LIKE '%%FROM job_executions f%%'
"""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    yield from daemon_spawner(tmp_path)


def seen(daemon: DaemonProcess, statement: str, waiting_for: str) -> bool:
    """Whether `statement` (on pg_stat_activity) finds the daemon there; fails if it exited."""
    daemon._fail_if_exited(waiting_for)
    return bool(query(daemon.env["DATABASE_URL"], statement))


def event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def only_event(daemon: DaemonProcess, name: str, **fields: Any) -> dict[str, Any] | None:
    found = [
        e
        for e in daemon.events()
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_edits_committed_between_the_load_and_listen_are_applied_at_once(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    now = db_now(database_url).replace(microsecond=0)
    # Interval schedules anchored 100 min ago: hourly ones fire next in 20 min, nothing fires
    # during the test, and a period change moves the next fire time to a known moment.
    anchor = now - timedelta(minutes=100)
    common: dict[str, Any] = {"job_type": "command", "payload": COMMAND, "created_at": anchor}
    insert_interval_schedules(database_url, ROWS - 1, seconds=86_400, **common)
    edited = insert_interval_schedule(database_url, seconds=3600, **common)["schedule_id"]

    port = free_port()
    daemon = spawn({**env, "HTTP_PORT": str(port), "SCHEDULE_CHECK_INTERVAL": "60"}, "startup")
    gate = psycopg.connect(database_url)  # one transaction, held until the edits are committed
    try:
        daemon.start(wait_ready=False)
        wait_until(
            lambda: seen(daemon, LOAD_BEGUN, "the start-up load"),
            30,
            0.005,
            f"the start-up load to begin:\n{daemon.tail()}",
        )
        gate.execute("LOCK TABLE job_executions IN ACCESS EXCLUSIVE MODE")
        wait_until(
            lambda: seen(daemon, GATED, "the gate"),
            30,
            0.01,
            f"the daemon to wait on the gate in retry recovery:\n{daemon.tail()}",
        )
        # Held between the load and LISTEN: up, not ready, not listening, load done.
        assert get_json(port, "/health") == (200, {"status": "ok"})
        assert get_json(port, "/ready")[0] == 503
        assert only_event(daemon, "watcher.listening") is None
        assert only_event(daemon, "scheduler.started") is None
        initial = only_event(daemon, "watcher.pass", kind="initial")
        assert initial is not None and initial["scanned"] == ROWS, initial
        # The load's next_run writes (a background thread) are done: no chunk of it can land
        # after the edits and overwrite the edited row's new next_run with the old one.
        wait_until(
            lambda: (
                not query(database_url, "SELECT 1 FROM schedules WHERE next_run IS NULL LIMIT 1")
            ),
            20,
            message="the load's next_run writes",
        )

        added = insert_interval_schedule(database_url, seconds=3600, **common)["schedule_id"]
        query(
            database_url,
            "UPDATE schedules SET time_config = %s WHERE schedule_id = %s",
            (Jsonb({"seconds": 5400}), edited),
        )
        committed = datetime.now(UTC)
    finally:
        gate.close()  # rolls back: the lock goes, the daemon carries on

    started = daemon.wait_for_event("scheduler.started", timeout=20)
    assert committed < event_time(started), "the edits must be committed during start-up"

    # The next fire times the daemon must write for the two edited rows (periods of 1 h and
    # 1.5 h from the anchor: the next ones are 20 and 80 minutes from `now`).
    expected = {
        added: interval_occurrences(anchor, 3600, now, now + timedelta(hours=1))[0],
        edited: interval_occurrences(anchor, 5400, now, now + timedelta(hours=1.5))[0],
    }
    assert expected[edited] != anchor + timedelta(hours=2)  # the old config's next fire time

    def next_runs() -> dict[UUID, datetime | None]:
        return {sid: schedule_row(database_url, sid)["next_run"] for sid in expected}

    try:
        wait_until(lambda: next_runs() == expected, 5, 0.02)
    except AssertionError:
        raise AssertionError(
            f"edits not applied within 5 s of start-up: next_run {next_runs()}, expected "
            f"{expected}\n{daemon.tail()}"
        ) from None
    applied = {
        added: only_event(daemon, "schedule.loaded", schedule_id=str(added)),
        edited: only_event(daemon, "schedule.updated", schedule_id=str(edited)),
    }
    for sid, event in applied.items():
        assert event is not None, (sid, daemon.tail())
        assert event["next_run"] == expected[sid].isoformat(), event
        lag = (event_time(event) - event_time(started)).total_seconds()
        assert lag < APPLIED_WITHIN, f"{sid} applied {lag:.3f} s after scheduler.started"
    assert daemon.terminate() == 0
