"""`import-celery-beat` against a real django-celery-beat schema in a database of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.test_cli import cli, cli_json
from tests.support import services
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(120)

SCHEMA = Path(__file__).resolve().parents[1] / "support" / "beat_schema.sql"


@pytest.fixture
def beat_url(template_database: str) -> Iterator[str]:
    """An empty database holding django-celery-beat's tables and a few periodic tasks."""
    with services.empty_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text())  # type: ignore[arg-type]
            conn.execute(
                """
                INSERT INTO django_celery_beat_crontabschedule
                    (id, minute, hour, day_of_week, day_of_month, month_of_year, timezone)
                VALUES (1, '30', '2', '1-5', '*', '*', 'Europe/Berlin');
                INSERT INTO django_celery_beat_intervalschedule (id, every, period)
                VALUES (1, 90, 'seconds'), (2, 2, 'days');
                INSERT INTO django_celery_beat_clockedschedule (id, clocked_time)
                VALUES (1, '2027-01-15T08:00:00+00:00');
                INSERT INTO django_celery_beat_solarschedule (id, event, latitude, longitude)
                VALUES (1, 'sunrise', 52.52, 13.405);
                INSERT INTO django_celery_beat_periodictask
                    (name, task, args, kwargs, queue, enabled, one_off, crontab_id, interval_id,
                     clocked_id, solar_id)
                VALUES
                    ('nightly report', 'proj.tasks.report', '["daily"]', '{"email": true}',
                     'reports', true, false, 1, NULL, NULL, NULL),
                    ('poll feeds', 'proj.tasks.poll', '[]', '{}', NULL, true, false,
                     NULL, 1, NULL, NULL),
                    ('cleanup', 'proj.tasks.cleanup', '[]', '{}', NULL, false, false,
                     NULL, 2, NULL, NULL),
                    ('launch', 'proj.tasks.launch', '[1]', '{}', NULL, true, true,
                     NULL, NULL, 1, NULL),
                    ('dawn', 'proj.tasks.lights', '[]', '{}', NULL, true, false,
                     NULL, NULL, NULL, 1);
                """
            )
        yield url


def celery_rows(url: str) -> dict[str, dict[str, Any]]:
    rows = query(url, "SELECT * FROM schedules WHERE job_type = 'celery'")
    return {row["name"]: row for row in rows}


def test_dry_run_prints_the_plan_and_writes_nothing(
    env: dict[str, str], database_url: str, beat_url: str
) -> None:
    plan = cli_json(env, "import-celery-beat", "--dsn", beat_url, "--dry-run")
    assert plan["dry_run"] is True
    assert plan["counts"] == {"create": 4, "skipped": 1}
    by_name = {item["name"]: item for item in plan["items"]}
    assert by_name["nightly report"]["frequency"] == "cron"
    assert by_name["dawn"]["action"] == "skipped"
    assert "solar" in by_name["dawn"]["reason"]
    assert celery_rows(database_url) == {}
    # This environment allows no task: the plan says the daemons would refuse them.
    assert "CELERY_TASK_ALLOWLIST" in by_name["poll feeds"]["warning"]
    listed = cli_json(
        {**env, "CELERY_TASK_ALLOWLIST": "proj.tasks"},
        "import-celery-beat",
        "--dsn",
        beat_url,
        "--dry-run",
    )
    assert all("warning" not in item for item in listed["items"])
    text = cli(env, "import-celery-beat", "--dsn", beat_url, "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "dry run, would apply: create 4, skipped 1" in text.stdout
    assert celery_rows(database_url) == {}


def test_crontab_interval_and_clocked_rows_are_mapped_once(
    env: dict[str, str], database_url: str, beat_url: str
) -> None:
    first = cli_json(env, "import-celery-beat", "--dsn", beat_url, "--domain", "billing")
    assert first["counts"] == {"created": 4, "skipped": 1}
    rows = celery_rows(database_url)
    assert set(rows) == {"nightly report", "poll feeds", "cleanup", "launch"}
    nightly = rows["nightly report"]
    assert nightly["frequency"] == "cron"
    assert nightly["time_config"] == {"expression": "30 2 * * 1-5", "timezone": "Europe/Berlin"}
    assert nightly["payload"] == {
        "task": "proj.tasks.report",
        "args": ["daily"],
        "kwargs": {"email": True},
        "queue": "reports",
    }
    assert nightly["domain"] == "billing" and nightly["tags"] == ["celery-beat"]
    assert nightly["enabled"] is True and nightly["next_run"] is None  # the daemon computes it
    assert rows["poll feeds"]["frequency"] == "interval"
    assert rows["poll feeds"]["time_config"] == {"seconds": 90}
    assert rows["cleanup"]["time_config"] == {"hours": 48}
    assert rows["cleanup"]["enabled"] is False  # a disabled task stays disabled
    assert rows["launch"]["frequency"] == "once"
    assert rows["launch"]["time_config"] == {"run_at": "2027-01-15T08:00:00+00:00"}

    again = cli_json(env, "import-celery-beat", "--dsn", beat_url)
    assert again["counts"] == {"exists": 4, "skipped": 1}
    assert len(query(database_url, "SELECT 1 FROM schedules")) == 4

    with psycopg.connect(beat_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO django_celery_beat_periodictask (name, task, interval_id) "
            "VALUES ('new one', 'proj.tasks.new', 1)"
        )
    third = cli_json(env, "import-celery-beat", "--dsn", beat_url)
    assert third["counts"] == {"created": 1, "exists": 4, "skipped": 1}


def test_a_database_without_beat_tables_is_one_clear_error(
    env: dict[str, str], database_url: str
) -> None:
    result = cli(env, "import-celery-beat", "--dsn", database_url)
    assert result.returncode == 1
    assert "not a django-celery-beat database: missing table(s)" in result.stderr
