"""Python-handler callables for tests (named as `tests.support.handler_funcs:NAME`), and a
`make_context()` factory that builds a JobContext with sensible defaults."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import structlog

from services.engine.handlers import JobContext, RetryableError


def make_context(
    payload: Mapping[str, Any] | None = None,
    *,
    job_type: str = "python",
    timeout: float = 10.0,
    attempt: int = 1,
    scheduled_for: datetime | None = None,
    profile_id: UUID | None = None,
    domain: str = "example.com",
    cancel_event: threading.Event | None = None,
) -> JobContext:
    schedule_id, execution_id = uuid4(), uuid4()
    return JobContext(
        execution_id=execution_id,
        schedule_id=schedule_id,
        domain_config_id=uuid4(),
        domain=domain,
        profile_id=profile_id,
        scheduled_for=scheduled_for or datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        attempt=attempt,
        job_type=job_type,
        payload=dict(payload or {}),
        timeout=timeout,
        cancel_event=cancel_event or threading.Event(),
        log=structlog.get_logger().bind(
            schedule_id=str(schedule_id), execution_id=str(execution_id), attempt=attempt
        ),
    )


def ok(ctx: JobContext) -> dict[str, Any]:
    """Echoes the context, so a test can see what the callable was given."""
    return {
        "schedule_id": str(ctx.schedule_id),
        "execution_id": str(ctx.execution_id),
        "domain": ctx.domain,
        "attempt": ctx.attempt,
        "payload": dict(ctx.payload),
    }


def noop(ctx: JobContext) -> None:
    return None


def with_scan_id(ctx: JobContext) -> dict[str, Any]:
    return {"scan_id": str(ctx.payload.get("scan_id") or uuid4())}


def not_a_dict(ctx: JobContext) -> list[int]:
    return [1, 2, 3]


def boom(ctx: JobContext) -> None:
    raise ValueError("boom: the job broke")


def flaky(ctx: JobContext) -> None:
    raise RetryableError("upstream busy, try later")


def slow(ctx: JobContext) -> dict[str, Any]:
    """Waits up to payload.seconds (default 30), returning early when the run is cancelled."""
    cancelled = ctx.cancel_event.wait(float(ctx.payload.get("seconds", 30)))
    return {"cancelled": cancelled}


def stubborn(ctx: JobContext) -> None:
    """Ignores the cancel event: sleeps payload.seconds whatever happens."""
    time.sleep(float(ctx.payload.get("seconds", 0.2)))


def retry_then_ok(ctx: JobContext) -> dict[str, Any]:
    """Fails its first attempt (retryable) and completes on the next."""
    if ctx.attempt == 1:
        raise RetryableError("first attempt fails on purpose")
    return {"attempt": ctx.attempt}


def scripted(ctx: JobContext) -> dict[str, Any]:
    """Fails (not retryable) while the file payload.script says `fail`, else completes."""
    with open(str(ctx.payload["script"]), encoding="utf-8") as f:
        if f.read().strip() == "fail":
            raise ValueError("scripted failure")
    return {"ok": True}
