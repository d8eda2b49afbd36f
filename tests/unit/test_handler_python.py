from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.engine.handlers import (
    JobContext,
    JobOutcome,
    PythonHandler,
    UnknownJobType,
    build_handler_registry,
    register_python_handler,
)
from services.errors import SchedulerError
from services.model.vocabulary import ExecutionStatus, JobType
from tests.support.handler_funcs import make_context

FUNCS = "tests.support.handler_funcs"


def run(spec: str, allowlist: list[str] | None = None, **kw: Any) -> JobOutcome:
    payload = {"callable": spec, **kw.pop("payload", {})}
    handler = PythonHandler(allowlist=["tests.support"] if allowlist is None else allowlist)
    return handler.run(make_context(payload, **kw))


def test_allowlisted_callable_result_goes_to_metadata() -> None:
    ctx = make_context({"callable": f"{FUNCS}:ok", "x": 1}, attempt=2)
    outcome = PythonHandler(allowlist=["tests.support"]).run(ctx)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.metadata == {
        "schedule_id": str(ctx.schedule_id),
        "execution_id": str(ctx.execution_id),
        "domain": "example.com",
        "attempt": 2,
        "payload": {"callable": f"{FUNCS}:ok", "x": 1},
    }
    assert outcome.error_message is None


def test_exact_module_in_allowlist_is_allowed() -> None:
    assert run(f"{FUNCS}:noop", allowlist=[FUNCS]).status is ExecutionStatus.COMPLETED


def test_none_and_non_dict_results() -> None:
    assert run(f"{FUNCS}:noop").metadata is None
    assert run(f"{FUNCS}:not_a_dict").metadata == {"result": "[1, 2, 3]"}


def test_scan_id_in_result_is_kept() -> None:
    scan_id = uuid4()
    outcome = run(f"{FUNCS}:with_scan_id", payload={"scan_id": str(scan_id)})
    assert outcome.scan_id == scan_id


def test_os_system_is_refused_and_never_imported() -> None:
    outcome = run("os:system", allowlist=["tests.support", "json"])
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_message is not None
    assert "PYTHON_HANDLER_ALLOWLIST" in outcome.error_message
    assert "tests.support, json" in outcome.error_message
    assert outcome.error_details == {
        "type": "callable_not_allowed",
        "retryable": False,
        "callable": "os:system",
    }
    # `this` prints the Zen of Python when imported: proof that refused modules stay unloaded.
    assert "this" not in sys.modules
    assert run("this:s").error_details == {
        "type": "callable_not_allowed",
        "retryable": False,
        "callable": "this:s",
    }
    assert "this" not in sys.modules


@pytest.mark.parametrize(
    ("spec", "allowed"),
    [
        ("tests.support.handler_funcs:ok", True),
        ("tests.supportx.y:z", False),
        ("tests.suppor:ok", False),
        ("tests:ok", False),
        ("os:system", False),
        ("os.path:join", False),
    ],
)
def test_prefix_matches_whole_dotted_components(spec: str, allowed: bool) -> None:
    outcome = run(spec, allowlist=["tests.support"])
    assert (outcome.status is ExecutionStatus.COMPLETED) is allowed
    if not allowed:
        assert outcome.error_details is not None
        assert outcome.error_details["type"] == "callable_not_allowed"


@pytest.mark.parametrize("spec", [None, 42, "", "no_colon", "a.b:c.d", "a..b:c", ":f", "m:"])
def test_malformed_callable_fails_clearly(spec: object) -> None:
    ctx = make_context({"callable": spec})
    outcome = PythonHandler(allowlist=["a", "m", "no_colon"]).run(ctx)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "invalid_callable"


def test_missing_module_or_function_fails_without_retry() -> None:
    missing_module = run("tests.support.does_not_exist:f")
    assert missing_module.error_details is not None
    assert missing_module.error_details["type"] == "import_error"
    missing_function = run(f"{FUNCS}:does_not_exist")
    assert missing_function.status is ExecutionStatus.FAILED
    assert "does_not_exist" in (missing_function.error_message or "")


def test_registered_handler_needs_no_allowlist() -> None:
    seen: list[JobContext] = []

    def handler(ctx: JobContext) -> dict[str, Any]:
        seen.append(ctx)
        return {"handled": True}

    name = f"test-registered-{uuid4()}"
    register_python_handler(name, handler)
    outcome = run(name, allowlist=[])
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.metadata == {"handled": True}
    assert len(seen) == 1


def test_register_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        register_python_handler(" ", lambda ctx: None)
    with pytest.raises(TypeError):
        register_python_handler("x", "not callable")  # type: ignore[arg-type]


def test_exception_becomes_failed_with_traceback_tail() -> None:
    outcome = run(f"{FUNCS}:boom")
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is False
    assert outcome.error_message == "ValueError: boom: the job broke"
    details = outcome.error_details
    assert details is not None
    assert details["type"] == "ValueError"
    assert details["retryable"] is False
    assert "Traceback (most recent call last)" in details["traceback"]
    assert 'raise ValueError("boom: the job broke")' in details["traceback"]


def test_retryable_error_is_retryable() -> None:
    outcome = run(f"{FUNCS}:flaky")
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.retryable is True
    assert outcome.error_details is not None
    assert outcome.error_details["retryable"] is True
    assert "upstream busy" in (outcome.error_message or "")


def test_sys_exit_in_callable_is_a_failure_not_a_dead_thread() -> None:
    def exits(ctx: JobContext) -> None:
        sys.exit(3)

    name = f"test-exit-{uuid4()}"
    register_python_handler(name, exits)
    outcome = run(name)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "SystemExit"


def test_return_after_timeout_is_timed_out() -> None:
    outcome = run(f"{FUNCS}:stubborn", payload={"seconds": 0.15}, timeout=0.05)
    assert outcome.status is ExecutionStatus.TIMED_OUT
    assert outcome.retryable is True


def test_cancel_event_stops_a_cooperative_callable() -> None:
    cancel = threading.Event()
    outcomes: list[JobOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(
            run(f"{FUNCS}:slow", payload={"seconds": 30}, cancel_event=cancel)
        )
    )
    worker.start()
    cancel.set()
    worker.join(5)
    assert outcomes and outcomes[0].status is ExecutionStatus.CANCELLED


def test_cancelled_before_start_does_not_call() -> None:
    cancel = threading.Event()
    cancel.set()
    outcome = run(f"{FUNCS}:boom", cancel_event=cancel)
    assert outcome.status is ExecutionStatus.CANCELLED


def test_non_json_result_values_are_made_storable() -> None:
    marker = object()

    def odd(ctx: JobContext) -> dict[str, Any]:
        return {"when": datetime(2026, 1, 1, tzinfo=UTC), "obj": marker}

    name = f"test-odd-{uuid4()}"
    register_python_handler(name, odd)
    metadata = run(name).metadata
    assert metadata is not None
    assert metadata["when"] == repr(datetime(2026, 1, 1, tzinfo=UTC))
    assert metadata["obj"] == repr(marker)


@pytest.mark.parametrize(
    ("scheduled_for", "key_time"),
    [
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "2026-12-01T10:00:00Z"),
        (datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC), "2026-12-01T10:00:00.250000Z"),
        (datetime.fromisoformat("2026-12-01T11:00:00+01:00"), "2026-12-01T10:00:00Z"),
    ],
)
def test_idempotency_key_format(scheduled_for: datetime, key_time: str) -> None:
    ctx = make_context(scheduled_for=scheduled_for, attempt=3)
    assert ctx.idempotency_key() == f"{ctx.schedule_id}:{key_time}:3"


def test_context_refuses_naive_scheduled_for() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_context(scheduled_for=datetime(2026, 12, 1, 10, 0))


def test_outcome_refuses_non_final_status() -> None:
    with pytest.raises(ValueError):
        JobOutcome(status=ExecutionStatus.RUNNING)


def test_registry_lookup_and_unknown_type() -> None:
    registry = build_handler_registry(
        http_allowed_hosts=[],
        job_webhook_url=None,
        command_allowlist=[],
        python_handler_allowlist=[],
        request_timeout=1.0,
    )
    try:
        # Every job type of the vocabulary has its handler.
        every = tuple(sorted(t.value for t in JobType))
        assert registry.job_types == every
        assert isinstance(registry.get("python"), PythonHandler)
        with pytest.raises(UnknownJobType, match=r"'ftp'.*" + ", ".join(every)) as info:
            registry.get("ftp")
        assert isinstance(info.value, SchedulerError)
    finally:
        registry.close()


def test_handler_bug_becomes_failed_outcome() -> None:
    # A payload whose .get raises stands for any bug inside a handler: run() must not raise.
    ctx = make_context()
    object.__setattr__(ctx, "payload", _ExplodingMapping())
    outcome = PythonHandler(allowlist=[]).run(ctx)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error_details is not None
    assert outcome.error_details["type"] == "RuntimeError"
    assert "payload exploded" in outcome.error_details["traceback"]


class _ExplodingMapping(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("payload exploded")
