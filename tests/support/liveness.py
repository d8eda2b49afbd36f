"""Helpers of the abandonment-bound tests (issue 21): long runs spread over daemons, and how long
after an instance's death each of its `running` rows became `abandoned`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from tests.support.daemon import DaemonProcess
from tests.support.schedules import db_now, insert_interval_schedules, query
from tests.support.waiting import wait_until

Row = dict[str, Any]


def slow_payload(seconds: float) -> dict[str, Any]:
    """A python job that waits `seconds` (returning early when its run is cancelled)."""
    return {"callable": "tests.support.handler_funcs:slow", "seconds": seconds}


def insert_long_runs(url: str, count: int, *, run_seconds: float, due_in: float = 3.0) -> list[Row]:
    """`count` schedules whose one occurrence in the test falls `due_in` seconds from now (the
    next one is an hour away) and whose run lasts `run_seconds`."""
    period = 3600
    return insert_interval_schedules(
        url,
        count,
        seconds=period,
        job_type="python",
        payload=slow_payload(run_seconds),
        created_at=db_now(url) - timedelta(seconds=period - due_in),
    )


def running_rows(url: str) -> list[Row]:
    return query(url, "SELECT * FROM job_executions WHERE status = 'running' ORDER BY started_at")


def wait_running(url: str, count: int, timeout: float) -> dict[str, list[Row]]:
    """Wait until `count` rows are `running`; them, by instance."""
    rows = wait_until(
        lambda: r if len(r := running_rows(url)) >= count else None,
        timeout,
        0.1,
        f"{count} running rows",
    )
    by_instance: dict[str, list[Row]] = {}
    for row in rows:
        by_instance.setdefault(row["instance_id"], []).append(row)
    return by_instance


def ranked(by_instance: dict[str, list[Row]], daemons: Sequence[DaemonProcess]) -> list[str]:
    """Instance ids, the one with the most running rows first."""
    ids = [d.instance_id for d in daemons]
    return sorted(ids, key=lambda i: len(by_instance.get(i, [])), reverse=True)


def rows_by_id(url: str, ids: Sequence[UUID]) -> dict[UUID, Row]:
    rows = query(url, "SELECT * FROM job_executions WHERE execution_id = ANY(%s)", (list(ids),))
    return {row["execution_id"]: row for row in rows}


def kill_and_time_abandonment(
    url: str, victim: DaemonProcess, rows: Sequence[Row], *, give_up_after: float
) -> tuple[dict[UUID, float], dict[UUID, Row]]:
    """kill -9 `victim`, then poll its `rows` until none is `running` or `give_up_after` seconds
    passed. Returns, per row that left `running`, the seconds from the kill to its completed_at
    (both read on the database's clock), and every row as last read."""
    ids = [row["execution_id"] for row in rows]
    killed_at: datetime = db_now(url)
    victim.kill()
    deadline = time.monotonic() + give_up_after
    latest = rows_by_id(url, ids)
    while any(r["status"] == "running" for r in latest.values()) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the rows: the test measures when they change
        latest = rows_by_id(url, ids)
    delays = {
        eid: (row["completed_at"] - killed_at).total_seconds()
        for eid, row in latest.items()
        if row["status"] != "running" and row["completed_at"] is not None
    }
    return delays, latest
