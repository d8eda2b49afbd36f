"""A queued occurrence outlives a kill -9 of the instance that queued it: another runs it once."""

from __future__ import annotations

import pytest

from tests.integration.test_engine import executions, insert_schedule
from tests.support.daemon import Spawn
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def test_a_queued_row_survives_kill_9_and_runs_once(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    environ = {
        **env,
        "COMMAND_ALLOWLIST": "sleep",
        "HEARTBEAT_INTERVAL": "0.5",
        "LOCK_TIMEOUT": "3",
        "SHUTDOWN_TIMEOUT": "1",
    }
    a = spawn(environ, "queuer").start()
    sid = insert_schedule(
        database_url,
        "interval",
        {"seconds": 2, "overlap_policy": "buffer_one", "end_date": "2100-01-01T00:00:00Z"},
        job_type="command",
        payload={"argv": ["sleep", "4.1"]},
    )

    def queued() -> dict[str, object] | None:
        rows = [r for r in executions(database_url, sid) if r["status"] == "queued"]
        return rows[0] if rows else None

    waiting = wait_until(queued, 15, 0.05, "a queued occurrence")
    a.kill()  # the queuer and the run it waited for die at once
    b = spawn(environ, "heir").start()
    with_it = wait_until(
        lambda: next(
            (
                r
                for r in executions(database_url, sid)
                if r["execution_id"] == waiting["execution_id"] and r["status"] != "queued"
            ),
            None,
        ),
        20,
        0.1,
        "the queued occurrence to start on the other instance",
    )
    assert with_it["instance_id"] == "heir" and with_it["status"] in ("running", "completed")
    wait_until(
        lambda: b.events() and [e for e in b.events() if e.get("event") == "run.dequeued"],
        5,
        0.05,
        "the heir's dequeue",
    )
    b.terminate()
    rows = [
        r for r in executions(database_url, sid) if r["scheduled_for"] == waiting["scheduled_for"]
    ]
    assert len(rows) == 1  # that occurrence has one row and ran once
    dequeued = [
        e
        for e in b.events()
        if e.get("event") == "run.dequeued"
        and e.get("execution_id") == str(waiting["execution_id"])
    ]
    assert len(dequeued) == 1
