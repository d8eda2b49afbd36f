"""Overlap policies with real daemons (one and two instances), PostgreSQL and Redis.

Each schedule fires every second and its command sleeps longer than that, so every occurrence
after the first finds an earlier run going. The rows tell the story: no two runs of a schedule
overlap except under allow_all; queued rows start in order, within a second of the earlier run's
end; a replaced run ends `cancelled` and its process is gone.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_engine import executions, insert_schedule
from tests.support.daemon import DaemonProcess, start_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
RAN = ("completed", "failed", "cancelled", "timed_out", "abandoned", "running")


def _daemons(env: dict[str, str], tmp_path: Path, count: int) -> list[DaemonProcess]:
    extra = {
        "COMMAND_ALLOWLIST": "sleep",
        "HEARTBEAT_INTERVAL": "1",
        "LOCK_TIMEOUT": "10",
        "SHUTDOWN_TIMEOUT": "1",  # a run still going at the end is abandoned, not awaited
    }
    return [
        DaemonProcess({**env, **extra}, tmp_path / f"d{i}.log", instance_id=f"overlap-{i}")
        for i in range(count)
    ]


def _runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in RAN]


def _overlaps(runs: list[dict[str, Any]], now: datetime) -> int:
    spans = sorted((r["started_at"], r["completed_at"] or now) for r in runs)
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


def _sleeps(seconds: str) -> int:
    """Processes `sleep <seconds>` alive on this machine (our unique duration)."""
    count = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", seconds.encode()]:
            count += 1
    return count


def _run_policy(
    env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    instances: int,
    policy: str,
    sleep: str,
    seconds: float = 5.5,
    **config: Any,
) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    daemons = _daemons(env, tmp_path, instances)
    start_all(daemons)
    try:
        schedule_id = insert_schedule(
            database_url,
            "interval",
            {"seconds": 1, "overlap_policy": policy, **config},
            job_type="command",
            payload={"argv": ["sleep", sleep]},
        )
        wait_until(lambda: _runs(executions(database_url, schedule_id)), 10, 0.05, "a first run")
        time.sleep(seconds)  # let occurrences pile up against the running ones
        with_sleeps = max(_sleeps(sleep) for _ in range(3))
        rows = executions(database_url, schedule_id)
    finally:
        for d in daemons:
            d.terminate()
    assert all(d.process is not None and d.process.returncode == 0 for d in daemons)
    if policy != "allow_all":
        assert with_sleeps <= 1, f"{with_sleeps} sleeps of one schedule at once"
    return schedule_id, rows


@pytest.mark.parametrize("instances", [1, 2])
def test_skip_records_the_overlaps_and_never_runs_two(
    env: dict[str, str], database_url: str, tmp_path: Path, instances: int
) -> None:
    _, rows = _run_policy(env, database_url, tmp_path, instances, "skip", "2.31")
    assert _overlaps(_runs(rows), datetime.now().astimezone()) == 0
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert skipped and all(
        "still held by an earlier run" in r["error_message"]
        or "still going on this instance" in r["error_message"]
        for r in skipped
    )
    assert not [r for r in rows if r["error_details"] and "queued_because" in r["error_details"]]


def _assert_queue_in_order(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Runs never overlap; each run that waited started within 1 s of the run before it ended,
    and runs started in the order of their occurrences."""
    runs = sorted(_runs(rows), key=lambda r: r["started_at"])
    assert _overlaps(runs, now) == 0
    assert [r["scheduled_for"] for r in runs] == sorted(r["scheduled_for"] for r in runs)
    waited = [r for r in runs if r["error_details"] and "queued_because" in r["error_details"]]
    assert waited, [
        (r["scheduled_for"], r["status"], r["error_message"], r["error_details"]) for r in rows
    ]
    for earlier, later in itertools.pairwise(runs):
        if later in waited and earlier["completed_at"] is not None:
            gap = (later["started_at"] - earlier["completed_at"]).total_seconds()
            assert 0 <= gap < 1.0, f"a queued run started {gap:.2f}s after the earlier one ended"
    return waited


@pytest.mark.parametrize("instances", [1, 2])
def test_buffer_one_keeps_one_waiting_and_skips_the_rest(
    env: dict[str, str], database_url: str, tmp_path: Path, instances: int
) -> None:
    _, rows = _run_policy(env, database_url, tmp_path, instances, "buffer_one", "2.32")
    _assert_queue_in_order(rows, datetime.now().astimezone())
    assert sum(r["status"] == "queued" for r in rows) <= 1
    assert any(
        r["status"] == "skipped" and "already waiting" in r["error_message"] for r in rows
    ), [(r["status"], r["error_message"]) for r in rows]


@pytest.mark.parametrize("instances", [1, 2])
def test_buffer_all_queues_up_to_max_buffered_in_order(
    env: dict[str, str], database_url: str, tmp_path: Path, instances: int
) -> None:
    _, rows = _run_policy(
        env, database_url, tmp_path, instances, "buffer_all", "2.33", max_buffered=2
    )
    _assert_queue_in_order(rows, datetime.now().astimezone())
    assert sum(r["status"] == "queued" for r in rows) <= 2
    assert any(r["status"] == "skipped" and "max_buffered (2)" in r["error_message"] for r in rows)


@pytest.mark.parametrize("policy", ["cancel_other", "terminate_other"])
@pytest.mark.parametrize("instances", [1, 2])
def test_a_newer_occurrence_replaces_the_running_one(
    env: dict[str, str], database_url: str, tmp_path: Path, instances: int, policy: str
) -> None:
    sleep = "30.4" if policy == "cancel_other" else "30.5"
    _, rows = _run_policy(env, database_url, tmp_path, instances, policy, sleep, seconds=4.5)
    runs = sorted(_runs(rows), key=lambda r: r["started_at"])
    assert _overlaps(runs, datetime.now().astimezone()) == 0
    replaced = [r for r in runs if r["status"] == "cancelled"]
    assert len(replaced) >= 2, [(r["status"], r["error_message"]) for r in rows]
    for r in replaced:
        assert r["error_message"].startswith("replaced by the occurrence of 20")
    assert _sleeps(sleep) == 0  # the daemons stopped: nothing left behind


@pytest.mark.parametrize("instances", [1, 2])
def test_allow_all_lets_runs_overlap_each_with_its_own_lock(
    env: dict[str, str], database_url: str, tmp_path: Path, instances: int
) -> None:
    _, rows = _run_policy(env, database_url, tmp_path, instances, "allow_all", "2.36", seconds=3)
    runs = _runs(rows)
    assert _overlaps(runs, datetime.now().astimezone()) >= 2
    assert not [r for r in rows if r["status"] == "skipped"]
    scheduled = [r["scheduled_for"] for r in runs]
    assert len(scheduled) == len(set(scheduled))  # each occurrence once, two instances or one
