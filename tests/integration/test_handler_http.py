"""The http handler against a real local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from services.engine.handlers import HttpHandler, JobOutcome
from services.model.vocabulary import ExecutionStatus
from tests.support.handler_funcs import make_context
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse, unused_port


@pytest.fixture
def server() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def handler() -> Iterator[HttpHandler]:
    # One handler (one connection pool) for the module, as in the daemon: building an
    # httpx.Client loads the TLS trust store, which costs ~0.1 s.
    h = HttpHandler(allowed_hosts=["127.0.0.1"], webhook_url=None, request_timeout=5.0)
    yield h
    h.close()


def run(handler: HttpHandler, url: str | None, **kw: Any) -> JobOutcome:
    payload: dict[str, Any] = dict(kw.pop("payload", {}))
    if url is not None:
        payload["url"] = url
    return handler.run(make_context(payload, job_type="http", **kw))


def test_posts_the_contract_body_and_headers(
    server: RecordingHTTPServer, handler: HttpHandler
) -> None:
    profile_id = uuid4()
    when = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    ctx = make_context(
        {"url": f"{server.url}/hook?x=1", "depth": 2},
        job_type="http",
        attempt=2,
        scheduled_for=when,
        profile_id=profile_id,
    )
    outcome = handler.run(ctx)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome
    (request,) = server.wait_for_requests(1)
    assert request.method == "POST"
    assert request.path == "/hook?x=1"
    assert request.header("content-type") == "application/json"
    assert request.header("idempotency-key") == f"{ctx.schedule_id}:2026-12-01T10:00:00Z:2"
    assert request.json == {
        "execution_id": str(ctx.execution_id),
        "schedule_id": str(ctx.schedule_id),
        "domain_config_id": str(ctx.domain_config_id),
        "domain": "example.com",
        "profile_id": str(profile_id),
        "scheduled_for": "2026-12-01T10:00:00Z",
        "attempt": 2,
        "payload": {"url": f"{server.url}/hook?x=1", "depth": 2},
    }
    assert outcome.metadata is not None
    assert outcome.metadata["http_status"] == 200
    assert outcome.metadata["response"] == {"ok": True}


def test_null_profile_id(server: RecordingHTTPServer, handler: HttpHandler) -> None:
    run(handler, server.url)
    (request,) = server.wait_for_requests(1)
    assert request.json["profile_id"] is None


def test_scan_id_from_the_answer_is_kept(server: RecordingHTTPServer, handler: HttpHandler) -> None:
    scan_id = uuid4()
    server.enqueue(ScriptedResponse(201, {"scan_id": str(scan_id)}))
    outcome = run(handler, server.url)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.scan_id == scan_id


def test_invalid_scan_id_still_completes_and_is_noted(
    server: RecordingHTTPServer, handler: HttpHandler
) -> None:
    server.enqueue(ScriptedResponse(200, {"scan_id": "not-a-uuid"}))
    outcome = run(handler, server.url)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.scan_id is None
    assert outcome.metadata is not None
    assert outcome.metadata["invalid_scan_id"] == "'not-a-uuid'"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(503, True), (500, True), (429, True), (408, True), (400, False), (404, False), (302, False)],
)
def test_status_classification(
    server: RecordingHTTPServer, handler: HttpHandler, status: int, retryable: bool
) -> None:
    server.enqueue(
        ScriptedResponse(status, {"error": "nope"}, headers={"Location": f"{server.url}/x"})
    )
    outcome = run(handler, server.url)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is retryable
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "http_status"
    assert outcome.error_details["retryable"] is retryable
    assert outcome.error_details["http_status"] == status
    assert outcome.error_details["body_tail"] == '{"error": "nope"}'
    assert str(status) in (outcome.error_message or "")
    # A redirect is never followed.
    assert len(server.wait_for_requests(1)) == 1


def test_retry_after_is_kept(server: RecordingHTTPServer, handler: HttpHandler) -> None:
    server.enqueue(ScriptedResponse(429, headers={"Retry-After": "7"}))
    outcome = run(handler, server.url)
    assert outcome.error_details is not None
    assert outcome.error_details["retry_after"] == "7"


def test_body_tail_is_bounded(server: RecordingHTTPServer, handler: HttpHandler) -> None:
    server.enqueue(ScriptedResponse(500, body=b"x" * 100_000 + b"END"))
    outcome = run(handler, server.url)
    assert outcome.error_details is not None
    body_tail = outcome.error_details["body_tail"]
    assert len(body_tail) == 4096
    assert body_tail.endswith("END")


def test_connection_refused_is_retryable(handler: HttpHandler) -> None:
    outcome = run(handler, f"http://127.0.0.1:{unused_port()}/hook")
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is True
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "connection_error"


def test_slow_answer_over_the_timeout_is_retryable(
    server: RecordingHTTPServer, handler: HttpHandler
) -> None:
    server.enqueue(ScriptedResponse(200, {"ok": True}, delay=5.0))
    outcome = run(handler, server.url, timeout=0.3)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is True
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "timeout"


def test_request_timeout_caps_a_long_job_timeout(server: RecordingHTTPServer) -> None:
    server.enqueue(ScriptedResponse(200, delay=5.0))
    short = HttpHandler(allowed_hosts=["127.0.0.1"], webhook_url=None, request_timeout=0.3)
    try:
        outcome = run(short, server.url, timeout=3600)
    finally:
        short.close()
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "timeout"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/",
        "http://127.0.0.2:{port}/",
        "http://127.0.0.1.nip.io:{port}/",
        "http://127.0.0.1@localhost:{port}/",
    ],
)
def test_host_not_in_allowlist_is_refused_and_never_called(
    server: RecordingHTTPServer, handler: HttpHandler, url: str
) -> None:
    outcome = run(handler, url.format(port=server.port))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "host_not_allowed"
    assert "HTTP_ALLOWED_HOSTS" in (outcome.error_message or "")
    assert outcome.error_details["host"] in (outcome.error_message or "")
    assert server.requests == []


def test_allowlist_is_case_insensitive(server: RecordingHTTPServer) -> None:
    h = HttpHandler(allowed_hosts=[" LOCALHOST "], webhook_url=None, request_timeout=5.0)
    try:
        outcome = run(h, f"http://LocalHost:{server.port}/")
    finally:
        h.close()
    assert outcome.status is ExecutionStatus.COMPLETED


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", 42, "http://[::1"])
def test_bad_urls_are_refused(handler: HttpHandler, url: object) -> None:
    outcome = handler.run(make_context({"url": url}, job_type="http"))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "invalid_url"


def test_webhook_url_is_the_fallback(server: RecordingHTTPServer) -> None:
    # The webhook is the operator's own setting: its host need not be in the allowlist.
    h = HttpHandler(allowed_hosts=[], webhook_url=f"{server.url}/jobs", request_timeout=5.0)
    try:
        outcome = run(h, None, payload={"k": "v"})
    finally:
        h.close()
    assert outcome.status is ExecutionStatus.COMPLETED
    (request,) = server.wait_for_requests(1)
    assert request.path == "/jobs"
    assert request.json["payload"] == {"k": "v"}


def test_no_url_at_all_fails_clearly(handler: HttpHandler) -> None:
    outcome = run(handler, None)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert "JOB_WEBHOOK_URL" in (outcome.error_message or "")


def test_cancelled_before_start_sends_nothing(
    server: RecordingHTTPServer, handler: HttpHandler
) -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = run(handler, server.url, cancel_event=cancel)
    assert outcome.status is ExecutionStatus.CANCELLED
    assert server.requests == []


def test_payload_secrets_are_never_logged(
    server: RecordingHTTPServer, handler: HttpHandler
) -> None:
    secret = "s3cr3t-token-value"
    server.enqueue(ScriptedResponse(500, {"echo": secret}))
    with capture_logs() as logs:
        run(handler, f"{server.url}/hook?token={secret}", payload={"password": secret})
    assert logs, "the handler should log its request"
    assert {entry["event"] for entry in logs} >= {"handler.http.request", "handler.http.response"}
    assert secret not in repr(logs)
