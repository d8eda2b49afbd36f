"""JobHistory against real PostgreSQL: listings, filters, statistics and batched cleanup.

Rows are inserted with plain SQL, their times relative to the database's own clock.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any
from uuid import UUID

import pytest

import services.store.history as job_history_module
from database.connection import DatabaseConnection, Params
from services.errors import SchedulerError
from services.process_wide import ProcessWide
from services.store.history import JobHistory, get_job_history

HOUR = 3600.0
DAY = 86400.0

INSERT_SCHEDULE = """
INSERT INTO schedules (domain_config_id, domain, frequency, time_config)
VALUES (gen_random_uuid(), 'example.com', 'daily', '{"hour": 2}')
RETURNING schedule_id
"""

# `ago`/`completed_ago` are seconds before now(); a NULL completed_ago leaves completed_at NULL.
INSERT_EXECUTION = """
INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, started_at,
                            completed_at, duration_seconds, scheduled_for)
VALUES (%(schedule_id)s, 'job', 'example.com', gen_random_uuid(), %(status)s,
        now() - make_interval(secs => %(ago)s::float8),
        now() - make_interval(secs => %(completed_ago)s::float8),
        %(duration)s, now() - make_interval(secs => %(ago)s::float8))
RETURNING execution_id
"""

# Many old finished rows at once: statuses cycle through every final one, skipped included.
INSERT_OLD_FINISHED = """
INSERT INTO job_executions (job_id, domain, domain_config_id, status, started_at, completed_at,
                            duration_seconds, scheduled_for)
SELECT 'old', 'example.com', gen_random_uuid(),
       (ARRAY['completed', 'failed', 'timed_out', 'abandoned', 'cancelled', 'skipped'])[1 + g %% 6],
       now() - interval '100 days' - g * interval '1 second',
       now() - interval '100 days' - g * interval '1 second' + interval '1 second',
       1.0,
       now() - interval '100 days' - g * interval '1 second'
FROM generate_series(1, %(count)s) AS g
"""


def add_schedule(db: DatabaseConnection) -> UUID:
    schedule_id: UUID = db.fetch_value(INSERT_SCHEDULE)
    return schedule_id


def add_execution(
    db: DatabaseConnection,
    status: str,
    *,
    ago: float = 60.0,
    duration: float | None = None,
    schedule_id: UUID | None = None,
    completed_ago: float | None = None,
) -> UUID:
    if completed_ago is None and status != "running":
        completed_ago = ago - (duration or 0.0)
    execution_id: UUID = db.fetch_value(
        INSERT_EXECUTION,
        {
            "schedule_id": schedule_id,
            "status": status,
            "ago": ago,
            "completed_ago": completed_ago,
            "duration": duration,
        },
    )
    return execution_id


def ids(executions: list[Any]) -> list[UUID]:
    return [e.execution_id for e in executions]


@pytest.fixture
def history(db: DatabaseConnection) -> JobHistory:
    return JobHistory(db)


def test_recent_executions_are_newest_first_within_the_window(
    db: DatabaseConnection, history: JobHistory
) -> None:
    newest = add_execution(db, "completed", ago=10, duration=1.0)
    middle = add_execution(db, "running", ago=2 * HOUR)
    oldest = add_execution(db, "failed", ago=20 * HOUR, duration=2.0)
    add_execution(db, "completed", ago=30 * HOUR, duration=1.0)

    recent = history.get_recent_executions()
    assert ids(recent) == [newest, middle, oldest]
    assert recent[0].status == "completed"
    assert recent[0].duration_seconds == 1.0
    assert recent[1].completed_at is None

    assert ids(history.get_recent_executions(hours=1)) == [newest]
    assert ids(history.get_recent_executions(hours=5 / HOUR)) == []
    assert ids(history.get_recent_executions(24, limit=2)) == [newest, middle]
    assert len(history.get_recent_executions(hours=48)) == 4


def test_executions_by_schedule_only_that_schedule(
    db: DatabaseConnection, history: JobHistory
) -> None:
    mine, other = add_schedule(db), add_schedule(db)
    runs = [add_execution(db, "completed", ago=i * HOUR, schedule_id=mine) for i in range(1, 6)]
    add_execution(db, "completed", ago=30, schedule_id=other)
    add_execution(db, "completed", ago=40)

    assert ids(history.get_executions_by_schedule(mine)) == runs
    assert ids(history.get_executions_by_schedule(str(mine), limit=2)) == runs[:2]
    assert ids(history.get_executions_by_schedule(mine, limit=None)) == runs
    assert history.get_executions_by_schedule(uuid.uuid4()) == []
    # History outlives its schedule: the rows stay, no longer attached to it.
    db.execute("DELETE FROM schedules WHERE schedule_id = %s", (mine,))
    assert history.get_executions_by_schedule(mine) == []
    assert history.get_execution(runs[0]) is not None


def test_find_executions_combines_filters(db: DatabaseConnection, history: JobHistory) -> None:
    a, b = add_schedule(db), add_schedule(db)
    a_failed_recent = add_execution(db, "failed", ago=HOUR, schedule_id=a)
    a_done = add_execution(db, "completed", ago=2 * HOUR, schedule_id=a)
    a_failed_old = add_execution(db, "failed", ago=50 * HOUR, schedule_id=a)
    b_failed = add_execution(db, "failed", ago=3 * HOUR, schedule_id=b)
    skipped = add_execution(db, "skipped", ago=4 * HOUR)

    everything = [a_failed_recent, a_done, b_failed, skipped, a_failed_old]
    assert ids(history.find_executions()) == everything
    assert ids(history.find_executions(limit=2)) == everything[:2]
    assert ids(history.find_executions(schedule_id=str(a))) == [
        a_failed_recent,
        a_done,
        a_failed_old,
    ]
    assert ids(history.find_executions(status="failed")) == [
        a_failed_recent,
        b_failed,
        a_failed_old,
    ]
    assert ids(history.find_executions(hours=24)) == everything[:4]
    assert ids(history.find_executions(schedule_id=a, status="failed", hours=24)) == [
        a_failed_recent
    ]
    assert history.find_executions(status="cancelled") == []


def test_get_execution_and_running_executions(db: DatabaseConnection, history: JobHistory) -> None:
    schedule = add_schedule(db)
    done = add_execution(db, "completed", ago=50, duration=3.5, schedule_id=schedule)
    older_running = add_execution(db, "running", ago=40 * HOUR)
    newer_running = add_execution(db, "running", ago=20)

    execution = history.get_execution(str(done))
    assert execution is not None
    assert execution.execution_id == done
    assert execution.schedule_id == schedule
    assert execution.status == "completed"
    assert execution.duration_seconds == 3.5
    assert execution.attempt == 1
    assert execution.trigger == "schedule"
    assert history.get_execution(uuid.uuid4()) is None
    assert ids(history.get_running_executions()) == [older_running, newer_running]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.get_execution("nope"), "execution id 'nope' is not a UUID"),
        (lambda h: h.get_executions_by_schedule("x"), "schedule id 'x' is not a UUID"),
        (lambda h: h.find_executions(status="done"), "status 'done' is not one of"),
        (lambda h: h.find_executions(limit=0), "limit must be a positive integer"),
        (lambda h: h.get_recent_executions(hours=-1), "hours must be a finite number >= 0"),
        (lambda h: h.get_execution_statistics(days=float("nan")), "days must be a finite"),
        (lambda h: h.cleanup_old_executions(batch_size=0), "batch_size must be a positive"),
    ],
)
def test_bad_arguments_raise_a_scheduler_error(
    history: JobHistory, call: Any, message: str
) -> None:
    with pytest.raises(SchedulerError, match=message):
        call(history)


def test_statistics_on_a_known_set(db: DatabaseConnection, history: JobHistory) -> None:
    a = add_schedule(db)
    for i, duration in enumerate((1.0, 2.0), start=1):
        add_execution(db, "completed", ago=i * HOUR, duration=duration, schedule_id=a)
    add_execution(db, "failed", ago=3 * HOUR, duration=4.0, schedule_id=a)
    add_execution(db, "completed", ago=4 * HOUR, duration=3.0)
    add_execution(db, "failed", ago=5 * HOUR)  # no duration recorded
    add_execution(db, "timed_out", ago=6 * HOUR, duration=10.0)
    add_execution(db, "abandoned", ago=7 * HOUR)
    add_execution(db, "cancelled", ago=8 * HOUR, duration=0.5)
    # Not runs: neither counted nor part of the durations.
    add_execution(db, "skipped", ago=9 * HOUR, duration=50.0)
    add_execution(db, "skipped", ago=10 * HOUR)
    add_execution(db, "running", ago=11 * HOUR)
    # Outside a 7-day window.
    add_execution(db, "completed", ago=8 * DAY, duration=100.0)

    stats = history.get_execution_statistics()
    assert stats == {
        "total_executions": 8,
        "successful": 3,
        "failed": 4,
        "success_rate": 37.5,
        "avg_duration": pytest.approx(20.5 / 6),
        "min_duration": 0.5,
        "max_duration": 10.0,
        "cancelled": 1,
        "skipped": 2,
        "running": 1,
        "by_status": {
            "queued": 0,
            "running": 1,
            "completed": 3,
            "failed": 2,
            "timed_out": 1,
            "abandoned": 1,
            "cancelled": 1,
            "skipped": 2,
        },
    }

    wider = history.get_execution_statistics(days=8.5)
    assert (wider["total_executions"], wider["successful"], wider["max_duration"]) == (9, 4, 100.0)
    assert wider["success_rate"] == 44.44  # 4/9, rounded to 2 decimals

    one = history.get_execution_statistics(schedule_id=str(a))
    assert one["total_executions"] == 3
    assert (one["successful"], one["failed"]) == (2, 1)
    assert one["success_rate"] == 66.67  # 2/3, rounded to 2 decimals
    assert (one["avg_duration"], one["min_duration"], one["max_duration"]) == (
        pytest.approx(7.0 / 3),
        1.0,
        4.0,
    )


def test_statistics_with_no_runs(db: DatabaseConnection, history: JobHistory) -> None:
    empty = history.get_execution_statistics()
    assert {k: empty[k] for k in list(empty)[:7]} == {
        "total_executions": 0,
        "successful": 0,
        "failed": 0,
        "success_rate": 0.0,
        "avg_duration": None,
        "min_duration": None,
        "max_duration": None,
    }
    # Only rows that are not runs (yet): still no runs, no durations.
    add_execution(db, "skipped", ago=60, duration=5.0)
    add_execution(db, "running", ago=30)
    stats = history.get_execution_statistics()
    assert stats["total_executions"] == 0
    assert stats["success_rate"] == 0.0
    assert stats["avg_duration"] is None
    assert (stats["skipped"], stats["running"]) == (1, 1)


class CountingDatabase(DatabaseConnection):
    """The real pool, remembering how many rows each `execute` affected."""

    def __init__(self, url: str) -> None:
        super().__init__(url, min_size=1, max_size=2)
        self.rowcounts: list[int] = []

    def execute(self, query: str, params: Params = None) -> int:
        count = super().execute(query, params)
        self.rowcounts.append(count)
        return count


def test_cleanup_deletes_old_finished_rows_in_batches(
    db: DatabaseConnection, database_url: str
) -> None:
    db.execute(INSERT_OLD_FINISHED, {"count": 12_000})
    old_running = [add_execution(db, "running", ago=(100 + i) * DAY) for i in range(3)]
    recent = [add_execution(db, "completed", ago=i * DAY, duration=1.0) for i in range(1, 4)]
    # Started long ago but only finished (e.g. marked abandoned) recently: kept until it ages.
    late_finish = add_execution(db, "abandoned", ago=120 * DAY, completed_ago=DAY)
    kept = {*old_running, *recent, late_finish}

    counting = CountingDatabase(database_url)
    try:
        history = JobHistory(counting)
        assert history.cleanup_old_executions(days=90, batch_size=1000) == 12_000
        # Twelve full batches, then one that finds nothing left.
        assert counting.rowcounts == [1000] * 12 + [0]

        remaining = db.fetch_all("SELECT execution_id FROM job_executions")
        assert {row["execution_id"] for row in remaining} == kept

        counting.rowcounts.clear()
        assert history.cleanup_old_executions(days=90, batch_size=1000) == 0
        assert counting.rowcounts == [0]
    finally:
        counting.close()


def test_cleanup_with_a_partial_last_batch(db: DatabaseConnection, database_url: str) -> None:
    db.execute(INSERT_OLD_FINISHED, {"count": 2500})
    counting = CountingDatabase(database_url)
    try:
        assert JobHistory(counting).cleanup_old_executions(days=30, batch_size=1000) == 2500
        # A short batch means nothing was left: no extra round trip.
        assert counting.rowcounts == [1000, 1000, 500]
    finally:
        counting.close()
    assert db.fetch_value("SELECT count(*) FROM job_executions") == 0


def test_get_job_history_is_one_shared_instance(
    db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = ProcessWide(job_history_module._default_history)
    monkeypatch.setattr(job_history_module, "_history", fresh)
    monkeypatch.setattr(job_history_module, "get_db_connection", lambda: db)
    seen: list[JobHistory] = []
    threads = [threading.Thread(target=lambda: seen.append(get_job_history())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(seen) == 8
    assert all(h is seen[0] for h in seen)
    assert seen[0].db is db
    assert seen[0].get_recent_executions() == []
