"""The nats job type against a real nats-server with JetStream, started by each test."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.engine.handlers import JobOutcome, NatsHandler, NatsOptions, format_utc
from services.model.vocabulary import ExecutionStatus
from tests.support.daemon import DaemonProcess
from tests.support.handler_funcs import make_context
from tests.support.nats_server import NatsServer, Responder
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer() as srv:
        srv.add_stream("JOBS", ["jobs.>"])
        yield srv


def make_handler(
    url: str, *, timeout: float = 3.0, allow: tuple[str, ...] = ("jobs.>", "rpc.>")
) -> Any:
    return NatsHandler(options=NatsOptions(url=url, timeout=timeout), subject_allowlist=allow)


@pytest.fixture
def handler(server: NatsServer) -> Iterator[NatsHandler]:
    h = make_handler(server.url)
    yield h
    h.close()


def headers_of(msg: Any) -> dict[str, str]:
    return dict(msg.headers or {})


def test_publish_puts_the_http_body_in_the_stream_with_the_idempotency_key(
    server: NatsServer, handler: NatsHandler
) -> None:
    ctx = make_context({"subject": "jobs.scan", "data": {"depth": 2}}, job_type="nats", attempt=2)
    outcome = handler.run(ctx)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None
    assert outcome.metadata["stream"] == "JOBS" and outcome.metadata["seq"] == 1
    assert outcome.metadata["duplicate"] is False
    (msg,) = server.stream_messages("JOBS")
    assert msg.subject == "jobs.scan"
    assert headers_of(msg)["Nats-Msg-Id"] == ctx.idempotency_key()
    assert ctx.idempotency_key() == f"{ctx.schedule_id}:2026-12-01T10:00:00Z:2"
    assert msg.data is not None
    body = json.loads(msg.data)
    assert body["execution_id"] == str(ctx.execution_id)
    assert body["schedule_id"] == str(ctx.schedule_id)
    assert body["scheduled_for"] == "2026-12-01T10:00:00Z" and body["attempt"] == 2
    assert body["payload"]["data"] == {"depth": 2}


def test_the_same_occurrence_sent_twice_leaves_one_message(
    server: NatsServer, handler: NatsHandler
) -> None:
    # A replayed claim hands the handler the same occurrence and attempt: the same key.
    ctx = make_context({"subject": "jobs.scan"}, job_type="nats")
    first, second = handler.run(ctx), handler.run(ctx)
    assert first.status is second.status is ExecutionStatus.COMPLETED
    assert first.metadata is not None and second.metadata is not None
    assert first.metadata["duplicate"] is False and second.metadata["duplicate"] is True
    assert second.metadata["seq"] == first.metadata["seq"]
    assert len(server.stream_messages("JOBS")) == 1


def test_request_completes_with_the_reply_kept(server: NatsServer, handler: NatsHandler) -> None:
    # Requests go to subjects no stream captures: a stream's ack would be the first reply.
    with Responder(server.url, "rpc.ask", b'{"accepted": true, "worker": "w1"}') as responder:
        ctx = make_context({"subject": "rpc.ask", "request": True}, job_type="nats")
        outcome = handler.run(ctx)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None
    assert outcome.metadata["reply"] == {"accepted": True, "worker": "w1"}
    (asked,) = responder.received
    assert json.loads(asked.data)["execution_id"] == str(ctx.execution_id)
    assert (asked.headers or {})["Nats-Msg-Id"] == ctx.idempotency_key()


def test_a_reply_that_is_not_json_is_kept_as_text(server: NatsServer, handler: NatsHandler) -> None:
    with Responder(server.url, "rpc.ask", b"ok, queued"):
        outcome = handler.run(make_context({"subject": "rpc.ask", "request": True}))
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    assert outcome.metadata is not None and outcome.metadata["reply_tail"] == "ok, queued"


def test_request_times_out_without_a_reply(server: NatsServer) -> None:
    handler = make_handler(server.url, timeout=0.5)
    try:
        # Nobody subscribed: the server says so at once.
        alone = handler.run(make_context({"subject": "rpc.nobody", "request": True}))
        # Someone subscribed who never answers: the time-out ends the wait.
        with Responder(server.url, "rpc.silent", None):
            silent = handler.run(make_context({"subject": "rpc.silent", "request": True}))
    finally:
        handler.close()
    for outcome in (alone, silent):
        assert outcome.status is ExecutionStatus.TIMED_OUT, outcome
        assert outcome.retryable and outcome.error_message
        assert "got no reply" in outcome.error_message
    assert alone.error_details is not None and alone.error_details["type"] == "no_responders"
    assert silent.error_details is not None and silent.error_details["type"] == "timeout"


def test_a_subject_outside_the_allowlist_is_refused_and_nothing_is_sent(
    server: NatsServer, handler: NatsHandler
) -> None:
    server.add_stream("OTHER", ["other.>"])
    outcome = handler.run(make_context({"subject": "other.secret"}))
    assert outcome.status is ExecutionStatus.FAILED and not outcome.retryable
    assert outcome.error_message is not None
    assert "NATS_SUBJECT_ALLOWLIST" in outcome.error_message
    assert "'other.secret'" in outcome.error_message
    wildcard = handler.run(make_context({"subject": "jobs.*"}))
    assert wildcard.status is ExecutionStatus.FAILED and not wildcard.retryable
    assert server.stream_messages("OTHER") == [] and server.stream_messages("JOBS") == []


def test_no_stream_for_the_subject_is_retryable(server: NatsServer) -> None:
    handler = make_handler(server.url, allow=("loose.>",))
    try:
        outcome = handler.run(make_context({"subject": "loose.end"}))
    finally:
        handler.close()
    assert outcome.status is ExecutionStatus.FAILED and outcome.retryable, outcome
    assert outcome.error_details is not None and outcome.error_details["type"] == "no_stream"


def test_server_down_is_a_retryable_failure_and_the_connection_comes_back(
    server: NatsServer,
) -> None:
    handler = make_handler(server.url, timeout=2.0)
    try:
        assert handler.run(make_context({"subject": "jobs.a"})).status is ExecutionStatus.COMPLETED
        server.stop()
        down = handler.run(make_context({"subject": "jobs.b"}))
        assert down.status is ExecutionStatus.FAILED and down.retryable, down
        server.start()  # same port, same store: the stream is still there

        def delivered() -> JobOutcome | None:
            outcome = handler.run(make_context({"subject": "jobs.c"}))
            return outcome if outcome.status is ExecutionStatus.COMPLETED else None

        wait_until(delivered, 20, 0.2, "a publish after the server came back")
    finally:
        handler.close()
    subjects = [m.subject for m in server.stream_messages("JOBS")]
    assert subjects == ["jobs.a", "jobs.c"]


def test_a_server_down_at_start_fails_retryable_then_is_used_once_up() -> None:
    server = NatsServer()  # a free port that nobody listens on yet
    handler = make_handler(server.url, timeout=2.0)
    try:
        outcome = handler.run(make_context({"subject": "jobs.a"}))
        assert outcome.status is ExecutionStatus.FAILED and outcome.retryable, outcome
        assert outcome.error_details is not None
        assert outcome.error_details["type"] == "unavailable"
        server.start()
        server.add_stream("JOBS", ["jobs.>"])

        def delivered() -> JobOutcome | None:
            late = handler.run(make_context({"subject": "jobs.b"}))
            return late if late.status is ExecutionStatus.COMPLETED else None

        # The connection attempt begun by the first run goes on and succeeds.
        wait_until(delivered, 20, 0.2, "a publish once the server is up")
        assert [m.subject for m in server.stream_messages("JOBS")] == ["jobs.b"]
    finally:
        handler.close()
        server.close()


def test_cancel_ends_the_wait(server: NatsServer, handler: NatsHandler) -> None:
    cancel = threading.Event()

    def cancel_once_asked(responder: Responder) -> None:
        wait_until(lambda: responder.received, 10, message="the request to arrive")
        cancel.set()

    with Responder(server.url, "rpc.silent", None) as responder:
        ctx = make_context({"subject": "rpc.silent", "request": True}, cancel_event=cancel)
        threading.Thread(target=cancel_once_asked, args=(responder,), daemon=True).start()
        outcome = handler.run(ctx)
    assert outcome.status is ExecutionStatus.CANCELLED, outcome


def test_credentials_in_the_url_stay_out_of_errors() -> None:
    server = NatsServer()
    handler = make_handler(f"nats://scheduler:s3cret-pw@127.0.0.1:{server.port}", timeout=1.0)
    try:
        outcome = handler.run(make_context({"subject": "jobs.a"}))
    finally:
        handler.close()
        server.close()
    assert outcome.retryable
    assert "s3cret-pw" not in json.dumps(
        {"m": outcome.error_message, "d": outcome.error_details}, default=str
    )
    assert f"127.0.0.1:{server.port}" in (outcome.error_message or "")


# -- through the daemon ------------------------------------------------------------------------


def insert_nats_schedule(url: str, payload: dict[str, Any]) -> uuid.UUID:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
            "payload) VALUES (gen_random_uuid(), 'example.com', 'interval', %s, 'nats', %s) "
            "RETURNING schedule_id",
            (Jsonb({"seconds": 1}), Jsonb(payload)),
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def completed_runs(url: str, schedule_id: uuid.UUID) -> list[dict[str, Any]]:
    return rows(
        url,
        "SELECT * FROM job_executions WHERE schedule_id = %s AND status = 'completed'",
        schedule_id,
    )


def test_a_schedule_puts_one_message_per_occurrence_through_the_daemon(
    server: NatsServer, env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    good = insert_nats_schedule(database_url, {"subject": "jobs.tick", "data": {"n": 1}})
    refused = insert_nats_schedule(database_url, {"subject": "secret.tick"})
    daemon_env = {**env, "NATS_URL": server.url, "NATS_SUBJECT_ALLOWLIST": "jobs.>"}
    with DaemonProcess(daemon_env, tmp_path / "a.log", instance_id="test-a") as proc:
        wait_until(
            lambda: len(completed_runs(database_url, good)) >= 3,
            20,
            message="three completed nats runs",
        )
        # One connection for the daemon, however many runs and worker threads.
        assert server.client_names().count("enhanced-scheduler") == 1
        assert proc.terminate() == 0
    completed = completed_runs(database_url, good)
    expected = {f"{good}:{format_utc(r['scheduled_for'])}:{r['attempt']}" for r in completed}
    messages = server.stream_messages("JOBS")
    sent = [headers_of(m)["Nats-Msg-Id"] for m in messages]
    assert len(sent) == len(set(sent)) == len(completed)  # one message per occurrence
    assert set(sent) == expected
    seqs = {r["metadata"]["seq"] for r in completed}
    assert seqs == {m.seq for m in messages}
    assert all(r["metadata"]["stream"] == "JOBS" for r in completed)
    (bad,) = rows(database_url, "SELECT * FROM schedules WHERE schedule_id = %s", refused)
    assert bad["last_status"] == "invalid"
    assert "NATS_SUBJECT_ALLOWLIST" in bad["last_error"]
    assert rows(database_url, "SELECT 1 FROM job_executions WHERE schedule_id = %s", refused) == []


def test_the_nats_password_never_reaches_the_daemon_log(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    password = "SECRETPW-nats-4e1b"
    with NatsServer(user="scheduler", password=password) as server:
        server.add_stream("JOBS", ["jobs.>"])
        schedule_id = insert_nats_schedule(database_url, {"subject": "jobs.tick"})
        daemon_env = {
            **env,
            "NATS_URL": server.url,
            "NATS_SUBJECT_ALLOWLIST": "jobs.>",
            "LOG_LEVEL": "DEBUG",
        }
        log_path = tmp_path / "a.log"
        with DaemonProcess(daemon_env, log_path, instance_id="test-a") as proc:
            wait_until(lambda: completed_runs(database_url, schedule_id), 20, message="a run")
            proc.wait_for_event("nats.connected")
            server.stop()  # a lost connection is logged too
            proc.wait_for_event("nats.disconnected")
            assert proc.terminate() == 0
    text = log_path.read_text()
    assert password not in text
    assert f"127.0.0.1:{server.port}" in text
    history = json.dumps(rows(database_url, "SELECT * FROM job_executions"), default=str)
    assert password not in history
