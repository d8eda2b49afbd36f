"""The REST API served by a real daemon (issue 14, acceptance 1 and 3): the same app on the
daemon's HTTP port; trigger and wait, cancel, the watcher's own reason for an invalid row, and
`scheduler.py serve` handing a trigger to the live daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from database.connection import DatabaseConnection
from tests.support.api import client, make_token, schedule_body, serving
from tests.support.daemon import DaemonProcess, Spawn, daemon_spawner
from tests.support.redis_server import free_port
from tests.support.schedules import query, schedule_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

daemons = pytest.fixture(daemon_spawner)


@pytest.fixture
def live_daemon(env: dict[str, str], daemons: Spawn) -> Iterator[tuple[DaemonProcess, str]]:
    port = free_port()
    extra = {
        "HTTP_PORT": str(port),
        "COMMAND_ALLOWLIST": "sleep,echo",
        "SCHEDULE_CHECK_INTERVAL": "1",
    }
    daemon = daemons({**env, **extra}, "api-daemon").start()
    yield daemon, f"http://127.0.0.1:{port}"


def command_schedule(argv: list[str], **overrides: Any) -> dict[str, Any]:
    return schedule_body(
        frequency="interval",
        time_config={"hours": 24},
        job_type="command",
        payload={"argv": argv},
        **overrides,
    )


def test_trigger_and_wait_returns_the_finished_run_and_cancel_stops_one(
    live_daemon: tuple[DaemonProcess, str], db: DatabaseConnection
) -> None:
    _daemon, url = live_daemon
    with client(url, make_token(db, "ops", "write")) as http:
        echo = http.post("/api/v1/schedules", json=command_schedule(["echo", "hello from the api"]))
        assert echo.status_code == 201, echo.text
        echo_id = echo.json()["schedule_id"]
        done = http.post(f"/api/v1/schedules/{echo_id}/trigger", params={"wait": 10})
        assert done.status_code == 200, done.text
        run = done.json()
        assert (run["status"], run["trigger"], run["schedule_id"]) == (
            "completed",
            "manual",
            echo_id,
        )
        assert "hello from the api" in (run["output_tail"] or "")

        accepted = http.post(f"/api/v1/schedules/{echo_id}/trigger")
        assert accepted.status_code == 202 and accepted.json()["request_id"]

        sleeper = http.post("/api/v1/schedules", json=command_schedule(["sleep", "30"])).json()
        http.post(f"/api/v1/schedules/{sleeper['schedule_id']}/trigger")
        running = wait_until(
            lambda: http.get("/api/v1/executions/running").json(), 15, message="the sleep running"
        )
        execution_id = running[0]["execution_id"]
        assert http.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 202
        wait_until(
            lambda: http.get(f"/api/v1/executions/{execution_id}").json()["status"] == "cancelled",
            15,
            message="the run cancelled",
        )
        slow = http.post(
            f"/api/v1/schedules/{sleeper['schedule_id']}/trigger", params={"wait": 0.5}
        )
        assert slow.status_code == 504, slow.text


def test_a_422_carries_word_for_word_what_the_watcher_writes_into_last_error(
    live_daemon: tuple[DaemonProcess, str], db: DatabaseConnection, database_url: str
) -> None:
    _daemon, url = live_daemon
    bad = {"expression": "61 * * * *", "timezone": "Mars/Olympus"}
    with client(url, make_token(db, "ops", "write")) as http:
        refused = http.post(
            "/api/v1/schedules", json=schedule_body(frequency="cron", time_config=bad)
        )
    assert refused.status_code == 422, refused.text
    row = query(
        database_url,
        """INSERT INTO schedules (domain_config_id, domain, frequency, time_config)
           VALUES (gen_random_uuid(), 'hand.example', 'cron', %s::jsonb) RETURNING schedule_id""",
        [__import__("json").dumps(bad)],
    )[0]
    marked = wait_until(
        lambda: schedule_row(database_url, row["schedule_id"])["last_error"],
        15,
        message="invalid mark",
    )
    assert refused.json()["detail"] == marked


def test_serve_hands_a_trigger_to_the_live_daemon(
    live_daemon: tuple[DaemonProcess, str],
    env: dict[str, str],
    db: DatabaseConnection,
    tmp_path: Path,
) -> None:
    _daemon, _url = live_daemon
    with (
        serving(env, tmp_path / "serve.log") as server,
        client(server.url, make_token(db, "w", "write")) as http,
    ):
        schedule_id = http.post(
            "/api/v1/schedules", json=command_schedule(["echo", "via serve"])
        ).json()["schedule_id"]
        status = http.get("/api/v1/scheduler/status").json()
        assert [i["instance_id"] for i in status["instances"]] == ["api-daemon"]
        run = http.post(f"/api/v1/schedules/{schedule_id}/trigger", params={"wait": 10})
        assert run.status_code == 200 and run.json()["instance_id"] == "api-daemon"
