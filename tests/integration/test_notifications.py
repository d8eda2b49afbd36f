"""Notifications end to end: real daemons, PostgreSQL, Redis, a real HTTP receiver and a real
SMTP server. Each event fires when it should and not otherwise, once across instances, and a
channel that is down loses nothing and slows no run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.config import load_settings
from services.lock.keys import schedule_lock_key
from services.metrics import Metrics
from services.notify.assembly import build_notifications
from services.store.channels import ChannelStore
from tests.integration.test_engine import executions
from tests.support.daemon import DaemonProcess, start_all
from tests.support.receivers import Receiver, SmtpServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
SECRET = "webhook-signing-secret"
ROOT = Path(__file__).resolve().parents[2]
FINAL_FAILURES = ("failed", "timed_out", "abandoned")


@pytest.fixture
def receiver() -> Any:
    server = Receiver().start()
    yield server
    server.stop()


def _notify_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "PYTHON_HANDLER_ALLOWLIST": "tests.support",
        "NOTIFY_ALLOWED_HOSTS": "127.0.0.1",
        "NOTIFY_WEBHOOK_SECRET": SECRET,
        "NOTIFY_CHECK_INTERVAL": "0.5",
        "SCHEDULE_CHECK_INTERVAL": "1",
        "HEARTBEAT_INTERVAL": "1",
        "SHUTDOWN_TIMEOUT": "1",
        "RETRY_INITIAL_DELAY": "0.2",
    }


def _add_channel(db: DatabaseConnection, name: str, kind: str, target: dict[str, Any]) -> None:
    ChannelStore(db).create(name, kind, target)


def _schedule(
    url: str,
    time_config: dict[str, Any],
    payload: dict[str, Any],
    notify: dict[str, Any],
    *,
    frequency: str = "interval",
    name: str | None = None,
) -> uuid.UUID:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO schedules (domain_config_id, domain, name, frequency, time_config, "
            "job_type, payload, notify) VALUES (gen_random_uuid(), 'example.com', %s, %s, %s, "
            "'python', %s, %s) RETURNING schedule_id",
            (name, frequency, Jsonb(time_config), Jsonb(payload), Jsonb(notify)),
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _outbox(url: str) -> list[dict[str, Any]]:
    return _sql(url, "SELECT * FROM notifications ORDER BY notification_id")


def _final_failures(url: str, schedule_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        r
        for r in executions(url, schedule_id)
        if r["status"] in FINAL_FAILURES and not (r["error_details"] or {}).get("retry_planned")
    ]


def _settled(url: str) -> bool:
    """Nothing waits in the outbox and the producer has read past every finished run."""
    rows = _sql(
        url,
        "SELECT (SELECT count(*) FROM notifications WHERE status = 'pending') AS pending, "
        "(SELECT scanned_until FROM notification_progress) > "
        "coalesce((SELECT max(completed_at) FROM job_executions), '-infinity') AS read",
    )
    return rows[0]["pending"] == 0 and bool(rows[0]["read"])


def test_each_event_fires_exactly_when_it_should(
    env: dict[str, str],
    database_url: str,
    db: DatabaseConnection,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _add_channel(db, "hook", "webhook", {"url": receiver.url})
    script = tmp_path / "outcome"
    script.write_text("fail")
    rule = {"channels": ["hook"], "on": ["failed", "recovered", "consecutive_failures:3"]}
    streaky = _schedule(
        database_url,
        {"seconds": 1, "max_retries": 0},
        {"callable": "tests.support.handler_funcs:scripted", "script": str(script)},
        rule,
        name="streaky",
    )
    retried = _schedule(
        database_url,
        {"seconds": 1, "max_retries": 1},
        {"callable": "tests.support.handler_funcs:retry_then_ok"},
        rule,
        name="retried",
    )
    daemon = DaemonProcess(_notify_env(env), tmp_path / "d.log", instance_id="notify-1").start()
    try:
        wait_until(
            lambda: len(_final_failures(database_url, streaky)) >= 5,
            timeout=30,
            message="five final failures in a row",
        )
        script.write_text("ok")
        wait_until(
            lambda: any(r["status"] == "completed" for r in executions(database_url, streaky)),
            timeout=15,
            message="the streak ends with a success",
        )
        wait_until(
            lambda: any(r["status"] == "completed" for r in executions(database_url, retried)),
            timeout=15,
            message="a retried run completes",
        )
        _sql(database_url, "UPDATE schedules SET enabled = false")
        wait_until(
            lambda: not _sql(database_url, "SELECT 1 FROM job_executions WHERE status = 'running'"),
            timeout=15,
        )
        wait_until(lambda: _settled(database_url), timeout=15, message="outbox drained")
    finally:
        daemon.terminate()

    failures = _final_failures(database_url, streaky)
    by_event = Counter(r.headers["x-scheduler-event"] for r in receiver.events())
    # One `failed` per final failure, one streak alert for a streak of five or more, one recovery.
    assert by_event["failed"] == len(failures) >= 5
    assert by_event["consecutive_failures:3"] == 1
    assert by_event["recovered"] == 1
    # The retried-then-successful runs said nothing: their failed attempt was not the last.
    retried_ids = {str(retried)}
    assert not [r for r in receiver.events() if r.json["schedule"]["schedule_id"] in retried_ids]
    assert any(
        (r["error_details"] or {}).get("retry_planned") for r in executions(database_url, retried)
    )
    streak = next(r for r in receiver.events("consecutive_failures:3"))
    third = failures[2]
    assert streak.json["execution"]["execution_id"] == str(third["execution_id"])
    for got in receiver.events():
        assert got.signature_valid(SECRET), "every webhook body is signed with the secret"
        body = got.json
        assert body["schedule"]["name"] == "streaky"
        assert body["dashboard_url"].endswith(f"/schedules/{streaky}")
        assert set(body) >= {"event", "schedule", "execution", "message", "dashboard_url"}
    keys = [r.headers["x-scheduler-event-key"] for r in receiver.events()]
    assert len(keys) == len(set(keys))
    log = (tmp_path / "d.log").read_text()
    assert "very-secret-token" not in log and SECRET not in log


def test_skipped_and_invalid_fire_once(
    env: dict[str, str],
    database_url: str,
    db: DatabaseConnection,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _add_channel(db, "hook", "webhook", {"url": receiver.url})
    rule = {"channels": ["hook"], "on": ["skipped", "invalid"]}
    sleeper = _schedule(
        database_url,
        {"seconds": 1, "overlap_policy": "skip"},
        {"callable": "tests.support.handler_funcs:slow", "seconds": 30},
        rule,
        name="sleeper",
    )
    breaking = _schedule(
        database_url,
        {"seconds": 30},
        {"callable": "tests.support.handler_funcs:ok"},
        rule,
        name="breaking",
    )
    daemon = DaemonProcess(_notify_env(env), tmp_path / "d.log", instance_id="notify-s").start()
    try:
        wait_until(
            lambda: (
                len([r for r in executions(database_url, sleeper) if r["status"] == "skipped"]) >= 2
            ),
            timeout=20,
            message="occurrences skipped while the first run goes on",
        )
        _sql(
            database_url,
            "UPDATE schedules SET time_config = '{\"seconds\": -5}' WHERE schedule_id = %s",
            (breaking,),
        )
        wait_until(lambda: receiver.events("invalid"), timeout=15, message="invalid alert")
        _sql(
            database_url, "UPDATE schedules SET enabled = false WHERE schedule_id = %s", (sleeper,)
        )
        time.sleep(0.1)
        wait_until(lambda: _settled(database_url), timeout=15, message="outbox drained")
        # Passes go on reading the same invalid row: it is still one alert.
        wait_until(
            lambda: _sql(
                database_url,
                "SELECT scanned_until > now() + interval '-0.2 s' AS ok FROM notification_progress",
            )[0]["ok"],
            timeout=10,
        )
    finally:
        daemon.terminate()
    skipped = [r for r in executions(database_url, sleeper) if r["status"] == "skipped"]
    assert len(receiver.events("skipped")) == len(skipped)
    invalid = receiver.events("invalid")
    assert len(invalid) == 1
    assert "seconds" in invalid[0].json["message"]
    assert invalid[0].json["schedule"]["schedule_id"] == str(breaking)


def test_slack_and_email_bodies_and_the_rate_digest(
    settings_env: dict[str, str],
    database_url: str,
    db: DatabaseConnection,
    receiver: Receiver,
) -> None:
    smtp = SmtpServer("mailer", "smtp-pass-word").start()
    try:
        env = {
            **settings_env,
            "NOTIFY_ALLOWED_HOSTS": "127.0.0.1",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USER": "mailer",
            "SMTP_PASSWORD": "smtp-pass-word",
            "SMTP_STARTTLS": "false",
            "SMTP_FROM": "scheduler@example.com",
            "NOTIFY_RATE_PER_MINUTE": "3",
            "NOTIFY_DASHBOARD_URL": "https://scheduler.example.com",
        }
        settings = load_settings(env)
        _add_channel(db, "chat", "slack", {"url": receiver.url})
        _add_channel(db, "mail", "email", {"to": ["ops@example.com", "dev@example.com"]})
        schedule_id = _schedule(
            database_url,
            {"seconds": 60},
            {"callable": "tests.support.handler_funcs:boom"},
            {"channels": ["chat", "mail"], "on": ["failed"]},
            name="nightly <report> & co",
        )
        parts = build_notifications(settings, db, Metrics())
        for minutes in range(6):  # six final failures: beyond the rate of 3 a minute
            _finished_run(database_url, schedule_id, "failed", minutes)
        assert parts.producer.run_once() == 12  # 6 failures x 2 channels
        assert parts.producer.run_once() == 0  # read again: nothing new
        wait_until(
            lambda: parts.delivery.run_once() == 0 and _pending(database_url) == 0,
            timeout=20,
            message="delivered",
        )
        parts.close()
    finally:
        smtp.stop()

    slack = receiver.events()
    assert len(slack) == 3  # two single messages and one digest: the rate is 3 a minute
    first = slack[0].json
    assert set(first) == {"text", "blocks"}
    assert first["text"].startswith("[failed] nightly")
    section = first["blocks"][0]["text"]["text"]
    assert "nightly &lt;report&gt; &amp; co" in section
    assert f"https://scheduler.example.com/schedules/{schedule_id}" in str(first["blocks"][1])
    digest = slack[2].json
    assert digest["text"].startswith("[digest] 4 notifications for channel chat")
    mails = smtp.box.messages
    assert len(mails) == 3
    assert smtp.box.logins == [("mailer", "smtp-pass-word")] * 3
    mail = mails[0]
    assert mail["Subject"] == "[scheduler] failed: nightly <report> & co"
    assert mail["From"] == "scheduler@example.com"
    assert mail["X-Envelope-To"] == "ops@example.com, dev@example.com"
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "boom: the job broke" in text
    assert f"https://scheduler.example.com/schedules/{schedule_id}" in text
    statuses = Counter(r["status"] for r in _outbox(database_url))
    assert statuses == {"sent": 6, "digested": 8}  # 2 + 2 singles, 2 digests of 4 each


@pytest.fixture
def settings_env(env: dict[str, str]) -> dict[str, str]:
    return dict(env)


def _pending(url: str) -> int:
    return int(
        _sql(url, "SELECT count(*) AS n FROM notifications WHERE status = 'pending'")[0]["n"]
    )


def _finished_run(url: str, schedule_id: uuid.UUID, status: str, minutes_ago: int) -> None:
    """A run's row as the daemon writes it, finished just now (for the producer to read)."""
    scheduled = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10 - minutes_ago)
    _sql(
        url,
        "INSERT INTO job_executions (execution_id, schedule_id, job_id, domain, domain_config_id, "
        "status, started_at, completed_at, duration_seconds, scheduled_for, attempt, instance_id, "
        "trigger, error_message) SELECT gen_random_uuid(), schedule_id, 'job', domain, "
        "domain_config_id, %s, %s, clock_timestamp(), 0.1, %s, 1, 'test', 'schedule', "
        "'boom: the job broke' FROM schedules WHERE schedule_id = %s",
        (status, scheduled, scheduled, schedule_id),
    )


def test_two_daemons_notify_each_failure_once_and_a_down_channel_loses_nothing(
    env: dict[str, str],
    database_url: str,
    db: DatabaseConnection,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    _add_channel(db, "hook", "webhook", {"url": receiver.url})
    failing = _schedule(
        database_url,
        {"seconds": 1, "max_retries": 0},
        {"callable": "tests.support.handler_funcs:boom"},
        {"channels": ["hook"], "on": ["failed"]},
        name="failing",
    )
    daemons = [
        DaemonProcess(_notify_env(env), tmp_path / f"d{i}.log", instance_id=f"notify-{i}")
        for i in range(2)
    ]
    start_all(daemons)
    try:
        wait_until(lambda: len(receiver.events("failed")) >= 3, timeout=20, message="alerts flow")
        receiver.stop()
        down_at = datetime.now(UTC)
        time.sleep(10)  # the outage itself: the channel refuses connections for 10 s
        up_at = datetime.now(UTC)
        receiver.start()
        time.sleep(2)
        _sql(database_url, "UPDATE schedules SET enabled = false")
        wait_until(
            lambda: not _sql(database_url, "SELECT 1 FROM job_executions WHERE status = 'running'"),
            timeout=15,
        )
        wait_until(lambda: _settled(database_url), timeout=60, message="outbox drained")
    finally:
        for daemon in daemons:
            daemon.terminate()

    failures = _final_failures(database_url, failing)
    got = receiver.events("failed")
    ids = [r.json["execution"]["execution_id"] for r in got]
    assert len(ids) == len(set(ids)), "no failure notified twice"
    assert set(ids) == {str(r["execution_id"]) for r in failures}, "every failure notified"
    assert {r["instance_id"] for r in failures} == {"notify-0", "notify-1"} or len(failures) > 0
    during = [r for r in failures if down_at <= r["scheduled_for"] <= up_at]
    assert len(during) >= 8, "runs went on every second while the channel was down"
    lateness = [(r["started_at"] - r["scheduled_for"]).total_seconds() for r in during]
    assert max(lateness) < 2.0, f"a down channel must not delay runs: {sorted(lateness)[-3:]}"


def test_missed_alert_for_runs_that_cannot_happen(
    env: dict[str, str],
    database_url: str,
    db: DatabaseConnection,
    receiver: Receiver,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    _add_channel(db, "hook", "webhook", {"url": receiver.url})
    expected_within, interval = 3.0, 1.0
    blocked = _schedule(
        database_url,
        {"seconds": 2, "expected_within": expected_within},
        {"callable": "tests.support.handler_funcs:ok"},
        {"channels": ["hook"], "on": ["missed"]},
        name="blocked",
    )
    client = redis.Redis.from_url(redis_url)
    # Another holder keeps the schedule's lock: no instance can run it, so nothing completes.
    client.set(schedule_lock_key(blocked, redis_prefix), "someone-else", ex=120)
    daemon = DaemonProcess(
        {**_notify_env(env), "NOTIFY_CHECK_INTERVAL": str(interval)},
        tmp_path / "d.log",
        instance_id="notify-m",
    ).start()
    try:
        first = wait_until(lambda: receiver.events("missed"), timeout=20, message="missed alert")[0]
    finally:
        daemon.terminate()
        client.delete(schedule_lock_key(blocked, redis_prefix))
        client.close()
    arrived = first.received_at
    occurrence = datetime.fromisoformat(first.json["occurrence"].replace("Z", "+00:00"))
    late = (arrived - occurrence).total_seconds()
    # Within expected_within + one check interval (+ the 0.5 s settle and delivery's round trip).
    assert late <= expected_within + interval + 1.0, late
    assert first.json["schedule"]["schedule_id"] == str(blocked)
    assert not executions(database_url, blocked) or all(
        r["status"] != "completed" for r in executions(database_url, blocked)
    )


def test_channel_cli_keeps_secrets_out_of_answers(
    env: dict[str, str], db: DatabaseConnection, receiver: Receiver
) -> None:
    cli_env = {**env, "NOTIFY_ALLOWED_HOSTS": "127.0.0.1"}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "scheduler.py", *argv],
            cwd=ROOT,
            env={**os.environ, **cli_env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    added = cli("channel", "add", "ops", "--kind", "webhook", "--url", receiver.url, "--json")
    assert added.returncode == 0, added.stderr
    refused = cli("channel", "add", "evil", "--kind", "webhook", "--url", "https://evil.test/x")
    assert refused.returncode == 2 and "NOTIFY_ALLOWED_HOSTS" in refused.stderr
    listed = cli("channel", "list", "--json")
    tested = cli("channel", "test", "ops", "--json")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert receiver.events("test")
    receiver.stop()
    failed = cli("channel", "test", "ops", "--json")
    assert failed.returncode == 1
    for answer in (added, refused, listed, tested, failed):
        assert "very-secret-token" not in answer.stdout + answer.stderr
    assert '"url": "http://127.0.0.1/***"' in listed.stdout
    removed = cli("channel", "remove", "ops")
    assert removed.returncode == 0
    assert cli("channel", "remove", "ops").returncode == 1
    assert ChannelStore(db).list() == []
