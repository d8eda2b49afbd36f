"""The execution engine with real daemon processes, PostgreSQL, Redis and a local HTTP server."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.daemon import DaemonProcess
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def insert_schedule(
    url: str,
    frequency: str,
    time_config: dict[str, Any],
    *,
    job_type: str | None = None,
    payload: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    next_run: datetime | None = None,
) -> uuid.UUID:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
            "payload, created_at, next_run) VALUES (gen_random_uuid(), 'example.com', %s, %s, %s, "
            "%s, coalesce(%s, now()), %s) RETURNING schedule_id",
            (frequency, Jsonb(time_config), job_type, Jsonb(payload or {}), created_at, next_run),
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def executions(url: str, schedule_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT * FROM job_executions WHERE %(s)s::uuid IS NULL OR schedule_id = %(s)s "
            "ORDER BY scheduled_for, attempt",
            {"s": schedule_id},
        ).fetchall()


def schedule_row(url: str, schedule_id: uuid.UUID) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM schedules WHERE schedule_id = %s", (schedule_id,))
        result = row.fetchone()
    assert result is not None
    return result


def daemon(env: dict[str, str], tmp_path: Path, name: str = "a", **extra: str) -> DaemonProcess:
    return DaemonProcess({**env, **extra}, tmp_path / f"{name}.log", instance_id=f"test-{name}")


def test_http_job_runs_with_the_contract_body_and_stores_scan_id(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    scan_id = str(uuid.uuid4())
    with RecordingHTTPServer(ScriptedResponse(200, {"scan_id": scan_id})) as server:
        schedule_id = insert_schedule(
            database_url,
            "interval",
            {"seconds": 1},
            job_type="http",
            payload={"url": f"{server.url}/scan", "maxPages": 5},
        )
        with daemon(env, tmp_path, HTTP_ALLOWED_HOSTS="127.0.0.1"):
            requests = server.wait_for_requests(2, timeout=15)
            wait_until(
                lambda: (
                    len([e for e in executions(database_url) if e["status"] == "completed"]) >= 2
                ),
                10,
                message="two completed runs",
            )
    first = requests[0]
    body = first.json
    assert set(body) == {
        "execution_id",
        "schedule_id",
        "domain_config_id",
        "domain",
        "profile_id",
        "scheduled_for",
        "attempt",
        "payload",
    }
    assert body["schedule_id"] == str(schedule_id) and body["payload"]["maxPages"] == 5
    assert body["scheduled_for"].endswith("Z") and body["attempt"] == 1
    assert first.header("Idempotency-Key") == f"{schedule_id}:{body['scheduled_for']}:1"
    rows = [e for e in executions(database_url) if e["status"] == "completed"]
    row = next(r for r in rows if str(r["execution_id"]) == body["execution_id"])
    assert str(row["scan_id"]) == scan_id
    assert row["trigger"] == "schedule" and row["instance_id"] == "test-a"
    assert row["fencing_token"] is not None and row["duration_seconds"] >= 0
    sched = schedule_row(database_url, schedule_id)
    assert sched["last_status"] == "completed" and sched["next_run"] is not None


def test_sigterm_during_a_run_exits_cleanly_leaving_no_running_rows_or_locks(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    schedule_id = insert_schedule(
        database_url,
        "interval",
        {"seconds": 60},
        job_type="command",
        payload={"argv": ["sleep", "30"]},
        created_at=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=55),
    )
    proc = daemon(env, tmp_path, COMMAND_ALLOWLIST="sleep", SHUTDOWN_TIMEOUT="2").start()
    wait_until(lambda: executions(database_url, schedule_id), 15, message="run started")
    started = time.monotonic()
    assert proc.terminate(timeout=20) == 0
    assert time.monotonic() - started < 2 + 2 + 1  # SHUTDOWN_TIMEOUT + 2 s (+1 s for the wait)
    rows = executions(database_url, schedule_id)
    assert [r["status"] for r in rows] == ["abandoned"]
    assert "shut down" in rows[0]["error_message"]
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=f"{redis_prefix}lock:*")) == []
    assert not client.exists(f"{redis_prefix}scheduler:instance:test-a")


def test_a_long_job_keeps_its_lock_and_no_other_instance_starts_it(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    schedule_id = insert_schedule(
        database_url,
        "interval",
        {"seconds": 30},
        job_type="command",
        payload={"argv": ["sleep", "10"]},
        created_at=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=25),
    )
    extra = {"COMMAND_ALLOWLIST": "sleep", "LOCK_TIMEOUT": "3", "JOB_MISFIRE_GRACE_TIME": "60"}
    with daemon(env, tmp_path, "a", **extra), daemon(env, tmp_path, "b", **extra):
        wait_until(
            lambda: [r for r in executions(database_url, schedule_id) if r["completed_at"]],
            40,
            message="the 10 s run finished",
        )
    rows = executions(database_url, schedule_id)
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "completed"
    assert not (rows[0]["error_details"] or {}).get("lock_lost")
    assert rows[0]["duration_seconds"] >= 10


def test_retryable_failures_retry_with_backoff_and_a_400_does_not(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with RecordingHTTPServer() as flaky, RecordingHTTPServer(ScriptedResponse(400)) as bad:
        flaky.enqueue(ScriptedResponse(503), ScriptedResponse(503), ScriptedResponse(200))
        retried = insert_schedule(
            database_url,
            "once",
            {"run_at": soon.isoformat()},
            job_type="http",
            payload={"url": flaky.url},
        )
        refused = insert_schedule(
            database_url,
            "once",
            {"run_at": soon.isoformat()},
            job_type="http",
            payload={"url": bad.url},
        )
        with daemon(env, tmp_path, HTTP_ALLOWED_HOSTS="127.0.0.1", RETRY_INITIAL_DELAY="1"):
            wait_until(
                lambda: any(r["status"] == "completed" for r in executions(database_url, retried)),
                30,
                message="third attempt completed",
            )
            hits = flaky.wait_for_requests(3)
    rows = executions(database_url, retried)
    assert [(r["attempt"], r["status"], r["trigger"]) for r in rows] == [
        (1, "failed", "schedule"),
        (2, "failed", "retry"),
        (3, "completed", "retry"),
    ]
    assert all(r["error_details"]["retryable"] for r in rows[:2])
    assert len({r["scheduled_for"] for r in rows}) == 1  # one occurrence, three attempts
    # Equal jitter: the wait before attempt n+1 is within [d/2, d] with d = 1 s * 2^(n-1).
    gaps = [b.monotonic - a.monotonic for a, b in itertools.pairwise(hits)]
    assert 0.5 <= gaps[0] <= 1.0 + 0.8, gaps
    assert 1.0 <= gaps[1] <= 2.0 + 0.8, gaps
    bad_rows = executions(database_url, refused)
    assert [(r["attempt"], r["status"]) for r in bad_rows] == [(1, "failed")]
    assert bad_rows[0]["error_details"]["retryable"] is False
    assert len(bad.requests) == 1


def test_refused_command_never_starts_and_a_slow_one_times_out(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    soon = (datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)).isoformat()
    marker = tmp_path / "should-not-exist"
    refused = insert_schedule(
        database_url,
        "once",
        {"run_at": soon},
        job_type="command",
        payload={"argv": ["touch", str(marker)]},
    )
    slow = insert_schedule(
        database_url,
        "once",
        {"run_at": soon, "timeout_seconds": 1, "max_retries": 0},
        job_type="command",
        payload={"argv": ["sleep", "30"]},
    )
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="sleep"):
        wait_until(
            lambda: (
                all(r["completed_at"] for r in executions(database_url))
                and len(executions(database_url)) == 2
            ),
            20,
            message="both runs finished",
        )
    refused_row = executions(database_url, refused)[0]
    assert refused_row["status"] == "failed"
    assert "COMMAND_ALLOWLIST" in refused_row["error_message"]
    assert not marker.exists()
    slow_row = executions(database_url, slow)[0]
    assert slow_row["status"] == "timed_out"
    assert slow_row["duration_seconds"] < 5


def insert_missed_schedules(url: str, now: datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """Two schedules whose persisted next_run has passed, as after a downtime: `within` missed
    once 20 s ago with a 60 s grace; `beyond` every 10 s (now-25, -15, -5, +5, ...) since
    now-25 with a 2 s grace."""
    within = insert_schedule(
        url,
        "interval",
        {"seconds": 3600, "misfire_grace_time": 60},
        job_type="command",
        payload={"argv": ["echo", "hi"]},
        created_at=now - timedelta(seconds=3620),
        next_run=now - timedelta(seconds=20),
    )
    beyond = insert_schedule(
        url,
        "interval",
        {"seconds": 10, "misfire_grace_time": 2},
        job_type="command",
        payload={"argv": ["echo", "hi"]},
        created_at=now - timedelta(seconds=95),
        next_run=now - timedelta(seconds=25),
    )
    return within, beyond


def test_catch_up_after_downtime_runs_once_within_grace_and_skips_beyond(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # One catch-up run for `within`; the three missed `beyond` occurrences are skipped, then it
    # runs on time.
    within, beyond = insert_missed_schedules(database_url, now)
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="echo"):
        wait_until(
            lambda: any(r["status"] == "completed" for r in executions(database_url, beyond)),
            20,
            message="the next regular occurrence ran",
        )
        wait_until(lambda: executions(database_url, within), 10, message="catch-up run")
    within_rows = executions(database_url, within)
    assert [(r["trigger"], r["status"]) for r in within_rows] == [("catchup", "completed")]
    assert within_rows[0]["scheduled_for"] == now - timedelta(seconds=20)
    beyond_rows = executions(database_url, beyond)
    skipped = [r for r in beyond_rows if r["status"] == "skipped"]
    ran = [r for r in beyond_rows if r["status"] == "completed"]
    assert len(skipped) == 3 and all("no scheduler instance" in r["error_message"] for r in skipped)
    assert ran and all(r["trigger"] == "schedule" for r in ran)
    assert all(r["scheduled_for"] > now for r in ran)  # no burst of old occurrences


def test_no_catch_up_while_other_instances_run(
    env: dict[str, str], database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Catch-up is for occurrences missed while no instance ran. An instance joining live peers
    leaves a past next_run to them: no catch-up run, no 'downtime' rows; it runs what comes."""
    now = datetime.now(UTC).replace(microsecond=0)
    within, regular = insert_missed_schedules(database_url, now)
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{redis_prefix}scheduler:instance:peer-x", "alive", px=60_000)
        with daemon(env, tmp_path, COMMAND_ALLOWLIST="echo") as proc:
            wait_until(
                lambda: any(r["status"] == "completed" for r in executions(database_url, regular)),
                20,
                message="the next regular occurrence ran",
            )
            assert proc.wait_for_event("scheduler.catchup_left_to_peers", timeout=1)["peers"] == [
                "peer-x"
            ]
    finally:
        client.close()
    assert executions(database_url, within) == []
    rows = executions(database_url, regular)
    assert [r["status"] for r in rows] == ["completed"] * len(rows), rows
    assert all(r["trigger"] == "schedule" and r["scheduled_for"] > now for r in rows)


def test_old_history_is_pruned_by_one_instance(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_executions (job_id, domain, domain_config_id, status, started_at, "
            "completed_at, scheduled_for) SELECT 'j', 'd', gen_random_uuid(), s, "
            "now() - interval '40 days', now() - interval '40 days', now() - interval '40 days' "
            "FROM unnest(ARRAY['completed', 'failed', 'running', 'skipped']) AS s, "
            "generate_series(1, 50)"
        )
        conn.execute(
            "INSERT INTO job_executions (job_id, domain, domain_config_id, status, scheduled_for) "
            "VALUES ('j', 'd', gen_random_uuid(), 'completed', now())"
        )
    extra = {"HISTORY_RETENTION_DAYS": "30"}
    with daemon(env, tmp_path, "a", **extra) as a, daemon(env, tmp_path, "b", **extra) as b:
        wait_until(
            lambda: [e for d in (a, b) for e in d.events() if e.get("event") == "history.pruned"],
            15,
            message="a prune",
        )
    pruned = [e for d in (a, b) for e in d.events() if e.get("event") == "history.pruned"]
    assert len(pruned) == 1 and pruned[0]["deleted"] == 150
    statuses = sorted(r["status"] for r in executions(database_url))
    assert statuses == ["completed"] + ["running"] * 50


def test_invalid_rows_are_marked_and_never_scheduled(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    bad = insert_schedule(database_url, "daily", {"hour": 25})
    good = insert_schedule(database_url, "daily", {"hour": 2})
    with daemon(env, tmp_path) as proc:
        started = proc.wait_for_event("scheduler.started")
    assert started["jobs_loaded"] == 1
    row = schedule_row(database_url, bad)
    assert row["last_status"] == "invalid"
    assert row["last_error"] == "time_config.hour must be an integer 0-23, got 25"
    assert schedule_row(database_url, good)["next_run"] is not None
    assert json.dumps(row["time_config"]) == '{"hour": 25}'  # the row itself is left as written


def test_a_schedule_disabled_for_three_periods_comes_back_without_a_burst(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    sid = insert_schedule(
        database_url,
        "interval",
        {"seconds": 1},
        job_type="command",
        payload={"argv": ["echo", "x"]},
    )
    toggle = "UPDATE schedules SET enabled = %s WHERE schedule_id = %s"
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="echo") as proc:
        wait_until(lambda: executions(database_url, sid), 10, message="first run")
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(toggle, (False, sid))
            proc.wait_for_event("watcher.pass", timeout=5, changes={"removed": 1})
            disabled_at = datetime.now(UTC)
            time.sleep(3.5)  # three periods pass while it is disabled (the point of the test)
            conn.execute(toggle, (True, sid))
            enabled_at = datetime.now(UTC)
        wait_until(
            lambda: [r for r in executions(database_url, sid) if r["scheduled_for"] > enabled_at],
            10,
            message="a run after re-enabling",
        )
    rows = executions(database_url, sid)
    paused = [
        r for r in rows if disabled_at + timedelta(seconds=1) < r["scheduled_for"] < enabled_at
    ]
    assert paused == []  # nothing ran, nothing was recorded skipped, for the pause
    after = [r for r in rows if r["scheduled_for"] > enabled_at]
    assert all(r["trigger"] == "schedule" for r in after)
    assert len({r["scheduled_for"] for r in rows}) == len(rows)
