"""Migration 004: the audit trail, tags and notify, against real PostgreSQL."""

from __future__ import annotations

import getpass
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from database.migrations import MIGRATIONS_DIR, Migrator
from services.errors import DatabaseError, InvalidScheduleError, SchedulerError
from services.ops.housekeeping import DailyPruner, cleanup_key
from services.store.audit import AuditStore
from services.store.schedules import ScheduleRepository
from tests.integration.test_api_sync import answer, item, make_sync
from tests.integration.test_cli import cli, cli_json
from tests.integration.test_schema import MINIMAL_INSERT
from tests.support import services
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse
from tests.support.schedules import query, schedule_row

CONFIG_KEYS = {
    "domain_config_id",
    "domain",
    "name",
    "profile_id",
    "frequency",
    "time_config",
    "enabled",
    "job_type",
    "payload",
    "source",
    "tags",
    "notify",
}


def audit_rows(url: str, schedule_id: object | None = None) -> list[dict[str, Any]]:
    if schedule_id is None:
        return query(url, "SELECT * FROM schedule_audit ORDER BY audit_id")
    return query(
        url, "SELECT * FROM schedule_audit WHERE schedule_id = %s ORDER BY audit_id", (schedule_id,)
    )


def _notifications(conn: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3, stop_after=None)]


def test_004_applies_over_existing_rows_and_keeps_their_hashes(tmp_path: Path) -> None:
    services.require_postgres()
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("00[123]_*.sql")):
        shutil.copy(path, older)
    with services.empty_database() as url:
        Migrator(url, older).apply()
        (before,) = query(url, MINIMAL_INSERT)
        Migrator(url).apply()
        after = schedule_row(url, before["schedule_id"])
        assert after["tags"] == [] and after["notify"] == {}
        assert after["created_by"] is None and after["paused_at"] is None
        # the new hash function gives the old hash for a row without tags or notify
        assert after["config_hash"] == before["config_hash"]
        (rehash,) = query(url, "SELECT schedules_config_hash(s) AS h FROM schedules s")
        assert rehash["h"] == before["config_hash"]


def test_psql_writes_are_audited_as_the_session_user(database_url: str) -> None:
    (row,) = query(database_url, MINIMAL_INSERT)
    sid = row["schedule_id"]
    query(
        database_url,
        "UPDATE schedules SET time_config = %s, tags = '{nightly}' WHERE schedule_id = %s",
        (Jsonb({"hour": 3, "minute": 0}), sid),
    )
    query(database_url, "DELETE FROM schedules WHERE schedule_id = %s", (sid,))
    inserted, updated, deleted = audit_rows(database_url, sid)
    (user,) = query(database_url, "SELECT session_user AS u")
    assert {r["actor"] for r in (inserted, updated, deleted)} == {f"sql:{user['u']}"}
    assert inserted["action"] == "insert" and inserted["before"] is None
    assert set(inserted["after"]) == CONFIG_KEYS and set(inserted["changed_fields"]) == CONFIG_KEYS
    assert updated["action"] == "update"
    assert updated["changed_fields"] == ["tags", "time_config"]
    assert updated["before"]["time_config"] == {"hour": 2, "minute": 0}
    assert updated["after"]["time_config"] == {"hour": 3, "minute": 0}
    assert updated["before"]["tags"] == [] and updated["after"]["tags"] == ["nightly"]
    assert deleted["action"] == "delete" and deleted["after"] is None
    assert deleted["before"] == updated["after"]


def test_bookkeeping_and_non_configuration_writes_are_never_audited_or_notified(
    database_url: str,
) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as listener,
        psycopg.connect(database_url, autocommit=True) as writer,
    ):
        listener.execute("LISTEN schedules_changed")
        (row,) = query(database_url, MINIMAL_INSERT)
        sid = row["schedule_id"]
        assert _notifications(listener) == [str(sid)]
        writer.execute(
            "UPDATE schedules SET next_run = now(), last_run = now(), last_status = 'completed',"
            " last_error = NULL, last_fencing_token = 5 WHERE schedule_id = %s",
            (sid,),
        )
        writer.execute(
            "UPDATE schedules SET created_by = 'x', paused_note = 'n', paused_by = 'p', "
            "paused_at = now() WHERE schedule_id = %s",
            (sid,),
        )
        writer.execute("UPDATE schedules SET domain = domain WHERE schedule_id = %s", (sid,))
        assert _notifications(listener) == []
    assert [r["action"] for r in audit_rows(database_url, sid)] == ["insert"]
    assert schedule_row(database_url, sid)["config_hash"] == row["config_hash"]


def test_tags_and_notify_are_configuration(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN schedules_changed")
        (row,) = query(database_url, MINIMAL_INSERT)
        sid = row["schedule_id"]
        assert _notifications(listener) == [str(sid)]
        hashes = [row["config_hash"]]
        xids = [str(row["config_xid"])]
        for statement, value in (
            ("UPDATE schedules SET tags = %s WHERE schedule_id = %s", ["a", "b:c"]),
            ("UPDATE schedules SET notify = %s WHERE schedule_id = %s", Jsonb({"on": ["failed"]})),
        ):
            query(database_url, statement, (value, sid))
            assert _notifications(listener) == [str(sid)]
            current = schedule_row(database_url, sid)
            hashes.append(current["config_hash"])
            xids.append(str(current["config_xid"]))
    assert len(set(hashes)) == 3 and len(set(xids)) == 3
    changed = [r["changed_fields"] for r in audit_rows(database_url, sid)[1:]]
    assert changed == [["tags"], ["notify"]]


@pytest.mark.parametrize(
    "tags",
    [["has space"], [""], ["x" * 65], ["ok", None], ["é"], [["nested"]]],
)
def test_the_database_refuses_bad_tags_naming_the_constraint(
    db: DatabaseConnection, tags: list[Any]
) -> None:
    (row,) = db.fetch_all(MINIMAL_INSERT)
    with pytest.raises(DatabaseError) as info:
        db.execute(
            "UPDATE schedules SET tags = %s WHERE schedule_id = %s", (tags, row["schedule_id"])
        )
    assert info.value.constraint == "schedules_tags_valid"
    assert "schedules_tags_valid" in str(info.value)


def test_the_database_refuses_a_notify_that_is_not_an_object(db: DatabaseConnection) -> None:
    (row,) = db.fetch_all(MINIMAL_INSERT)
    with pytest.raises(DatabaseError) as info:
        db.execute(
            "UPDATE schedules SET notify = '[]' WHERE schedule_id = %s", (row["schedule_id"],)
        )
    assert info.value.constraint == "schedules_notify_is_object"


def test_repository_writes_carry_tags_notify_and_the_actor(
    db: DatabaseConnection, database_url: str
) -> None:
    repo = ScheduleRepository(db)
    sid = repo.create_schedule(
        uuid.uuid4(),
        "example.com",
        "daily",
        {"hour": 1},
        tags=["team:web", "nightly", "nightly"],
        notify={"channels": ["ops"]},
        actor="api:deploy",
    )
    schedule = repo.require_schedule(sid)
    assert schedule.tags == ("team:web", "nightly")
    assert schedule.notify == {"channels": ["ops"]} and schedule.created_by == "api:deploy"
    assert [s.schedule_id for s in repo.list_schedules(tags=["nightly", "team:web"])] == [sid]
    assert repo.list_schedules(tags=["nightly", "other"]) == []
    repo.update_schedule(sid, tags=["weekly"], actor="api:deploy")
    repo.disable_schedule(sid, actor="api:other")
    # a later write on the same pooled connection without an actor is not theirs
    repo.update_schedule(sid, name="renamed")
    repo.delete_schedule(sid, actor="api:deploy")
    trail = audit_rows(database_url, sid)
    (user,) = query(database_url, "SELECT session_user AS u")
    assert [(r["action"], r["actor"], r["changed_fields"]) for r in trail] == [
        ("insert", "api:deploy", sorted(CONFIG_KEYS)),
        ("update", "api:deploy", ["tags"]),
        ("update", "api:other", ["enabled"]),
        ("update", f"sql:{user['u']}", ["name"]),
        ("delete", "api:deploy", sorted(CONFIG_KEYS)),
    ]
    with pytest.raises(InvalidScheduleError, match="each tag must be"):
        repo.create_schedule(uuid.uuid4(), "example.com", "daily", {"hour": 1}, tags=["a b"])
    with pytest.raises(InvalidScheduleError, match="notify must be a JSON object"):
        repo.create_schedule(uuid.uuid4(), "example.com", "daily", {"hour": 1}, notify=[])  # type: ignore[arg-type]


def test_cli_writes_are_audited_as_the_os_user(env: dict[str, str], database_url: str) -> None:
    created = cli_json(
        env,
        "add",
        "--domain-config-id",
        str(uuid.uuid4()),
        "--domain",
        "example.com",
        "--frequency",
        "daily",
        "--time-config",
        '{"hour": 2}',
        "--tag",
        "nightly",
        "--tag",
        "team:web",
        "--notify",
        '{"channels": ["ops"], "on": ["failed"]}',
    )
    sid = created["schedule_id"]
    assert created["created_by"] == f"cli:{getpass.getuser()}"
    assert created["tags"] == ["nightly", "team:web"]
    assert created["notify"] == {"channels": ["ops"], "on": ["failed"]}
    updated = cli_json(env, "update", sid, "--tag", "weekly")
    assert updated["tags"] == ["weekly"]
    assert [s["schedule_id"] for s in cli_json(env, "list", "--tag", "weekly")] == [sid]
    cli_json(env, "disable", sid)
    cli_json(env, "enable", sid)
    cli_json(env, "delete", sid)
    trail = audit_rows(database_url, sid)
    actor = f"cli:{getpass.getuser()}"
    assert [(r["action"], r["actor"]) for r in trail] == [
        ("insert", actor),
        ("update", actor),
        ("update", actor),
        ("update", actor),
        ("delete", actor),
    ]
    assert [r["changed_fields"] for r in trail[1:4]] == [["tags"], ["enabled"], ["enabled"]]
    # `audit --schedule` shows the same trail, newest first (it outlives the deleted row).
    shown = cli_json(env, "audit", "--schedule", sid)
    assert [(e["action"], e["actor"]) for e in shown] == [(r["action"], r["actor"]) for r in trail][
        ::-1
    ]
    assert shown[0]["before"]["tags"] == ["weekly"] and shown[0]["after"] is None
    assert len(cli_json(env, "audit", "--actor", actor, "--hours", "1", "--limit", "2")) == 2
    assert cli_json(env, "audit", "--actor", "sync") == []


def test_cli_refuses_a_bad_tag_as_a_usage_error(env: dict[str, str]) -> None:
    result = cli(env, "list", "--tag", "bad tag")
    assert result.returncode == 2 and "is not a tag" in result.stderr


def test_sync_writes_are_audited_as_sync(db: DatabaseConnection, database_url: str) -> None:
    with RecordingHTTPServer(ScriptedResponse(200, answer(item("abc-1")))) as server:
        make_sync(db, server.url).sync()
        server.enqueue(ScriptedResponse(200, answer(item("abc-1", hour=5))))
        make_sync(db, server.url).sync()
        make_sync(db, server.url).sync(dry_run=True)
    trail = audit_rows(database_url)
    assert [(r["action"], r["actor"]) for r in trail] == [("insert", "sync"), ("update", "sync")]
    assert trail[1]["changed_fields"] == ["time_config"]


def test_audit_store_pages_newest_first_filters_and_prunes(
    db: DatabaseConnection, database_url: str
) -> None:
    repo = ScheduleRepository(db)
    first = repo.create_schedule(uuid.uuid4(), "a.com", "daily", {"hour": 1}, actor="cli:ann")
    second = repo.create_schedule(uuid.uuid4(), "b.com", "daily", {"hour": 1}, actor="cli:bob")
    for hour in range(2, 7):
        repo.update_schedule(first, time_config={"hour": hour}, actor="cli:ann")
    store = AuditStore(db)
    seen: list[int] = []
    cursor = None
    while True:
        items, cursor = store.list(limit=3, cursor=cursor)
        seen += [i.audit_id for i in items]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == 7
    mine, more = store.list(schedule_id=second)
    assert [(i.action, i.actor) for i in mine] == [("insert", "cli:bob")] and more is None
    ann, _ = store.list(actor="cli:ann", limit=50)
    assert len(ann) == 6 and all(i.schedule_id == first for i in ann)
    with pytest.raises(SchedulerError, match="cursor"):
        store.list(cursor="not-a-cursor!")
    with pytest.raises(SchedulerError, match="limit"):
        store.list(limit=0)
    query(
        database_url,
        "UPDATE schedule_audit SET changed_at = now() - interval '400 days' WHERE actor = %s",
        ("cli:ann",),
    )
    assert store.prune(365, batch_size=4) == 6
    assert [r["actor"] for r in audit_rows(database_url)] == ["cli:bob"]
    assert store.prune(365) == 0


def test_the_daily_audit_prune_runs_on_one_instance_a_day(
    db: DatabaseConnection, database_url: str, redis_url: str, redis_prefix: str
) -> None:
    ScheduleRepository(db).create_schedule(uuid.uuid4(), "a.com", "daily", {"hour": 1})
    query(database_url, "UPDATE schedule_audit SET changed_at = now() - interval '30 days'")
    client = redis.Redis.from_url(redis_url)
    try:
        pruners = [
            DailyPruner(
                "audit",
                AuditStore(db).prune,
                client,
                retention_days=7,
                instance_id=name,
                prefix=redis_prefix,
            )
            for name in ("a", "b")
        ]
        pruners[0].step()
        assert audit_rows(database_url) == []
        ScheduleRepository(db).create_schedule(uuid.uuid4(), "b.com", "daily", {"hour": 1})
        query(database_url, "UPDATE schedule_audit SET changed_at = now() - interval '30 days'")
        pruners[1].step()  # the day's prune was taken by "a"
        assert len(audit_rows(database_url)) == 1
        assert client.get(cleanup_key("audit", redis_prefix)) == b"a"
    finally:
        client.close()
