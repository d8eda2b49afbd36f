"""What every job handler shares: the run's context, its outcome, the protocol and the registry.

A handler turns one `JobContext` into one `JobOutcome` and never raises: whatever goes wrong
inside it becomes a FAILED outcome, so the runner always has a result to record.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from services.errors import UnknownJobType
from services.model.vocabulary import ExecutionStatus

# How much of a traceback, response body or output stream an outcome keeps.
TAIL_CHARS = 4096

_OUTCOME_STATUSES = frozenset(
    {
        ExecutionStatus.COMPLETED,
        ExecutionStatus.FAILED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.CANCELLED,
    }
)


class RunLogger(Protocol):
    """The part of a structlog bound logger that handlers use (any structlog flavour fits)."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`; fractional seconds only when there are some."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else text[-limit:]


def parse_scan_id(value: object) -> UUID | None:
    """A scan id given by a job's answer, or None when it is absent or not a UUID."""
    if isinstance(value, UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


def json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy that json.dumps accepts, so a handler's result can always be stored as JSONB."""
    result: dict[str, Any] = json.loads(json.dumps(dict(value), default=repr))
    return result


@dataclass(frozen=True)
class JobContext:
    execution_id: UUID
    schedule_id: UUID
    domain_config_id: UUID
    domain: str
    profile_id: UUID | None
    scheduled_for: datetime
    attempt: int
    job_type: str
    payload: Mapping[str, Any]
    timeout: float
    cancel_event: threading.Event = field(repr=False)
    log: RunLogger = field(repr=False)

    def __post_init__(self) -> None:
        if self.scheduled_for.tzinfo is None:
            raise ValueError("JobContext.scheduled_for must be timezone-aware")

    def idempotency_key(self) -> str:
        return f"{self.schedule_id}:{format_utc(self.scheduled_for)}:{self.attempt}"


@dataclass(frozen=True)
class JobOutcome:
    status: ExecutionStatus
    retryable: bool = False
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    scan_id: UUID | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in _OUTCOME_STATUSES:
            raise ValueError(f"a handler cannot end a run as {self.status.value!r}")

    @classmethod
    def failure(
        cls,
        kind: str,
        message: str,
        *,
        retryable: bool,
        status: ExecutionStatus = ExecutionStatus.FAILED,
        metadata: dict[str, Any] | None = None,
        **details: Any,
    ) -> JobOutcome:
        """A run that did not complete; `kind` is a stable machine-readable error type."""
        return cls(
            status=status,
            retryable=retryable,
            error_message=message,
            error_details={"type": kind, "retryable": retryable, **details},
            metadata=metadata,
        )

    @classmethod
    def from_exception(cls, exc: BaseException, *, retryable: bool) -> JobOutcome:
        trace = "".join(traceback.format_exception(exc))
        return cls.failure(
            type(exc).__name__,
            f"{type(exc).__name__}: {exc}",
            retryable=retryable,
            exception=type(exc).__qualname__,
            traceback=tail(trace),
        )


class Handler(Protocol):
    def run(self, ctx: JobContext) -> JobOutcome: ...


def run_guarded(ctx: JobContext, name: str, body: Callable[[JobContext], JobOutcome]) -> JobOutcome:
    """Runs a handler body; a bug in it becomes a FAILED outcome instead of a lost run."""
    if ctx.cancel_event.is_set():
        return JobOutcome(status=ExecutionStatus.CANCELLED, error_message="cancelled before start")
    try:
        return body(ctx)
    except Exception as exc:
        ctx.log.error(f"handler.{name}.crashed", error_type=type(exc).__name__)
        return JobOutcome.from_exception(exc, retryable=False)


class HandlerRegistry:
    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers = dict(handlers)

    @property
    def job_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def get(self, job_type: str) -> Handler:
        try:
            return self._handlers[job_type]
        except KeyError:
            raise UnknownJobType(job_type, self.job_types) from None

    def close(self) -> None:
        """Releases what handlers hold between runs (the HTTP connection pool)."""
        for handler in self._handlers.values():
            close = getattr(handler, "close", None)
            if callable(close):
                close()
