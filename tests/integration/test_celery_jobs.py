"""The celery job type end to end: real daemons send to the machine's RabbitMQ (a vhost of the
test's own) and a real Celery worker runs the tasks, with results in Redis."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from services.engine.handlers import CeleryHandler
from services.engine.handlers.base import format_utc
from services.model.vocabulary import ExecutionStatus
from tests.support.celery_worker import CeleryWorker, forget_results, rabbit_vhost
from tests.support.daemon import Spawn, daemon_spawner, start_all
from tests.support.handler_funcs import make_context
from tests.support.http_server import unused_port
from tests.support.schedules import executions, insert_interval_schedule, schedule_row
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

QUEUE = "scheduler-tests"
HOURLY = 3600
RECORD = {"task": "tasks.record", "args": [1, "two"], "kwargs": {"k": "v"}, "queue": QUEUE}


@pytest.fixture
def broker() -> Iterator[str]:
    with rabbit_vhost() as url:
        yield url


@pytest.fixture
def worker(
    broker: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Iterator[CeleryWorker]:
    proc = CeleryWorker(broker, redis_url, redis_url, redis_prefix, QUEUE, tmp_path / "worker.log")
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    yield from daemon_spawner(tmp_path)


@pytest.fixture
def celery_env(
    env: dict[str, str], broker: str, redis_url: str, database_url: str
) -> Iterator[dict[str, str]]:
    """A daemon's environment for celery jobs; the results its tasks left are deleted after."""
    yield {
        **env,
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": redis_url,
        "CELERY_TASK_ALLOWLIST": "tasks",
        "CELERY_TIMEOUT": "5",
        "LOCK_TIMEOUT": "3",
        "HEARTBEAT_INTERVAL": "0.5",
        "SHUTDOWN_TIMEOUT": "2",
    }
    forget_results(redis_url, [str(r["execution_id"]) for r in executions(database_url)])


def soon() -> datetime:
    """A created_at that makes an hourly interval schedule fire in about three seconds (its
    occurrences fall at created_at + k·period), once the daemon is up."""
    return datetime.now(UTC) - timedelta(seconds=HOURLY - 3)


def completed(url: str, schedule_id: Any) -> list[dict[str, Any]]:
    return [r for r in executions(url, schedule_id) if r["status"] == "completed"]


def worker_ran(worker: CeleryWorker, count: int) -> list[dict[str, Any]]:
    """The worker's records once it has run `count` tasks (a few more would fail the caller)."""

    def enough() -> list[dict[str, Any]] | None:
        records = worker.records()
        return records if len(records) >= count else None

    return wait_until(enough, 15, message=f"{count} tasks run by the worker")


def failed_attempts(url: str, schedule_id: Any, count: int) -> list[dict[str, Any]] | None:
    rows = executions(url, schedule_id)
    return rows if len(rows) == count and all(r["status"] == "failed" for r in rows) else None


def test_one_task_per_occurrence_with_its_execution_id_and_idempotency_key(
    celery_env: dict[str, str], database_url: str, worker: CeleryWorker, spawn: Spawn
) -> None:
    schedule = insert_interval_schedule(database_url, seconds=1, job_type="celery", payload=RECORD)
    sid = schedule["schedule_id"]
    with spawn(celery_env, "celery-a"):
        wait_until(lambda: len(completed(database_url, sid)) >= 2, 20, message="two sends")
    runs = completed(database_url, sid)
    # Every run the daemon recorded as sent reaches the worker exactly once.
    records = worker_ran(worker, len(runs))
    by_task_id = {r["task_id"]: r for r in records}
    assert len(by_task_id) == len(records) == len(runs)
    for run in runs:
        seen = by_task_id[str(run["execution_id"])]  # task_id == execution_id
        key = f"{sid}:{format_utc(run['scheduled_for'])}:{run['attempt']}"
        assert seen["idempotency_key"] == key
        assert seen["args"] == [1, "two"] and seen["kwargs"] == {"k": "v"}
        envelope = seen["scheduler"]
        assert envelope["execution_id"] == str(run["execution_id"])
        assert envelope["schedule_id"] == str(sid) and envelope["payload"] == RECORD
        assert run["metadata"]["task_id"] == str(run["execution_id"])
        assert run["metadata"]["queue"] == QUEUE
    assert schedule_row(database_url, sid)["last_status"] == "completed"


def test_wait_mode_records_the_tasks_success_and_failure(
    celery_env: dict[str, str], database_url: str, worker: CeleryWorker, spawn: Spawn
) -> None:
    ok = insert_interval_schedule(
        database_url,
        seconds=HOURLY,
        job_type="celery",
        created_at=soon(),
        payload={"task": "tasks.ok", "kwargs": {"x": 2, "y": 3}, "queue": QUEUE, "wait": True},
    )["schedule_id"]
    fail = insert_interval_schedule(
        database_url,
        seconds=HOURLY,
        job_type="celery",
        created_at=soon(),
        payload={"task": "tasks.fail", "args": ["bad input"], "queue": QUEUE, "wait": True},
    )["schedule_id"]
    with spawn(celery_env, "celery-wait"):
        wait_until(
            lambda: all(
                schedule_row(database_url, s)["last_status"] in ("completed", "failed")
                for s in (ok, fail)
            ),
            40,
            message="both runs finished",
        )
    (good,) = executions(database_url, ok)
    assert good["status"] == "completed"
    assert good["metadata"]["state"] == "SUCCESS"
    assert good["metadata"]["result"] == {"sum": 5}
    (bad,) = executions(database_url, fail)  # a task's failure is not retried
    assert bad["status"] == "failed"
    assert bad["error_message"] == "celery task 'tasks.fail' ended FAILURE: ValueError: bad input"
    assert bad["error_details"]["type"] == "task_failed"
    assert "raise ValueError(message)" in bad["error_details"]["traceback"]


def test_a_task_outside_the_allowlist_marks_the_row_invalid_and_sends_nothing(
    celery_env: dict[str, str], database_url: str, worker: CeleryWorker, spawn: Spawn
) -> None:
    refused = insert_interval_schedule(
        database_url,
        seconds=1,
        job_type="celery",
        payload={"task": "evil.tasks.wipe", "queue": QUEUE},
    )["schedule_id"]
    allowed = insert_interval_schedule(database_url, seconds=1, job_type="celery", payload=RECORD)[
        "schedule_id"
    ]
    with spawn(celery_env, "celery-allow") as daemon:
        started = daemon.wait_for_event("scheduler.started")
        # The allowed schedule's sends show the worker is consuming the same queue.
        wait_until(lambda: len(worker.records()) >= 2, 20, message="allowed tasks run")
    assert started["jobs_loaded"] == 1
    row = schedule_row(database_url, refused)
    assert row["last_status"] == "invalid"
    assert row["last_error"] == (
        "celery task 'evil.tasks.wipe' is not under CELERY_TASK_ALLOWLIST (allowed: tasks)"
    )
    assert executions(database_url, refused) == []
    assert "evil.tasks.wipe" not in worker.log_text()
    assert {r["scheduler"]["schedule_id"] for r in worker.records()} == {str(allowed)}


def test_two_daemons_send_each_occurrence_once(
    celery_env: dict[str, str], database_url: str, worker: CeleryWorker, spawn: Spawn
) -> None:
    sid = insert_interval_schedule(database_url, seconds=1, job_type="celery", payload=RECORD)[
        "schedule_id"
    ]
    daemons = [spawn(celery_env, f"celery-{n}") for n in range(2)]
    start_all(daemons)
    wait_until(lambda: len(completed(database_url, sid)) >= 4, 30, message="four sends")
    for daemon in daemons:
        assert daemon.terminate() == 0
    runs = completed(database_url, sid)
    records = worker_ran(worker, len(runs))
    keys = Counter(r["idempotency_key"] for r in records)
    assert max(keys.values()) == 1, keys  # no occurrence reached the worker twice
    assert len(records) == len(runs)
    assert {r["task_id"] for r in records} == {str(r["execution_id"]) for r in runs}
    assert {r["instance_id"] for r in runs} <= {"celery-0", "celery-1"}


def test_an_unreachable_broker_is_a_retryable_failure_and_its_password_stays_hidden(
    celery_env: dict[str, str], database_url: str, spawn: Spawn
) -> None:
    dead = f"amqp://guest:hunter2secret@127.0.0.1:{unused_port()}//"
    sid = insert_interval_schedule(
        database_url,
        seconds=HOURLY,
        job_type="celery",
        created_at=soon(),
        payload={"task": "tasks.ok", "queue": QUEUE},
        time_config={"max_retries": 1},
    )["schedule_id"]
    with spawn(
        {**celery_env, "CELERY_BROKER_URL": dead, "RETRY_INITIAL_DELAY": "0.2"}, "dead"
    ) as d:
        rows = wait_until(
            lambda: failed_attempts(database_url, sid, 2), 20, message="two failed attempts"
        )
        log = d.log_path.read_text()
    for row in rows:
        assert row["error_details"]["type"] == "broker_error"
        assert row["error_details"]["retryable"] is True
        assert row["duration_seconds"] < 5  # CELERY_TIMEOUT bounds the attempt
        assert "hunter2secret" not in (row["error_message"] or "")
    assert [r["attempt"] for r in rows] == [1, 2]
    assert "hunter2secret" not in log


def test_a_silent_broker_costs_at_most_the_timeout() -> None:
    """A broker that accepts the connection and never answers: the send gives up in time."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    port = listener.getsockname()[1]
    handler = CeleryHandler(
        broker_url=f"amqp://guest:guest@127.0.0.1:{port}//",
        result_backend=None,
        task_allowlist=["tasks"],
        timeout=1.0,
    )
    try:
        started = time.monotonic()
        outcome = handler.run(make_context({"task": "tasks.ok"}, job_type="celery"))
        elapsed = time.monotonic() - started
    finally:
        handler.close()
        for conn in held:
            conn.close()
        listener.close()
    assert outcome.status is ExecutionStatus.FAILED and outcome.retryable
    assert elapsed < 5.0, elapsed  # the bound is CELERY_TIMEOUT-sized, never a hang


def _waiting_handler(broker: str, redis_url: str) -> CeleryHandler:
    return CeleryHandler(
        broker_url=broker, result_backend=redis_url, task_allowlist=["tasks"], timeout=5.0
    )


def test_a_wait_without_a_result_in_time_is_timed_out(broker: str, redis_url: str) -> None:
    # No worker consumes this vhost: the task is confirmed by the broker and never runs.
    handler = _waiting_handler(broker, redis_url)
    try:
        outcome = handler.run(
            make_context(
                {"task": "tasks.ok", "queue": "nobody", "wait": True},
                job_type="celery",
                timeout=0.5,
            )
        )
    finally:
        handler.close()
    assert outcome.status is ExecutionStatus.TIMED_OUT and not outcome.retryable
    assert outcome.metadata is not None and outcome.metadata["state"] == "PENDING"


def test_cancelling_a_wait_ends_the_run_cancelled(broker: str, redis_url: str) -> None:
    handler = _waiting_handler(broker, redis_url)
    cancel = threading.Event()
    ctx = make_context(
        {"task": "tasks.ok", "queue": "nobody", "wait": True},
        job_type="celery",
        timeout=60.0,
        cancel_event=cancel,
    )
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        outcome = handler.run(ctx)
    finally:
        timer.cancel()
        handler.close()
    assert outcome.status is ExecutionStatus.CANCELLED
    assert outcome.error_details is not None and outcome.error_details["type"] == "cancelled"


def test_a_handler_for_the_same_broker_works_after_another_was_closed(broker: str) -> None:
    # kombu's producer pools are process-wide, keyed by the broker: closing one handler must
    # not leave the next one a closed pool.
    for _ in range(2):
        handler = CeleryHandler(
            broker_url=broker, result_backend=None, task_allowlist=["tasks"], timeout=5.0
        )
        try:
            outcome = handler.run(
                make_context({"task": "tasks.ok", "queue": "x"}, job_type="celery")
            )
        finally:
            handler.close()
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error_message


def test_wait_mode_over_rpc_results_from_several_threads(
    broker: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """rpc:// sends each result back over the broker to the thread that sent the task."""
    rpc_worker = CeleryWorker(
        broker, "rpc://", redis_url, redis_prefix, QUEUE, tmp_path / "rpc.log"
    )
    handler = CeleryHandler(
        broker_url=broker, result_backend="rpc://", task_allowlist=["tasks"], timeout=5.0
    )
    contexts = [
        make_context(
            {"task": "tasks.ok", "kwargs": {"x": i, "y": 1}, "queue": QUEUE, "wait": True},
            job_type="celery",
            timeout=20.0,
        )
        for i in range(6)
    ]
    try:
        rpc_worker.start()
        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(handler.run, contexts))
    finally:
        handler.close()
        rpc_worker.stop()
    assert [o.status for o in outcomes] == [ExecutionStatus.COMPLETED] * 6
    assert [(o.metadata or {})["result"] for o in outcomes] == [{"sum": i + 1} for i in range(6)]


def test_a_redis_broker_gets_the_message_with_its_ids(redis_url: str, redis_prefix: str) -> None:
    """Redis as the broker (no publisher confirms there): the message lands in the queue's list."""
    queue = f"{redis_prefix}celery"  # the list is the queue's name: the prefix's clean-up takes it
    handler = CeleryHandler(
        broker_url=redis_url, result_backend=None, task_allowlist=["tasks"], timeout=5.0
    )
    client = redis.Redis.from_url(redis_url)
    ctx = make_context({"task": "tasks.ok", "queue": queue}, job_type="celery")
    try:
        outcome = handler.run(ctx)
        raw = client.lpop(queue)
    finally:
        handler.close()
        # kombu's bindings for the queue's own exchange are named after it, outside the prefix.
        client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error_message
    assert isinstance(raw, bytes)
    headers = json.loads(raw)["headers"]
    assert headers["id"] == str(ctx.execution_id) and headers["task"] == "tasks.ok"
    assert headers["Idempotency-Key"] == ctx.idempotency_key()
    assert headers["scheduler"]["execution_id"] == str(ctx.execution_id)
