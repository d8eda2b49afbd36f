"""ScheduleWatcher against real PostgreSQL: every edit seen, only what changed touched."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.config import Settings
from services.enhanced_scheduler import EnhancedScheduler
from services.model.records import NextRunWrite
from tests.integration.test_engine import daemon, executions, insert_schedule, schedule_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def sql(url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)


@pytest.fixture
def scheduler(settings: Settings) -> Iterator[EnhancedScheduler]:
    """An in-process scheduler whose watcher is driven by hand (no threads started)."""
    instance = EnhancedScheduler(settings=settings)
    instance.jobs.start(paused=True)
    instance.watcher.initial_load()
    yield instance
    instance.jobs.shutdown()
    instance.db.close()
    instance.redis.close()


def job_of(s: EnhancedScheduler, schedule_id: uuid.UUID) -> Any:
    return s.jobs.get_job(str(schedule_id))


def stored_job(s: EnhancedScheduler, schedule_id: uuid.UUID) -> Any:
    """What the job store holds for a schedule (a Job is built from it on each lookup, so
    "untouched" means this object is still the same one)."""
    return s.jobs.store._jobs.get(str(schedule_id))


def test_every_config_column_edit_is_applied_and_unrelated_jobs_are_untouched(
    database_url: str, scheduler: EnhancedScheduler
) -> None:
    target = insert_schedule(database_url, "daily", {"hour": 2})
    bystander = insert_schedule(database_url, "daily", {"hour": 3})
    profile = uuid.uuid4()
    sql(database_url, "INSERT INTO scan_profiles (profile_id, name) VALUES (%s, 'p')", (profile,))
    assert scheduler.watcher.incremental_pass()["added"] == 2
    bystander_job = stored_job(scheduler, bystander)
    assert bystander_job is not None
    edits = [
        ("domain = 'other.com'", None),
        ("name = 'renamed'", None),
        ("domain_config_id = gen_random_uuid()", None),
        ("profile_id = %s", profile),
        ("frequency = 'hourly', time_config = '{\"minute\": 5}'", None),
        ("time_config = '{\"minute\": 6}'", None),
        ("job_type = 'command'", None),
        ('payload = \'{"argv": ["echo"]}\'', None),
        ("source = 'api'", None),
    ]
    for assignment, param in edits:
        params = (param, target) if param is not None else (target,)
        sql(database_url, f"UPDATE schedules SET {assignment} WHERE schedule_id = %s", params)
        outcome = scheduler.watcher.incremental_pass()
        assert outcome == {"updated": 1}, (assignment, outcome)
        loaded = scheduler.loader.get(target)
        assert loaded is not None
        assert loaded.schedule.config_hash == schedule_row(database_url, target)["config_hash"]
        assert stored_job(scheduler, bystander) is bystander_job
    assert scheduler.loader.get(target).schedule.frequency == "hourly"  # type: ignore[union-attr]

    sql(database_url, "UPDATE schedules SET enabled = false WHERE schedule_id = %s", (target,))
    assert scheduler.watcher.incremental_pass() == {"removed": 1}
    assert job_of(scheduler, target) is None
    assert schedule_row(database_url, target)["next_run"] is None
    sql(database_url, "UPDATE schedules SET enabled = true WHERE schedule_id = %s", (target,))
    assert scheduler.watcher.incremental_pass() == {"added": 1}
    sql(database_url, "DELETE FROM schedules WHERE schedule_id = %s", (target,))
    assert scheduler.watcher.incremental_pass() == {"removed": 1}
    assert job_of(scheduler, target) is None
    assert stored_job(scheduler, bystander) is bystander_job

    # The daemon's own writes are not edits.
    sql(
        database_url,
        "UPDATE schedules SET last_run = now(), last_status = 'completed', "
        "next_run = now() + interval '1 day', last_error = 'x'",
    )
    assert scheduler.watcher.incremental_pass() == {}
    assert scheduler.watcher.full_pass() == {}


def test_a_transaction_begun_before_a_pass_and_committed_after_it_is_still_seen(
    database_url: str, scheduler: EnhancedScheduler
) -> None:
    row = insert_schedule(database_url, "daily", {"hour": 2})
    scheduler.watcher.incremental_pass()
    with psycopg.connect(database_url) as slow:
        # A long transaction: its now() (and so updated_at) is from before the next pass.
        slow.execute("SELECT now()")
        time.sleep(0.05)
        slow.execute(
            "UPDATE schedules SET time_config = '{\"hour\": 4}' WHERE schedule_id = %s", (row,)
        )
        assert scheduler.watcher.incremental_pass() == {}  # not committed yet: invisible
        slow.commit()
    assert scheduler.watcher.incremental_pass() == {"updated": 1}
    assert scheduler.loader.get(row).schedule.time_config == {"hour": 4}  # type: ignore[union-attr]
    assert scheduler.watcher.incremental_pass() == {}  # and only once


def test_invalid_rows_get_their_reason_once_and_are_scheduled_when_fixed(
    database_url: str, scheduler: EnhancedScheduler
) -> None:
    row = insert_schedule(database_url, "weekly", {"day": "funday", "hour": 2})
    assert scheduler.watcher.incremental_pass() == {"invalid": 1}
    marked = schedule_row(database_url, row)
    assert marked["last_status"] == "invalid"
    assert "time_config.day" in marked["last_error"] and "funday" in marked["last_error"]
    assert scheduler.watcher.full_pass() == {}  # not re-marked every pass
    assert schedule_row(database_url, row)["updated_at"] == marked["updated_at"]
    sql(
        database_url,
        'UPDATE schedules SET time_config = \'{"day": "Mon", "hour": 2}\' WHERE schedule_id = %s',
        (row,),
    )
    assert scheduler.watcher.incremental_pass() == {"added": 1}
    fixed = schedule_row(database_url, row)
    assert fixed["last_status"] is None and fixed["last_error"] is None
    assert fixed["next_run"] is not None and job_of(scheduler, row) is not None


def test_a_once_in_the_past_is_marked_expired(
    database_url: str, scheduler: EnhancedScheduler
) -> None:
    row = insert_schedule(database_url, "once", {"run_at": "2020-01-01T00:00:00Z"})
    assert scheduler.watcher.incremental_pass() == {"expired": 1}
    assert schedule_row(database_url, row)["last_status"] == "expired"


def test_cron_rows_sharing_an_h_text_get_their_own_minutes_and_past_years_expire(
    database_url: str, settings: Settings
) -> None:
    config = {"expression": "H 2 * * *", "timezone": "Europe/Berlin"}
    rows = [insert_schedule(database_url, "cron", config) for _ in range(6)]
    past = insert_schedule(database_url, "cron", {"expression": "0 0 12 * * ? 2020"})
    # A fresh start-up load: the rows share one time_config text, decoded and parsed once.
    instance = EnhancedScheduler(settings=settings)
    instance.jobs.start(paused=True)
    try:
        instance.watcher.initial_load()
        for row in rows:
            digest = hashlib.sha256(f"{row}|minute".encode()).digest()
            minute = int.from_bytes(digest[:8], "big") % 60  # the documented draw
            # The start-up load writes next_run from a thread, after scheduling the jobs.
            next_run = wait_until(lambda row=row: schedule_row(database_url, row)["next_run"])
            local = next_run.astimezone(ZoneInfo("Europe/Berlin"))
            assert (local.hour, local.minute) in ((2, minute), (3, 0))  # (3, 0): in a DST gap
            assert job_of(instance, row).next_run_time == local
        assert schedule_row(database_url, past)["last_status"] == "expired"
        assert job_of(instance, past) is None
    finally:
        instance.jobs.shutdown()
        instance.db.close()
        instance.redis.close()


def test_edits_reach_a_live_daemon_through_notify_and_survive_a_killed_listener(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    with daemon(env, tmp_path, SCHEDULE_CHECK_INTERVAL="2", LOG_LEVEL="DEBUG") as proc:
        proc.wait_for_event("watcher.listening")
        row = insert_schedule(database_url, "daily", {"hour": 2})
        edited = time.monotonic()
        proc.wait_for_event("schedule.loaded", timeout=3, schedule_id=str(row))
        latency = time.monotonic() - edited
        assert latency < 3
        # Kill the LISTEN connection: the next interval pass applies the edit anyway.
        sql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%%' AND datname = current_database()",
        )
        sql(
            database_url,
            "UPDATE schedules SET time_config = '{\"hour\": 5}' WHERE schedule_id = %s",
            (row,),
        )
        proc.wait_for_event("schedule.updated", timeout=6, schedule_id=str(row))
        wait_until(
            lambda: len([e for e in proc.events() if e.get("event") == "watcher.listening"]) >= 2,
            10,
            message="listener reconnected",
        )
        sql(database_url, "DELETE FROM schedules WHERE schedule_id = %s", (row,))
        wait_until(
            lambda: any(
                e.get("event") == "watcher.pass" and e.get("changes", {}).get("removed")
                for e in proc.events()
            ),
            5,
            message="deletion applied",
        )


def test_edits_around_a_fire_time_never_lose_or_repeat_the_occurrence(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    target = insert_schedule(
        database_url,
        "interval",
        {"seconds": 4},
        job_type="command",
        payload={"argv": ["echo", "a"]},
        created_at=now - timedelta(seconds=40),
    )
    other = insert_schedule(database_url, "daily", {"hour": 2})
    with daemon(env, tmp_path, COMMAND_ALLOWLIST="echo", SCHEDULE_CHECK_INTERVAL="1") as proc:
        proc.wait_for_event("watcher.listening")
        # The next fire times are now + 4k; edit around the third one from now.
        fire = now + timedelta(seconds=8)
        for offset, statement in [
            (-1.0, "UPDATE schedules SET payload = %s WHERE schedule_id = %s"),
            (0.0, "UPDATE schedules SET payload = %s WHERE schedule_id = %s"),
            (0.5, "UPDATE schedules SET payload = %s WHERE schedule_id = %s"),
        ]:
            moment = fire + timedelta(seconds=offset)
            time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
            for sid in (other, target):
                sql(database_url, statement, (Jsonb({"argv": ["echo", str(offset)]}), sid))
        wait_until(
            lambda: any(
                r["scheduled_for"] == fire + timedelta(seconds=4)
                for r in executions(database_url, target)
            ),
            10,
            message="the occurrence after the edits ran",
        )
    rows = executions(database_url, target)
    at_fire = [r for r in rows if r["scheduled_for"] == fire]
    assert len(at_fire) == 1 and at_fire[0]["status"] == "completed", rows
    occurrences = [r["scheduled_for"] for r in rows]
    assert len(occurrences) == len(set(occurrences))


def test_a_once_just_past_but_within_its_grace_still_fires(
    database_url: str, scheduler: EnhancedScheduler
) -> None:
    run_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    row = insert_schedule(database_url, "once", {"run_at": run_at.isoformat()})
    assert scheduler.watcher.incremental_pass() == {"added": 1}
    assert job_of(scheduler, row).next_run_time == run_at


def test_a_next_run_computed_before_an_edit_never_overwrites_the_edits_own(
    scheduler: EnhancedScheduler, database_url: str
) -> None:
    """The start-up load writes next_run in the background; a row edited meanwhile keeps the
    next_run its own pass wrote (found by bench_watcher's startup_edit case)."""
    sid = insert_schedule(database_url, "daily", {"hour": 3})
    stale = schedule_row(database_url, sid)
    sql(
        database_url,
        "UPDATE schedules SET time_config = %s WHERE schedule_id = %s",
        (Jsonb({"hour": 5}), sid),
    )
    assert scheduler.watcher.incremental_pass() == {"added": 1}
    applied = schedule_row(database_url, sid)["next_run"]
    assert applied is not None and applied.hour == 5
    old_next = stale["next_run"] or applied.replace(hour=3)
    written = scheduler.schedules.set_next_runs([NextRunWrite(sid, old_next, stale["config_hash"])])
    assert written == 0
    assert schedule_row(database_url, sid)["next_run"] == applied
