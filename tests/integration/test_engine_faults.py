"""The execution engine under faults, with real daemon processes (issue 5, acceptance 2, 3, 8, 9
and 12): three instances sharing the work, an instance killed with SIGKILL, Redis and PostgreSQL
going away under running daemons, and a lock lost under a running job.

Outage tests stop only servers of their own (tests.support.redis_server, .postgres_server); the
shared PostgreSQL and Redis are only read and written under this test's database and key prefix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import redis
from psycopg.types.json import Jsonb

from database.migrations import Migrator
from tests.support.daemon import DaemonProcess, Spawn, daemon_spawner, start_all
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.schedules import (
    db_now,
    duplicated_occurrences,
    executions,
    insert_interval_schedule,
    insert_interval_schedules,
    interval_occurrences,
    query,
    schedule_row,
)
from tests.support.waiting import wait_until

NOOP = {"callable": "tests.support.handler_funcs:noop"}
LOCK_TIMEOUT = 3.0
HEARTBEAT_INTERVAL = 0.5


def engine_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """Short lock and heartbeat periods, so that loss and reaping show within seconds."""
    return {
        **env,
        "LOCK_TIMEOUT": f"{LOCK_TIMEOUT:g}",
        "HEARTBEAT_INTERVAL": f"{HEARTBEAT_INTERVAL:g}",
        "SHUTDOWN_TIMEOUT": "2",
        "STARTUP_TIMEOUT": "20",
        "COMMAND_ALLOWLIST": "sh,sleep,echo",
        "PYTHON_HANDLER_ALLOWLIST": "tests.support",
        **overrides,
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Makes daemon processes (not started); whatever is still alive at the end is killed."""
    yield from daemon_spawner(tmp_path)


def alive(pid: int) -> bool:
    """A zombie counts as gone: it runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def read_pid(path: Path, timeout: float = 10.0) -> int:
    text = wait_until(
        lambda: path.exists() and path.read_text().strip(), timeout, message=f"pid in {path}"
    )
    return int(text)


def first_run_sleeps(tmp_path: Path, seconds: int) -> dict[str, Any]:
    """A command payload whose first run writes its pid and sleeps `seconds` (it is the one a
    test kills, freezes or fences out); every later run of the schedule exits 0 at once, so that
    the runs that follow it finish and their outcomes can be compared with its own."""
    marker, pid_file = tmp_path / "first-run", tmp_path / "first-run.pid"
    script = f"mkdir {marker} 2>/dev/null || exit 0; echo $$ > {pid_file}; exec sleep {seconds}"
    return {"argv": ["sh", "-c", script]}


def running_row(url: str, schedule_id: UUID, timeout: float = 20.0) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((r for r in executions(url, schedule_id) if r["status"] == "running"), None)

    return wait_until(found, timeout, message=f"a running row of schedule {schedule_id}")


def row_by_id(url: str, execution_id: UUID) -> dict[str, Any]:
    (row,) = query(url, "SELECT * FROM job_executions WHERE execution_id = %s", (execution_id,))
    return row


def events_named(daemon: DaemonProcess, name: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in daemon.events()
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]


# -- 2. three instances, fifty schedules: every occurrence exactly once ------------------------


@pytest.mark.slow  # about 50 s: `make test-slow`, which CI runs after `make test`
@pytest.mark.timeout(150)
def test_three_instances_run_every_occurrence_exactly_once(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    period, duration = 2, 40.0
    schedules = insert_interval_schedules(
        database_url, 50, seconds=period, job_type="python", payload=NOOP
    )
    daemons = [spawn(engine_env(env), f"inst-{n}") for n in range(3)]
    start_all(daemons)
    window_start = db_now(database_url)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:  # the test is about a stretch of time: let it pass
        for daemon in daemons:
            assert daemon.process is not None and daemon.process.poll() is None, daemon.tail()
        time.sleep(0.5)
    window_end = db_now(database_url)
    for daemon in daemons:
        assert daemon.terminate(timeout=30) == 0, daemon.tail()

    rows = executions(database_url)
    assert duplicated_occurrences(rows) == []
    assert {r["attempt"] for r in rows} == {1}
    assert [r for r in rows if r["status"] not in ("completed", "skipped")] == []
    by_schedule: dict[UUID, dict[datetime, dict[str, Any]]] = {}
    for row in rows:
        by_schedule.setdefault(row["schedule_id"], {})[row["scheduled_for"]] = row
    problems, expected_total = [], 0
    stalled: list[dict[str, Any]] = []
    for schedule in schedules:
        sid = schedule["schedule_id"]
        got = by_schedule.get(sid, {})
        expected = interval_occurrences(schedule["created_at"], period, window_start, window_end)
        expected_total += len(expected)
        edges = {expected[0], expected[-1]}
        missing = [m for m in expected if m not in got]
        problems += [f"{sid} missing {m:%T.%f}" for m in missing if m not in edges]
        not_done = [got[m] for m in expected if m in got and got[m]["status"] != "completed"]
        stalled += [r for r in not_done if _skipped_behind_completed_run(r, got, period)]
        problems += [
            f"{sid} {r['scheduled_for']:%T} {r['status']}: {r['error_message']}"
            for r in not_done
            if r not in stalled
        ]
        off_grid = [m for m in got if m not in set(interval_occurrences(
            schedule["created_at"], period, min(got), max(got)
        ))]  # fmt: skip
        problems += [f"{sid} occurrence off the interval grid: {m}" for m in off_grid]
    assert problems == [], "\n".join(problems[:40])
    assert expected_total >= 50 * (duration / period - 2)
    # A machine that stalls (PostgreSQL held up for seconds, once seen in CI) keeps a run's lock
    # past its schedule's next occurrence, which the overlap policy then skips, saying so. That
    # is the policy, not a lost run; more than a few would be a lock kept too long.
    assert len(stalled) <= expected_total // 10, "\n".join(
        f"{r['schedule_id']} {r['scheduled_for']:%T}: {r['error_message']}" for r in stalled[:40]
    )
    in_window = [r for r in rows if window_start <= r["scheduled_for"] <= window_end]
    instances = {r["instance_id"] for r in in_window}
    assert len(instances) >= 2, f"all runs went to {instances}: the instances did not compete"


def _skipped_behind_completed_run(
    row: dict[str, Any], occurrences: dict[datetime, dict[str, Any]], period: int
) -> bool:
    """A `skipped` row of the overlap policy whose schedule's previous occurrence completed."""
    earlier = occurrences.get(row["scheduled_for"] - timedelta(seconds=period))
    return (
        row["status"] == "skipped"
        and "is still held by an earlier run" in (row["error_message"] or "")
        and earlier is not None
        and earlier["status"] in ("completed", "skipped")
    )


# -- 3. kill -9 of the instance running a job ---------------------------------------------------


@pytest.mark.timeout(90)
def test_killed_instance_run_becomes_abandoned_and_the_schedule_moves_on(
    env: dict[str, str], database_url: str, spawn: Spawn, tmp_path: Path
) -> None:
    period = 2
    schedule = insert_interval_schedule(
        database_url, seconds=period, job_type="command", payload=first_run_sleeps(tmp_path, 20)
    )
    sid = schedule["schedule_id"]
    daemons = {n: spawn(engine_env(env), n) for n in ("inst-a", "inst-b")}
    start_all(list(daemons.values()))
    victim_row = running_row(database_url, sid)
    job_pid = read_pid(tmp_path / "first-run.pid")
    victim = daemons[victim_row["instance_id"]]
    (survivor,) = (d for d in daemons.values() if d is not victim)

    victim.kill()
    killed_at, killed_mono = db_now(database_url), time.monotonic()
    abandoned = wait_until(
        lambda: (
            (r := row_by_id(database_url, victim_row["execution_id"]))["status"] != "running" and r
        ),
        LOCK_TIMEOUT + 10,
        message="the killed instance's row to leave 'running'",
    )
    took = time.monotonic() - killed_mono
    assert abandoned["status"] == "abandoned", abandoned
    assert victim.instance_id in abandoned["error_message"], abandoned["error_message"]
    assert "heartbeat" in abandoned["error_message"], abandoned["error_message"]
    # Reaped once the heartbeat is gone and the lock has expired: LOCK_TIMEOUT + a check or two.
    assert took <= LOCK_TIMEOUT + 4 * HEARTBEAT_INTERVAL + 1.5, took
    wait_until(lambda: not alive(job_pid), 5, message="the killed instance's command to die")

    # The survivor runs the next occurrences, each once, none lost in between.
    def later_completed() -> list[dict[str, Any]]:
        return [
            r
            for r in executions(database_url, sid)
            if r["status"] == "completed" and r["scheduled_for"] > killed_at
        ]

    wait_until(lambda: len(later_completed()) >= 3, 20, message="3 completed runs after the kill")
    assert survivor.terminate(timeout=20) == 0, survivor.tail()
    rows = executions(database_url, sid)
    assert duplicated_occurrences(rows) == []
    by_time = {r["scheduled_for"]: r for r in rows}
    last = max(r["scheduled_for"] for r in later_completed())
    expected = interval_occurrences(
        schedule["created_at"], period, victim_row["scheduled_for"], last
    )
    assert [m for m in expected if m not in by_time] == [], "occurrences vanished"
    for moment in expected[1:]:
        row = by_time[moment]
        if moment > abandoned["completed_at"]:
            # Lock expired and row reaped: the survivor runs every occurrence.
            assert (row["status"], row["instance_id"]) == ("completed", survivor.instance_id), row
        else:
            # The dead run's lock still held: recorded as skipped, saying why.
            assert row["status"] in ("skipped", "completed"), row
            if row["status"] == "skipped":
                assert "still" in row["error_message"], row


@pytest.mark.timeout(90)
@pytest.mark.parametrize("frequency", ["interval", "once"])
@pytest.mark.parametrize("heir_id", ["inst-b", "inst-a"], ids=["other", "restarted"])
def test_a_retry_pending_on_a_killed_instance_is_run_by_the_next_one(
    env: dict[str, str], database_url: str, spawn: Spawn, frequency: str, heir_id: str
) -> None:
    """A retry waits in its instance's memory; killed before the retry's time, that instance
    takes it along. Another instance (once the heartbeat is gone) or the same INSTANCE_ID
    restarted (at start-up) schedules it again from the failed row: it runs once, on time."""
    delay = 6.0  # RETRY_INITIAL_DELAY: the retry is due 3-6 s after the failure
    with RecordingHTTPServer() as flaky:
        flaky.enqueue(ScriptedResponse(503), ScriptedResponse(200))
        first_at = db_now(database_url).replace(microsecond=0) + timedelta(seconds=3)
        if frequency == "once":
            (sched,) = query(
                database_url,
                "INSERT INTO schedules (domain_config_id, domain, frequency, time_config,"
                " job_type, payload) VALUES (gen_random_uuid(), 'example.com', 'once', %s,"
                " 'http', %s) RETURNING schedule_id",
                (Jsonb({"run_at": first_at.isoformat()}), Jsonb({"url": flaky.url})),
            )
        else:
            sched = insert_interval_schedule(
                database_url,
                seconds=600,
                job_type="http",
                payload={"url": flaky.url},
                created_at=first_at - timedelta(seconds=600),
            )
        sid = sched["schedule_id"]
        overrides = {"HTTP_ALLOWED_HOSTS": "127.0.0.1", "RETRY_INITIAL_DELAY": f"{delay:g}"}
        victim = spawn(engine_env(env, **overrides), "inst-a").start()
        failed = wait_until(
            lambda: [r for r in executions(database_url, sid) if r["status"] == "failed"],
            15,
            message="attempt 1 failed",
        )[0]
        victim.wait_for_event("run.retry_scheduled", timeout=5)
        victim.kill()
        heir = spawn(engine_env(env, **overrides), heir_id, f"{heir_id}-heir").start()
        retried = wait_until(
            lambda: [r for r in executions(database_url, sid) if r["attempt"] == 2],
            delay + 10,
            message="attempt 2 to run after the kill",
        )[0]
        wait_until(
            lambda: executions(database_url, sid)[-1]["status"] != "running", 10, message="end"
        )
        assert heir.terminate(timeout=20) == 0, heir.tail()
    rows = executions(database_url, sid)
    assert [(r["attempt"], r["status"], r["trigger"], r["instance_id"]) for r in rows] == [
        (1, "failed", "schedule", "inst-a"),
        (2, "completed", "retry", heir_id),
    ]
    assert retried["scheduled_for"] == failed["scheduled_for"]
    waited = (retried["started_at"] - failed["completed_at"]).total_seconds()
    assert waited >= delay / 2 - 0.5, f"retried after {waited:.1f}s, before its backoff"
    assert len(flaky.requests) == 2
    assert events_named(heir, "retry_recovery.rescheduled", schedule_id=str(sid))


@pytest.mark.timeout(60)
def test_restarted_instance_abandons_its_own_leftover_runs_at_once(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    schedule = insert_interval_schedule(
        database_url, seconds=2, job_type="command", payload={"argv": ["sleep", "20"]}
    )
    first = spawn(engine_env(env, LOCK_TIMEOUT="30"), "inst-a").start()
    leftover = running_row(database_url, schedule["schedule_id"])
    first.kill()
    assert row_by_id(database_url, leftover["execution_id"])["status"] == "running"

    again = spawn(engine_env(env, LOCK_TIMEOUT="30"), "inst-a", log_name="inst-a-restarted")
    again.start()  # returns at 'scheduler.started'
    row = row_by_id(database_url, leftover["execution_id"])
    assert row["status"] == "abandoned", row
    assert "inst-a restarted before the run finished" in row["error_message"]
    assert events_named(again, "scheduler.recovered_leftovers", abandoned=1)
    assert again.terminate(timeout=20) == 0, again.tail()


# -- 8. Redis down for ten seconds -----------------------------------------------------------


@pytest.mark.timeout(90)
def test_redis_outage_runs_nothing_counts_misfires_and_runs_resume(
    env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    outage = 10.0
    with RedisServer() as server:
        schedule = insert_interval_schedule(
            database_url, seconds=1, job_type="python", payload=NOOP
        )
        sid = schedule["schedule_id"]
        daemon = spawn(engine_env(env, REDIS_URL=server.url), "inst-a").start()

        def completed() -> list[dict[str, Any]]:
            return [r for r in executions(database_url, sid) if r["status"] == "completed"]

        wait_until(lambda: len(completed()) >= 2, 15, message="two runs before the outage")
        server.stop()
        down_at = db_now(database_url)
        deadline = time.monotonic() + outage
        while time.monotonic() < deadline:  # the outage lasts a set time; the daemon must live
            assert daemon.process is not None and daemon.process.poll() is None, daemon.tail()
            time.sleep(0.25)
        up_at = db_now(database_url)
        server.start()
        wait_until(
            lambda: [r for r in completed() if r["scheduled_for"] > up_at][2:],
            15,
            message="three runs after Redis came back",
        )
        assert daemon.terminate(timeout=20) == 0, daemon.tail()

    rows = executions(database_url, sid)
    assert duplicated_occurrences(rows) == []
    # Nothing ran without its lock: no run claimed while Redis was down. (A claim may follow
    # its lock by a few milliseconds: a lock taken just before the stop is not an outage run.)
    ran_during = [
        r
        for r in rows
        if r["status"] != "skipped" and down_at + timedelta(seconds=0.5) < r["started_at"] < up_at
    ]
    assert ran_during == []
    # Every occurrence of the outage is accounted for, as skipped with the reason.
    by_time = {r["scheduled_for"]: r for r in rows}
    during = interval_occurrences(
        schedule["created_at"], 1, down_at + timedelta(seconds=0.5), up_at
    )
    assert len(during) >= outage - 2
    assert [m for m in during if m not in by_time] == [], "occurrences vanished"
    for moment in during:
        row = by_time[moment]
        assert row["status"] == "skipped", row
        assert "Redis unreachable" in row["error_message"], row
    # ... and counted: one misfire per skipped occurrence.
    misfires = [e for e in events_named(daemon, "run.skipped") if "Redis" in e.get("reason", "")]
    assert len(misfires) >= len(during)
    # Runs resume: every occurrence from shortly after the restart on is completed.
    after = [r for r in rows if r["scheduled_for"] > up_at + timedelta(seconds=2)]
    assert after, "no occurrence after the restart"
    assert [r for r in after if r["status"] != "completed"] == []


# -- 9. PostgreSQL restarted while a job runs ---------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL cluster of this test's own (it gets stopped), migrated; and its URL."""
    with PostgresServer() as pg:
        url = pg.create_database("scheduler")
        Migrator(url).apply()
        yield pg, url


def private_postgres_env(url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return engine_env(
        {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": redis_prefix,
            "HTTP_PORT": "0",
            "LOG_FORMAT": "json",
            "ENV_FILE": "",
        }
    )


@pytest.mark.timeout(120)
def test_postgres_restart_during_a_run_keeps_its_result_and_the_daemon_goes_on(
    private_postgres: tuple[PostgresServer, str], redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    pg, url = private_postgres
    period = 6
    # Every 6 s from 3 s ago: the first run starts about 3 s from now.
    schedule = insert_interval_schedule(
        url,
        seconds=period,
        job_type="command",
        payload={"argv": ["sleep", "4"]},
        created_at=db_now(url) - timedelta(seconds=3),
    )
    sid = schedule["schedule_id"]
    daemon = spawn(private_postgres_env(url, redis_url, redis_prefix), "inst-a").start()
    run = running_row(url, sid)

    pg.stop()
    # The job ends while PostgreSQL is down: its result waits in memory.
    daemon.wait_for_event("store.write_deferred", timeout=20, query="finish_executions")
    pg.start()
    (boot,) = query(url, "SELECT pg_postmaster_start_time() AS at")

    row = wait_until(
        lambda: (r := row_by_id(url, run["execution_id"]))["status"] != "running" and r,
        15,
        message="the run's final status to be written",
    )
    assert row["status"] == "completed", row
    assert row["completed_at"] >= boot["at"], "written before PostgreSQL came back?"
    assert row["duration_seconds"] >= 3.5, row
    daemon.wait_for_event("store.deferred_writes_flushed", timeout=5)

    # The daemon lives on and runs the next occurrences.
    later = wait_until(
        lambda: [
            r
            for r in executions(url, sid)
            if r["status"] == "completed" and r["scheduled_for"] > boot["at"]
        ],
        2 * period + 5,
        message="a run after PostgreSQL came back",
    )
    assert later[0]["instance_id"] == "inst-a"
    sched = schedule_row(url, sid)
    assert sched["last_status"] == "completed"
    assert sched["last_fencing_token"] == max(
        r["fencing_token"] for r in executions(url, sid) if r["status"] == "completed"
    )
    assert daemon.terminate(timeout=20) == 0, daemon.tail()
    rows = executions(url, sid)
    assert duplicated_occurrences(rows) == []
    moments = interval_occurrences(
        schedule["created_at"], period, run["scheduled_for"], later[0]["scheduled_for"]
    )
    assert [m for m in moments if m not in {r["scheduled_for"] for r in rows}] == []


@pytest.mark.timeout(60)
def test_occurrence_due_while_postgres_is_down_runs_when_it_returns(
    private_postgres: tuple[PostgresServer, str], redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    """Contract: "An occurrence that falls due while PostgreSQL is unreachable is claimed and run
    when it returns if still within its misfire grace". Here the previous run's command has
    already ended when the occurrence falls due; only its result is still waiting for
    PostgreSQL. The outage (~5 s) is shorter than the pool's 10 s wait, so nothing is deferred."""
    pg, url = private_postgres
    period = 4
    schedule = insert_interval_schedule(
        url,
        seconds=period,
        job_type="command",
        payload={"argv": ["sleep", "1"]},
        created_at=db_now(url) - timedelta(seconds=2),
    )
    sid = schedule["schedule_id"]
    daemon = spawn(private_postgres_env(url, redis_url, redis_prefix), "inst-a").start()
    first = running_row(url, sid)
    pg.stop()
    daemon.wait_for_event(
        "handler.command.finished", timeout=10, execution_id=str(first["execution_id"])
    )
    due = first["scheduled_for"] + timedelta(seconds=period)
    # The outage must span the next occurrence: wait for its time to pass (wall clock).
    while datetime.now(UTC) < due + timedelta(seconds=0.5):
        time.sleep(0.05)
    pg.start()

    def outcome() -> dict[str, Any] | None:
        return next((r for r in executions(url, sid) if r["scheduled_for"] == due), None)

    with contextlib.suppress(AssertionError):  # judged below, with the row's own reason
        wait_until(lambda: (r := outcome()) and r["status"] == "completed", period + 4)
    assert daemon.terminate(timeout=20) == 0, daemon.tail()
    assert row_by_id(url, first["execution_id"])["status"] == "completed"
    row = outcome()
    assert row is not None, f"occurrence {due:%T} vanished"
    assert row["status"] == "completed", (
        f"occurrence {due:%T} fell due during the outage, within its grace, and was not run: "
        f"{row['status']}: {row['error_message']}"
    )


@pytest.mark.timeout(90)
def test_sigterm_with_postgres_gone_exits_in_time_and_logs_what_stays_unwritten(
    private_postgres: tuple[PostgresServer, str], redis_url: str, redis_prefix: str, spawn: Spawn
) -> None:
    """Contract point 4 while PostgreSQL is unreachable: a SIGTERM during a run still exits 0
    within SHUTDOWN_TIMEOUT + 2 s (the pool, the side threads and the final flush must not wait
    on the dead server), releases the lock, and says which results could not be written."""
    pg, url = private_postgres
    schedule = insert_interval_schedule(
        url,
        seconds=60,
        job_type="command",
        payload={"argv": ["sleep", "30"]},
        created_at=db_now(url) - timedelta(seconds=56),  # first run about 4 s from now
    )
    sid = schedule["schedule_id"]
    daemon = spawn(private_postgres_env(url, redis_url, redis_prefix), "inst-a").start()
    running_row(url, sid)
    pg.stop()
    started = time.monotonic()
    assert daemon.terminate(timeout=30) == 0, daemon.tail()
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 2, f"exit took {elapsed:.1f}s with SHUTDOWN_TIMEOUT=2\n{daemon.tail()}"
    (unwritten,) = events_named(daemon, "scheduler.results_unwritten")
    assert unwritten["count"] >= 1
    redis_client = redis.Redis.from_url(redis_url)
    try:
        assert redis_client.exists(lock_key(redis_prefix, sid)) == 0
    finally:
        redis_client.close()


# -- 12. a lock lost under a running job, and fencing ------------------------------------------


def lock_key(prefix: str, schedule_id: UUID) -> str:
    return f"{prefix}lock:schedule:{schedule_id}"


@pytest.mark.timeout(60)
def test_deleted_lock_stops_the_run_and_its_row_says_so(
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    schedule = insert_interval_schedule(
        database_url, seconds=2, job_type="command", payload=first_run_sleeps(tmp_path, 30)
    )
    sid = schedule["schedule_id"]
    daemon = spawn(engine_env(env), "inst-a").start()
    run = running_row(database_url, sid)
    job_pid = read_pid(tmp_path / "first-run.pid")

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert str(client.get(lock_key(redis_prefix, sid))).startswith(
            f"inst-a|{run['execution_id']}|"
        )
        assert client.delete(lock_key(redis_prefix, sid)) == 1
    finally:
        client.close()
    deleted = time.monotonic()
    row = wait_until(
        lambda: (r := row_by_id(database_url, run["execution_id"]))["status"] != "running" and r,
        10,
        message="the run to stop",
    )
    # Noticed at the next renewal (every LOCK_TIMEOUT/3), then SIGTERM and a 1 s kill grace.
    assert time.monotonic() - deleted <= LOCK_TIMEOUT / 3 + 1 + 2.5
    assert row["status"] == "failed", row
    assert row["error_details"]["lock_lost"] is True, row
    assert "lock" in row["error_message"] and "lost" in row["error_message"], row
    assert not alive(job_pid), "the command outlived its lock"
    assert daemon.terminate(timeout=20) == 0, daemon.tail()


@pytest.mark.timeout(60)
def test_stale_lock_holder_cannot_overwrite_a_newer_runs_outcome(
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    # The classic fencing hazard: the holder is frozen (GC pause, SIGSTOP), its lock goes away,
    # another instance runs the schedule to completion, then the stale holder wakes up and writes.
    # HEARTBEAT_INTERVAL=3 and LOCK_TIMEOUT=10: its heartbeat (TTL min(9, 10) s) outlives the
    # freeze, so the stale run is not reaped as dead but has to notice the loss and write its
    # own (fenced) result. (The heartbeat TTL is capped at LOCK_TIMEOUT, issue 21.)
    schedule = insert_interval_schedule(
        database_url, seconds=1, job_type="command", payload=first_run_sleeps(tmp_path, 30)
    )
    sid = schedule["schedule_id"]
    environ = engine_env(env, HEARTBEAT_INTERVAL="3", LOCK_TIMEOUT="10")
    daemons = {n: spawn(environ, n) for n in ("inst-a", "inst-b")}
    start_all(list(daemons.values()))
    stale = running_row(database_url, sid)
    job_pid = read_pid(tmp_path / "first-run.pid")
    holder = daemons[stale["instance_id"]]
    (other,) = (d for d in daemons.values() if d is not holder)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        assert client.delete(lock_key(redis_prefix, sid)) == 1
        newer = wait_until(
            lambda: next(
                (
                    r
                    for r in executions(database_url, sid)
                    if r["status"] == "completed" and r["scheduled_for"] > stale["scheduled_for"]
                ),
                None,
            ),
            10,
            message="a newer run on the other instance",
        )
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        client.close()
    assert newer["instance_id"] == other.instance_id
    assert newer["fencing_token"] > stale["fencing_token"]

    row = wait_until(
        lambda: (r := row_by_id(database_url, stale["execution_id"]))["status"] != "running" and r,
        10,
        message="the stale run to stop",
    )
    assert row["status"] == "failed", row
    assert row["error_details"]["lock_lost"] is True, row
    assert "lock" in row["error_message"] and "lost" in row["error_message"], row
    wait_until(lambda: not alive(job_pid), 5, message="the stale run's command to die")
    (finished,) = events_named(holder, "run.finished", execution_id=str(stale["execution_id"]))
    assert finished["written"] is True
    assert finished["schedule_written"] is False, "the stale write reached schedules.last_*"

    for daemon in daemons.values():
        assert daemon.terminate(timeout=20) == 0, daemon.tail()
    assert row_by_id(database_url, newer["execution_id"])["status"] == "completed"
    sched = schedule_row(database_url, sid)
    assert sched["last_status"] == "completed", sched
    assert sched["last_fencing_token"] > stale["fencing_token"]
    finished_rows = [r for r in executions(database_url, sid) if r["status"] == "completed"]
    newest = max(finished_rows, key=lambda r: r["fencing_token"])
    assert sched["last_fencing_token"] == newest["fencing_token"]
