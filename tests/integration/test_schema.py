from __future__ import annotations

import uuid

import psycopg
import pytest

from database.connection import DatabaseConnection
from services.errors import DatabaseError

MINIMAL_INSERT = (
    "INSERT INTO schedules (domain_config_id, domain, frequency, time_config) "
    "VALUES (gen_random_uuid(), 'example.com', 'daily', '{\"hour\": 2, \"minute\": 0}') "
    "RETURNING *"
)


def _notifications(conn: psycopg.Connection[object]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3, stop_after=None)]


def test_a_plain_insert_fills_the_defaults(db: DatabaseConnection) -> None:
    row = db.fetch_one(MINIMAL_INSERT)
    assert row is not None
    assert isinstance(row["schedule_id"], uuid.UUID)
    assert row["enabled"] is True and row["source"] == "manual" and row["payload"] == {}
    assert row["job_type"] is None and row["created_at"] and row["updated_at"]
    assert row["config_hash"]


def test_config_updates_notify_and_daemon_writes_do_not(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as listener,
        psycopg.connect(database_url, autocommit=True) as writer,
    ):
        listener.execute("LISTEN schedules_changed")
        row = writer.execute(MINIMAL_INSERT).fetchone()
        assert row is not None
        schedule_id = str(row[0])
        assert _notifications(listener) == [schedule_id]
        before = writer.execute(
            "SELECT updated_at FROM schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()

        writer.execute(
            'UPDATE schedules SET time_config = \'{"hour": 3, "minute": 0}\' '
            "WHERE schedule_id = %s",
            (schedule_id,),
        )
        assert _notifications(listener) == [schedule_id]
        after = writer.execute(
            "SELECT updated_at FROM schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
        assert before is not None and after is not None and after[0] > before[0]

        writer.execute(
            "UPDATE schedules SET last_run = now(), last_status = 'completed', next_run = now(), "
            "last_error = NULL WHERE schedule_id = %s",
            (schedule_id,),
        )
        assert _notifications(listener) == []
        unchanged = writer.execute(
            "SELECT updated_at FROM schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
        assert unchanged == after

        writer.execute("DELETE FROM schedules WHERE schedule_id = %s", (schedule_id,))
        assert _notifications(listener) == [schedule_id]
        tombstones = writer.execute(
            "SELECT count(*) FROM schedule_tombstones WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
        assert tombstones == (1,)


def test_deleting_a_schedule_keeps_its_history(db: DatabaseConnection) -> None:
    row = db.fetch_one(MINIMAL_INSERT)
    assert row is not None
    db.execute(
        "INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, "
        "scheduled_for) VALUES (%(s)s, 'job', 'example.com', %(d)s, 'completed', now())",
        {"s": row["schedule_id"], "d": row["domain_config_id"]},
    )
    db.execute("DELETE FROM schedules WHERE schedule_id = %s", (row["schedule_id"],))
    kept = db.fetch_all("SELECT schedule_id, domain FROM job_executions")
    assert kept == [{"schedule_id": None, "domain": "example.com"}]


def test_one_row_per_occurrence_and_attempt(db: DatabaseConnection) -> None:
    row = db.fetch_one(MINIMAL_INSERT)
    assert row is not None
    insert = (
        "INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, "
        "scheduled_for, attempt) VALUES (%(s)s, 'j', 'd', %(d)s, 'running', "
        "'2026-01-01T00:00:00Z', 1)"
    )
    params = {"s": row["schedule_id"], "d": row["domain_config_id"]}
    db.execute(insert, params)
    with pytest.raises(DatabaseError) as info:
        db.execute(insert, params)
    assert info.value.constraint == "job_executions_occurrence_key"


def test_api_rows_are_unique_by_external_id(db: DatabaseConnection) -> None:
    external = uuid.uuid4()
    insert = (
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, source) "
        "VALUES (%(d)s, 'a.com', 'daily', '{\"hour\": 1}', %(source)s)"
    )
    db.execute(insert, {"d": external, "source": "api"})
    db.execute(insert, {"d": external, "source": "manual"})  # manual rows may share it
    with pytest.raises(DatabaseError) as info:
        db.execute(insert, {"d": external, "source": "api"})
    assert info.value.constraint == "schedules_api_domain_config_id_key"


def test_a_stale_fencing_token_is_refused_by_the_database(db: DatabaseConnection) -> None:
    row = db.fetch_one(MINIMAL_INSERT)
    assert row is not None
    update = "UPDATE schedules SET last_fencing_token = %(t)s WHERE schedule_id = %(s)s"
    db.execute(update, {"t": 7, "s": row["schedule_id"]})
    db.execute(update, {"t": 9, "s": row["schedule_id"]})
    with pytest.raises(DatabaseError) as info:
        db.execute(update, {"t": 8, "s": row["schedule_id"]})
    assert info.value.constraint == "schedules_fencing_monotonic"
    assert "stale fencing token 8" in str(info.value)
