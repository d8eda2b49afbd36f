"""The global pause (migration 006) and the per-schedule pause, against real PostgreSQL and Redis:
the stores, an in-process daemon (every way a run starts), daemon processes and the CLI."""

from __future__ import annotations

import getpass
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.config import load_settings
from services.engine.handlers import JobContext, register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from services.errors import DatabaseError, InvalidPauseRequest, ScheduleNotFound
from services.lock.keys import schedule_lock_key
from services.model.occurrence import Occurrence
from services.model.records import NOT_PAUSED
from services.model.vocabulary import RunTrigger
from services.store.run_requests import RunRequestStore
from services.store.scheduler_state import CHANNEL, SchedulerStateStore
from services.store.schedules import ScheduleRepository
from tests.integration.test_audit import audit_rows
from tests.integration.test_cli import cli, cli_json
from tests.support.daemon import Spawn, daemon_spawner
from tests.support.schedules import db_now, executions, query, schedule_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
NOTE = "database upgrade"
REASON = f"scheduler paused: {NOTE}"


def _notifications(conn: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in conn.notifies(timeout=0.3, stop_after=None)]


# -- the store ---------------------------------------------------------------------------------


def test_the_global_pause_round_trips_and_notifies(
    db: DatabaseConnection, database_url: str
) -> None:
    store = SchedulerStateStore(db)
    assert store.get() == NOT_PAUSED
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        paused = store.pause(f"  {NOTE} ", "cli:alice")
        assert _notifications(listener) == ["paused"]
        assert (paused.paused, paused.note, paused.paused_by) == (True, NOTE, "cli:alice")
        assert paused.paused_at is not None and store.get() == paused

        # Pausing while paused replaces the note and its author; the pause began when it began.
        again = store.pause("longer than planned", "cli:bob")
        assert (again.note, again.paused_by, again.paused_at) == (
            "longer than planned",
            "cli:bob",
            paused.paused_at,
        )
        resumed = store.resume()
        assert _notifications(listener) == ["paused", "resumed"]
    assert resumed == NOT_PAUSED and store.get() == NOT_PAUSED
    assert store.resume() == NOT_PAUSED  # resuming a running scheduler changes nothing

    for blank in ("", "   "):
        with pytest.raises(InvalidPauseRequest, match="needs a note"):
            store.pause(blank, "cli:alice")
    with pytest.raises(InvalidPauseRequest, match="who made it"):
        store.pause(NOTE, " ")
    assert store.get() == NOT_PAUSED


def test_the_state_is_one_coherent_row_whoever_writes_it(db: DatabaseConnection) -> None:
    store = SchedulerStateStore(db)
    with pytest.raises(DatabaseError) as second:
        db.execute("INSERT INTO scheduler_state (id) VALUES (false)")
    assert second.value.constraint == "scheduler_state_single_row"
    with pytest.raises(DatabaseError) as no_note:
        db.execute("UPDATE scheduler_state SET paused = true")
    assert no_note.value.constraint == "scheduler_state_paused_has_note"
    # By hand in psql: the trigger stamps paused_at, and a resume forgets the pause.
    db.execute("UPDATE scheduler_state SET paused = true, paused_note = 'by hand'")
    by_hand = store.get()
    assert by_hand.paused and by_hand.note == "by hand" and by_hand.paused_at is not None
    db.execute("UPDATE scheduler_state SET paused = false")
    assert store.get() == NOT_PAUSED
    # A deleted row reads as "not paused", and the next pause brings it back.
    db.execute("DELETE FROM scheduler_state")
    assert store.get() == NOT_PAUSED
    assert store.pause(NOTE, "cli:alice").paused and store.get().note == NOTE


# -- one schedule ------------------------------------------------------------------------------


def test_pausing_one_schedule_disables_it_with_a_note_and_audits_the_actor(
    db: DatabaseConnection, database_url: str
) -> None:
    repo = ScheduleRepository(db)
    sid = repo.create_schedule(uuid.uuid4(), "example.com", "daily", {"hour": 2})
    paused = repo.pause_schedule(sid, note="flaky target", by="api:ops", actor="api:ops")
    assert paused.enabled is False
    assert (paused.paused_note, paused.paused_by) == ("flaky target", "api:ops")
    row = schedule_row(database_url, sid)
    assert row["enabled"] is False and row["paused_note"] == "flaky target"
    assert row["paused_by"] == "api:ops" and row["paused_at"] == paused.paused_at
    assert row["paused_at"] is not None
    *_, audit = audit_rows(database_url, sid)
    assert (audit["action"], audit["actor"], audit["changed_fields"]) == (
        "update",
        "api:ops",
        ["enabled"],
    )
    assert "paused_note" not in audit["after"]  # not configuration

    # A new note on a paused schedule changes no configuration: no audit row.
    count = len(audit_rows(database_url, sid))
    renoted = repo.pause_schedule(sid, note=None, by="cli:bob", actor="cli:bob")
    assert renoted.paused_note is None and renoted.paused_by == "cli:bob"
    assert len(audit_rows(database_url, sid)) == count

    resumed = repo.resume_schedule(sid, actor="cli:bob")
    assert resumed.enabled is True
    assert (resumed.paused_note, resumed.paused_by, resumed.paused_at) == (None, None, None)
    *_, audit = audit_rows(database_url, sid)
    assert (audit["actor"], audit["changed_fields"], audit["after"]["enabled"]) == (
        "cli:bob",
        ["enabled"],
        True,
    )

    unknown = uuid.uuid4()
    with pytest.raises(ScheduleNotFound):
        repo.pause_schedule(unknown, note="x", by="cli:bob")
    with pytest.raises(ScheduleNotFound):
        repo.resume_schedule(unknown)
    with pytest.raises(InvalidPauseRequest):
        repo.pause_schedule(sid, note="x", by="")


# -- an in-process daemon: every way a run starts ----------------------------------------------


class Calls:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.schedules: list[UUID] = []

    def __call__(self, ctx: JobContext) -> dict[str, Any]:
        with self.lock:
            self.schedules.append(ctx.schedule_id)
        return {}


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def handler_name(calls: Calls) -> str:
    name = f"pause-test-{uuid.uuid4().hex[:8]}"
    register_python_handler(name, calls)
    return name


def insert_python_schedule(url: str, handler: str, **columns: Any) -> UUID:
    """An hourly interval schedule (it never fires by itself during a test) running `handler`."""
    (row,) = query(
        url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
        "payload, created_at, next_run) VALUES (gen_random_uuid(), 'example.com', 'interval', "
        "%(config)s, 'python', %(payload)s, coalesce(%(created_at)s, now()), %(next_run)s) "
        "RETURNING schedule_id",
        {
            "config": Jsonb({"seconds": 3600}),
            "payload": Jsonb({"callable": handler}),
            "created_at": columns.get("created_at"),
            "next_run": columns.get("next_run"),
        },
    )
    schedule_id: UUID = row["schedule_id"]
    return schedule_id


@pytest.fixture
def make_daemon(env: dict[str, str]) -> Iterator[Any]:
    made: list[EnhancedScheduler] = []

    def make() -> EnhancedScheduler:
        settings = load_settings(
            {**env, "INSTANCE_ID": "pause-test", "SHUTDOWN_TIMEOUT": "1", "MAX_WORKERS": "2"}
        )
        instance = EnhancedScheduler(settings=settings)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.shutdown()


def only_row(url: str, schedule_id: UUID) -> dict[str, Any]:
    rows = wait_until(lambda: executions(url, schedule_id), 10, message=f"a row of {schedule_id}")
    assert len(rows) == 1, rows
    return rows[0]


def test_while_paused_every_way_to_start_a_run_records_a_skip_and_takes_no_lock(
    make_daemon: Any,
    calls: Calls,
    handler_name: str,
    database_url: str,
    db: DatabaseConnection,
    redis_url: str,
    redis_prefix: str,
) -> None:
    now = db_now(database_url).replace(microsecond=0)
    # Missed while no instance ran, within its grace: the start-up load's catch-up runs it...
    catch_up = insert_python_schedule(
        database_url,
        handler_name,
        created_at=now - timedelta(seconds=3605),
        next_run=now - timedelta(seconds=5),
    )
    scheduled, retried, manual, requested = (
        insert_python_schedule(database_url, handler_name) for _ in range(4)
    )
    # ... unless the instance starts during a pause: it reads the pause before its first fire.
    SchedulerStateStore(db).pause(NOTE, "cli:alice")
    daemon: EnhancedScheduler = make_daemon()
    daemon.start()
    assert daemon.pause.current.paused
    row = only_row(database_url, catch_up)
    assert (row["status"], row["trigger"], row["error_message"]) == ("skipped", "catchup", REASON)
    assert row["error_details"] == {"reason": "paused"}

    # Another instance's lock on this schedule would make it an overlap skip: the pause comes
    # first, and the lock is neither taken nor touched.
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    held = schedule_lock_key(scheduled, redis_prefix)
    client.set(held, "elsewhere|x|y|1", px=60_000)
    loaded_scheduled, loaded_retried = daemon.loader.get(scheduled), daemon.loader.get(retried)
    assert loaded_scheduled is not None and loaded_retried is not None
    moment = now + timedelta(seconds=1)
    daemon.pipeline.submit(Occurrence(loaded_scheduled, moment, moment, job_id=str(scheduled)))
    retry = Occurrence(loaded_retried, moment, moment, 2, RunTrigger.RETRY)
    daemon.engine.retries.schedule(retry, datetime.now(UTC))
    report = daemon.trigger_now(manual)
    assert (report.execution_id, report.status, report.detail) == (None, "skipped", REASON)
    request = RunRequestStore(db).request_trigger(requested)

    for sid, trigger in ((scheduled, "schedule"), (retried, "retry"), (manual, "manual")):
        row = only_row(database_url, sid)
        assert (row["status"], row["trigger"], row["error_message"]) == ("skipped", trigger, REASON)
        assert row["fencing_token"] is None
    assert only_row(database_url, retried)["attempt"] == 2
    done = wait_until(
        lambda: (r := RunRequestStore(db).get(request.request_id)) and r.done_at and r,
        10,
        message="the trigger request answered",
    )
    assert done.result == f"skipped: {REASON}"
    assert only_row(database_url, requested)["error_message"] == REASON
    assert client.get(held) == "elsewhere|x|y|1"
    assert client.get(schedule_lock_key(manual, redis_prefix)) is None
    assert calls.schedules == []
    misfires = daemon.metrics_registry.get_sample_value(
        "scheduler_misfires_total", {"reason": "paused"}
    )
    assert misfires == 5
    assert daemon.status()["paused"] == {
        "paused": True,
        "note": NOTE,
        "paused_by": "cli:alice",
        "paused_at": daemon.pause.current.paused_at,
    }
    assert daemon.summary()["paused"] is True

    # Resumed: the switch follows at once (NOTIFY) or within its poll, and runs start again.
    SchedulerStateStore(db).resume()
    wait_until(lambda: not daemon.pause.current.paused, 2, 0.02, "the switch sees the resume")
    report = daemon.trigger_now(manual)
    assert report.status == "completed"
    assert calls.schedules == [manual]
    assert daemon.status()["paused"]["paused"] is False
    client.close()


def test_a_notification_wakes_the_switch_long_before_its_poll(
    make_daemon: Any, db: DatabaseConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.ops.side_loops.PAUSE_REFRESH_SECONDS", 60.0)
    daemon: EnhancedScheduler = make_daemon()
    daemon.start()
    assert daemon.threads["pause-switch"].interval == 60.0
    wait_until(lambda: daemon.watcher.status().get("listening"), 5, 0.02, "the listener is up")
    SchedulerStateStore(db).pause(NOTE, "cli:alice")
    wait_until(lambda: daemon.pause.current.paused, 3, 0.02, "the switch sees the pause")
    SchedulerStateStore(db).resume()
    wait_until(lambda: not daemon.pause.current.paused, 3, 0.02, "the switch sees the resume")


# -- daemon processes --------------------------------------------------------------------------


def rows_since(url: str, schedule_id: UUID, since: datetime) -> list[dict[str, Any]]:
    return query(
        url,
        "SELECT * FROM job_executions WHERE schedule_id = %s AND started_at > %s "
        "ORDER BY scheduled_for",
        (schedule_id, since),
    )


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    yield from daemon_spawner(tmp_path)


def test_a_global_pause_stops_every_instance_within_a_second_and_resume_restarts_them(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    (row,) = query(
        database_url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
        "payload) VALUES (gen_random_uuid(), 'example.com', 'interval', %s, 'command', %s) "
        "RETURNING schedule_id",
        (Jsonb({"seconds": 1}), Jsonb({"argv": ["true"]})),
    )
    sid = row["schedule_id"]
    extra = {"COMMAND_ALLOWLIST": "true", "HEARTBEAT_INTERVAL": "1", "SHUTDOWN_TIMEOUT": "5"}
    first = spawn({**env, **extra}, "test-a").start()
    wait_until(
        lambda: sum(r["status"] == "completed" for r in executions(database_url, sid)) >= 2,
        15,
        message="two completed runs",
    )
    paused = cli_json(env, "pause", "--all", "--note", NOTE)
    paused_at = datetime.fromisoformat(paused["paused_at"])
    assert paused["paused"] is True and paused["note"] == NOTE
    wait_until(
        lambda: len(rows_since(database_url, sid, paused_at)) >= 3,
        10,
        message="three occurrences due during the pause",
    )
    since = rows_since(database_url, sid, paused_at)
    late = [r for r in since if r["status"] != "skipped"]
    # A run claimed as the pause landed may finish; nothing starts a second after it.
    assert all((r["started_at"] - paused_at).total_seconds() < 1.0 for r in late), late
    skipped = [r for r in since if r["status"] == "skipped"]
    assert skipped and {r["error_message"] for r in skipped} == {REASON}

    # An instance started during the pause stays paused; alone, it records only skips.
    second = spawn({**env, **extra}, "test-b").start()
    second.wait_for_event("scheduler.paused", note=NOTE)
    assert first.terminate() == 0
    alone = db_now(database_url)
    wait_until(
        lambda: len(rows_since(database_url, sid, alone)) >= 2,
        10,
        message="the second instance records occurrences",
    )
    mine = [r for r in rows_since(database_url, sid, alone) if r["instance_id"] == "test-b"]
    assert mine and {(r["status"], r["error_message"]) for r in mine} == {("skipped", REASON)}

    def status_of_the_second_alone() -> dict[str, Any] | None:
        status: dict[str, Any] = cli_json(env, "status")
        alive = [i["instance_id"] for i in status["instances"]]
        return status if alive == ["test-b"] else None

    status = wait_until(status_of_the_second_alone, 10, message="status lists test-b alone")
    assert status["paused"]["paused"] is True and status["paused"]["note"] == NOTE
    assert status["instances"][0]["paused"] is True

    resumed = cli_json(env, "resume", "--all")
    assert resumed == {"paused": False, "note": None, "paused_by": None, "paused_at": None}
    after = db_now(database_url)
    wait_until(
        lambda: any(r["status"] == "completed" for r in rows_since(database_url, sid, after)),
        5,
        message="a completed run after the resume",
    )
    second.wait_for_event("scheduler.resumed")
    assert second.terminate() == 0


# -- the CLI -----------------------------------------------------------------------------------


def test_pause_and_resume_commands_and_their_exit_codes(
    env: dict[str, str], database_url: str
) -> None:
    me = f"cli:{getpass.getuser()}"
    for args, message in (
        (["pause"], "a schedule id, or --all"),
        (["resume"], "a schedule id, or --all"),
        (["pause", "--all"], "needs --note"),
        (["pause", "--all", "--note", "  "], "needs a note"),
        (["pause", str(uuid.uuid4()), "--all", "--note", "x"], "not both"),
        (["pause", "not-a-uuid"], "is not a UUID"),
    ):
        result = cli(env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    missing = cli(env, "pause", str(uuid.uuid4()), "--note", "x")
    assert missing.returncode == 1 and "no schedule with id" in missing.stderr
    assert cli(env, "resume", str(uuid.uuid4())).returncode == 1

    sid = cli_json(
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
    )["schedule_id"]

    paused = cli_json(env, "pause", "--all", "--note", NOTE)
    assert (paused["paused"], paused["note"], paused["paused_by"]) == (True, NOTE, me)
    human = cli(env, "status")
    assert human.returncode == 0, human.stderr
    assert f"scheduler paused since {paused['paused_at']} by {me}: {NOTE}" in human.stdout
    assert cli_json(env, "status")["paused"] == paused
    # Even a run in the CLI's own process (no daemon, never started) obeys the pause.
    local = cli(env, "trigger", sid, "--local")
    assert local.returncode == 1 and f"did not start: skipped: {REASON}" in local.stderr
    assert cli(env, "resume", "--all").stdout.strip() == "scheduler running (not paused)"
    assert cli_json(env, "status")["paused"]["paused"] is False
    one = cli_json(env, "pause", sid, "--note", "flaky target")
    assert (one["enabled"], one["paused_note"], one["paused_by"]) == (False, "flaky target", me)
    assert one["paused_at"] is not None and "config_hash" not in one
    text = cli(env, "pause", sid)  # no note: allowed for one schedule
    assert text.returncode == 0 and text.stdout.strip() == f"paused {sid}"
    assert schedule_row(database_url, UUID(sid))["paused_note"] is None
    back = cli_json(env, "resume", sid)
    assert (back["enabled"], back["paused_note"], back["paused_by"]) == (True, None, None)
    assert [(a["actor"], a["after"]["enabled"]) for a in audit_rows(database_url, sid)[1:]] == [
        (me, False),
        (me, True),
    ]
    assert json.loads(cli(env, "show", sid, "--json").stdout)["enabled"] is True
