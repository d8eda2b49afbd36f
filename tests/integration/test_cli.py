"""`python scheduler.py COMMAND` against real PostgreSQL, Redis and a live daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_engine import daemon, executions, insert_schedule
from tests.support.daemon import ROOT
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scheduler.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_json(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = cli(env, *args, "--json")
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def processes_with(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().split()[2]
            except OSError:
                continue
            if argument.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def test_schedule_commands_round_trip(env: dict[str, str], database_url: str) -> None:
    external = str(uuid.uuid4())
    created = cli_json(
        env,
        "add",
        "--domain-config-id",
        external,
        "--domain",
        "example.com",
        "--frequency",
        "daily",
        "--time-config",
        '{"hour": 2, "minute": 30}',
        "--name",
        "nightly",
    )
    sid = created["schedule_id"]
    assert created["enabled"] is True and created["name"] == "nightly"
    listed = cli_json(env, "list")
    assert [s["schedule_id"] for s in listed] == [sid]
    shown = cli_json(env, "show", sid)
    assert len(shown["upcoming"]) == 5 and shown["upcoming"][0].endswith("02:30:00+00:00")
    updated = cli_json(env, "update", sid, "--time-config", '{"hour": 3}')
    assert updated["time_config"] == {"hour": 3}
    assert cli_json(env, "disable", sid)["enabled"] is False
    assert cli_json(env, "list", "--enabled") == []
    assert cli_json(env, "enable", sid)["enabled"] is True
    assert cli_json(env, "validate") == {"invalid": [], "valid": True}
    assert cli_json(env, "delete", sid) == {"deleted": sid}
    assert cli_json(env, "list") == []
    human = cli(env, "list")
    assert human.returncode == 0 and "(none)" in human.stdout


def test_bad_usage_exits_2_and_unknown_ids_exit_1(env: dict[str, str], database_url: str) -> None:
    for args in (
        ["add", "--domain", "x"],
        [
            "add",
            "--domain-config-id",
            "not-a-uuid",
            "--domain",
            "x",
            "--frequency",
            "daily",
            "--time-config",
            "{}",
        ],
        [
            "add",
            "--domain-config-id",
            str(uuid.uuid4()),
            "--domain",
            "x",
            "--frequency",
            "daily",
            "--time-config",
            "{not json",
        ],
        ["history", "--status", "weird"],
        ["frobnicate"],
    ):
        result = cli(env, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "usage:" in result.stderr
    invalid = cli(
        env,
        "add",
        "--domain-config-id",
        str(uuid.uuid4()),
        "--domain",
        "x",
        "--frequency",
        "dayly",
        "--time-config",
        "{}",
    )
    assert invalid.returncode == 2 and "unknown frequency 'dayly'" in invalid.stderr
    missing = str(uuid.uuid4())
    for args in (
        ["show", missing],
        ["update", missing, "--domain", "y"],
        ["delete", missing],
        ["enable", missing],
        ["cancel", missing],
        ["trigger", missing],
    ):
        result = cli(env, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: no ") and missing in result.stderr
        assert "Traceback" not in result.stderr


def test_validate_lists_invalid_rows_with_reasons(env: dict[str, str], database_url: str) -> None:
    insert_schedule(database_url, "daily", {"hour": 2})
    bad = insert_schedule(database_url, "cron", {"expression": "61 * * * *"})
    report = cli_json(env, "validate", code=1)
    assert report["valid"] is False
    assert report["invalid"] == [
        {
            "schedule_id": str(bad),
            "domain": "example.com",
            "reason": "cron expression '61 * * * *': minute 61 out of range 0-59",
        }
    ]


def test_trigger_wait_history_stats_and_status_with_a_live_daemon(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    sid = insert_schedule(
        database_url,
        "daily",
        {"hour": 2},
        job_type="command",
        payload={"argv": ["echo", "triggered"]},
    )
    nobody = cli(env, "trigger", str(sid))
    assert nobody.returncode == 1 and "no live scheduler instance" in nobody.stderr
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="echo") as proc:
        started = time.monotonic()
        execution = cli_json(env, "trigger", str(sid), "--wait")
        assert time.monotonic() - started < 2 + 1.5  # 2 s for the run (+ interpreter start-up)
        assert execution["status"] == "completed" and execution["trigger"] == "manual"
        assert execution["instance_id"] == proc.instance_id
        status = cli_json(env, "status")
        assert [i["instance_id"] for i in status["instances"]] == [proc.instance_id]
        assert status["instances"][0]["jobs_loaded"] == 1
        assert [r["schedule_id"] for r in status["next_runs"]] == [str(sid)]
        human = cli(env, "status")
        assert human.returncode == 0 and proc.instance_id in human.stdout
    history = cli_json(env, "history", "--schedule", str(sid))
    assert [h["execution_id"] for h in history] == [execution["execution_id"]]
    assert cli_json(env, "history", "--status", "failed") == []
    stats = cli_json(env, "stats", "--days", "1")
    assert stats["total_executions"] == 1 and stats["successful"] == 1
    assert cli_json(env, "cleanup", "--days", "30") == {"deleted": 0}


def test_trigger_local_runs_in_process_under_the_same_history(
    env: dict[str, str], database_url: str
) -> None:
    sid = insert_schedule(
        database_url, "daily", {"hour": 2}, job_type="command", payload={"argv": ["echo", "local"]}
    )
    execution = cli_json({**env, "COMMAND_ALLOWLIST": "echo"}, "trigger", str(sid), "--local")
    assert execution["status"] == "completed" and execution["trigger"] == "manual"
    assert [str(r["execution_id"]) for r in executions(database_url, sid)] == [
        execution["execution_id"]
    ]


def test_cancel_stops_a_running_command_and_its_process(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    marker = f"{59 + (uuid.uuid4().int % 1000) / 1000:.3f}"  # a unique `sleep` argument
    now = datetime.now(UTC).replace(microsecond=0)
    sid = insert_schedule(
        database_url,
        "interval",
        {"seconds": 3600},
        job_type="command",
        payload={"argv": ["sleep", marker]},
        created_at=now - timedelta(seconds=3597),
    )
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="sleep"):
        rows = wait_until(
            lambda: [r for r in executions(database_url, sid) if r["status"] == "running"],
            15,
            message="the sleep job is running",
        )
        wait_until(lambda: processes_with(marker), 5, message="sleep process started")
        started = time.monotonic()
        result = cli(env, "cancel", str(rows[0]["execution_id"]), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "cancelled"
        assert time.monotonic() - started < 5
        wait_until(lambda: not processes_with(marker), 3, message="sleep process gone")
    again = cli(env, "cancel", str(rows[0]["execution_id"]))
    assert again.returncode == 1 and "is not running (status cancelled)" in again.stderr
