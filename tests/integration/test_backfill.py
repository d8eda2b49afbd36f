"""Backfill: each mode and the dry run (store and CLI), the 10,000 bound, exactly once with two
daemons, and the API endpoint."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.errors import InvalidBackfill
from services.store.backfill import Backfill
from services.store.schedules import ScheduleRepository
from tests.integration.test_engine import executions, insert_schedule
from tests.support.api import client, make_token, serving
from tests.support.daemon import DaemonProcess, start_all
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)
T0 = (datetime.now(UTC) - timedelta(hours=10)).replace(minute=0, second=0, microsecond=0)


def _hourly(url: str, **payload: object) -> uuid.UUID:
    return insert_schedule(
        url,
        "interval",
        {"hours": 1, "start_date": T0.isoformat()},
        job_type="command",
        payload={"argv": ["sleep", "0.2"], **payload},
    )


def _row(url: str, schedule_id: uuid.UUID, at: datetime, attempt: int, status: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_executions (execution_id, schedule_id, job_id, domain, "
            "domain_config_id, status, started_at, scheduled_for, attempt, error_details) "
            "SELECT gen_random_uuid(), schedule_id, 'x', domain, domain_config_id, %s, now(), "
            "%s, %s, %s FROM schedules WHERE schedule_id = %s",
            (status, at, attempt, Jsonb({}), schedule_id),
        )


def test_modes_dry_run_and_attempts(db: DatabaseConnection, database_url: str) -> None:
    sid = _hourly(database_url)
    _row(database_url, sid, T0, 1, "completed")
    _row(database_url, sid, T0 + HOUR, 1, "failed")
    _row(database_url, sid, T0 + 2 * HOUR, 1, "skipped")
    _row(database_url, sid, T0 + 3 * HOUR, 1, "timed_out")
    backfill = Backfill(db, ScheduleRepository(db), "test")
    end = T0 + 5 * HOUR

    def planned(mode: str) -> list[tuple[datetime, int]]:
        result = backfill.run(sid, T0, end, mode, dry_run=True)
        assert result.queued == 0 and result.considered == 5
        return [
            (datetime.fromisoformat(o["scheduled_for"]), o["attempt"]) for o in result.occurrences
        ]

    assert planned("missing") == [(T0 + 2 * HOUR, 2), (T0 + 4 * HOUR, 1)]
    assert planned("failed") == [(T0 + HOUR, 2), (T0 + 3 * HOUR, 2)]
    assert len(planned("all")) == 5
    assert len(executions(database_url, sid)) == 4  # a dry run writes nothing
    result = backfill.run(sid, T0, end, "failed")
    assert result.queued == 2
    queued = [r for r in executions(database_url, sid) if r["status"] == "queued"]
    assert [(r["scheduled_for"], r["attempt"], r["trigger"]) for r in queued] == [
        (T0 + HOUR, 2, "backfill"),
        (T0 + 3 * HOUR, 2, "backfill"),
    ]
    assert all(r["fencing_token"] is not None for r in queued)
    assert backfill.run(sid, T0, end, "missing").queued == 2
    assert backfill.run(sid, T0, end, "missing").queued == 0  # queued rows count as pending


def test_cli_json_and_the_ten_thousand_bound(env: dict[str, str], database_url: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sid = insert_schedule(database_url, "interval", {"seconds": 1, "start_date": start.isoformat()})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "scheduler.py", "backfill", str(sid), *args],
            cwd=ROOT,
            env={**env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    ok = cli(
        "--from",
        start.isoformat(),
        "--to",
        (start + timedelta(seconds=10)).isoformat(),
        "--dry-run",
        "--json",
    )
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["dry_run"] is True and body["queued"] == 0 and len(body["occurrences"]) == 10
    big = cli("--from", start.isoformat(), "--to", (start + timedelta(hours=3)).isoformat())
    assert big.returncode == 2 and "more than 10,000 occurrences" in big.stderr
    bad = cli("--from", start.isoformat(), "--to", start.isoformat())
    assert bad.returncode == 2 and "must be after" in bad.stderr
    unknown = subprocess.run(
        [
            sys.executable,
            "scheduler.py",
            "backfill",
            str(uuid.uuid4()),
            "--from",
            start.isoformat(),
            "--to",
            (start + HOUR).isoformat(),
        ],
        cwd=ROOT,
        env={**env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert unknown.returncode == 1
    assert executions(database_url, sid) == []


def test_backfill_runs_each_occurrence_once_one_at_a_time_with_two_daemons(
    env: dict[str, str], db: DatabaseConnection, database_url: str, tmp_path: Path
) -> None:
    sid = _hourly(database_url)
    extra = {"COMMAND_ALLOWLIST": "sleep", "SHUTDOWN_TIMEOUT": "1"}
    daemons = [
        DaemonProcess({**env, **extra}, tmp_path / f"b{i}.log", instance_id=f"bf-{i}")
        for i in range(2)
    ]
    start_all(daemons)
    try:
        result = Backfill(db, ScheduleRepository(db), "test").run(sid, T0, T0 + 6 * HOUR)
        assert result.queued == 6

        def done() -> list[dict[str, object]] | None:
            rows = [r for r in executions(database_url, sid) if r["trigger"] == "backfill"]
            return rows if all(r["status"] == "completed" for r in rows) else None

        rows = wait_until(done, 20, 0.1, "six backfill runs")
    finally:
        for d in daemons:
            d.terminate()
    assert [r["scheduled_for"] for r in rows] == [T0 + k * HOUR for k in range(6)]
    spans = sorted((r["started_at"], r["completed_at"]) for r in rows)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))  # one at a time
    started = [e for d in daemons for e in d.events() if e.get("event") == "run.dequeued"]
    assert sorted(e["execution_id"] for e in started) == sorted(
        str(r["execution_id"]) for r in rows
    )
    assert {r["instance_id"] for r in rows} <= {"bf-0", "bf-1"}


def test_the_api_endpoint(
    env: dict[str, str], db: DatabaseConnection, database_url: str, tmp_path: Path
) -> None:
    sid = _hourly(database_url)
    write, read = make_token(db, "w", "write"), make_token(db, "r", "read")
    body = {"from": T0.isoformat(), "to": (T0 + 3 * HOUR).isoformat(), "dry_run": True}
    with serving(env, tmp_path / "serve.log") as server:
        with client(server.url, read) as http:
            assert http.post(f"/api/v1/schedules/{sid}/backfill", json=body).status_code == 403
        with client(server.url, write) as http:
            dry = http.post(f"/api/v1/schedules/{sid}/backfill", json=body)
            assert dry.status_code == 200, dry.text
            assert dry.json()["queued"] == 0 and len(dry.json()["occurrences"]) == 3
            real = http.post(f"/api/v1/schedules/{sid}/backfill", json={**body, "dry_run": False})
            assert real.status_code == 200 and real.json()["queued"] == 3
            assert all(o["execution_id"] for o in real.json()["occurrences"])
            gone = http.post(f"/api/v1/schedules/{uuid.uuid4()}/backfill", json=body)
            assert gone.status_code == 404
            bad = http.post(f"/api/v1/schedules/{sid}/backfill", json={**body, "to": body["from"]})
            assert bad.status_code == 422 and bad.json()["errors"][0]["message"]
            mode = http.post(f"/api/v1/schedules/{sid}/backfill", json={**body, "mode": "x"})
            assert mode.status_code == 422
    assert sum(r["status"] == "queued" for r in executions(database_url, sid)) == 3


def test_invalid_mode_in_the_store(db: DatabaseConnection, database_url: str) -> None:
    sid = _hourly(database_url)
    with pytest.raises(InvalidBackfill, match="mode must be one of"):
        Backfill(db, ScheduleRepository(db), "t").run(sid, T0, T0 + HOUR, "some")
