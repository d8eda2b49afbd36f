from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from database.migrations import MIGRATIONS_DIR, Migrator, discover
from services.errors import MigrationError
from tests.support import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_url() -> object:
    services.require_postgres()
    with services.empty_database() as url:
        yield url


def _run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "ENV_FILE": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_second_run_applies_nothing(empty_url: str) -> None:
    first = _run(["run_migrations.py"], empty_url)
    assert first.returncode == 0, first.stderr
    assert "applied 001_initial_schema.sql" in first.stdout
    second = _run(["run_migrations.py"], empty_url)
    assert second.returncode == 0, second.stderr
    assert "nothing to apply" in second.stdout
    status = _run(["scheduler.py", "migrate", "--status"], empty_url)
    assert status.returncode == 0 and "pending" not in status.stdout


def test_ten_concurrent_runs_apply_the_schema_exactly_once(empty_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_url, "ENV_FILE": ""}
    procs = [
        subprocess.Popen(
            [sys.executable, "run_migrations.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    outputs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, outputs
    applied = sum(out.count("applied 001_") for out, _ in outputs)
    assert applied == 1
    with psycopg.connect(empty_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(discover()),)


def test_an_edited_applied_migration_stops_everything(empty_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    Migrator(empty_url, directory).apply()
    edited = directory / "001_initial_schema.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    with pytest.raises(MigrationError, match=r"001_initial_schema\.sql was edited"):
        Migrator(empty_url, directory).apply()


def test_edited_migration_cli_exits_1_naming_the_file(empty_url: str) -> None:
    with psycopg.connect(empty_url, autocommit=True) as conn:
        Migrator(empty_url).apply()
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    result = _run(["run_migrations.py"], empty_url)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "001_initial_schema.sql was edited" in result.stderr


def test_applying_every_migration_gives_the_contract_schema(empty_url: str) -> None:
    Migrator(empty_url).apply()
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    assert {
        "schedule_id",
        "domain_config_id",
        "domain",
        "profile_id",
        "frequency",
        "time_config",
        "enabled",
        "job_type",
        "payload",
        "source",
        "next_run",
        "last_run",
        "last_status",
        "last_error",
        "created_at",
        "updated_at",
        "tags",
        "notify",
        "created_by",
        "paused_note",
        "paused_by",
        "paused_at",
    } <= columns["schedules"]
    assert {
        "execution_id",
        "schedule_id",
        "job_id",
        "domain",
        "domain_config_id",
        "status",
        "started_at",
        "completed_at",
        "duration_seconds",
        "scan_id",
        "error_message",
        "error_details",
        "metadata",
        "created_at",
        "scheduled_for",
        "attempt",
        "instance_id",
        "fencing_token",
        "trigger",
    } <= columns["job_executions"]
    assert {"profile_id", "name", "settings"} <= columns["scan_profiles"]
    assert {"version", "name", "checksum", "applied_at"} <= columns["schema_migrations"]
    assert {
        "name",
        "token_sha256",
        "role",
        "created_at",
        "last_used_at",
        "revoked_at",
    } <= columns["api_tokens"]
    assert {
        "audit_id",
        "schedule_id",
        "action",
        "actor",
        "changed_at",
        "changed_fields",
        "before",
        "after",
    } <= columns["schedule_audit"]


def test_unreachable_database_gives_one_line_without_traceback_or_password() -> None:
    result = _run(["scheduler.py", "migrate"], "postgresql://nobody:s3cret@127.0.0.1:1/x")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "127.0.0.1:1/x" in lines[0] and "s3cret" not in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_setting_gives_one_line_naming_the_variable() -> None:
    env = {**os.environ, "MAX_WORKERS": "abc", "ENV_FILE": ""}
    result = subprocess.run(
        [sys.executable, "scheduler.py", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: MAX_WORKERS='abc' is invalid: expected an integer 1-1000"
    )
