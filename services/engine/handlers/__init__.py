"""Job handlers: one per job type (`http`, `command`, `python`, `nats`, `celery`), in a registry."""

from __future__ import annotations

from collections.abc import Sequence

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import (
    Handler,
    HandlerRegistry,
    JobContext,
    JobOutcome,
    RunLogger,
    format_utc,
)
from services.engine.handlers.celery import CeleryHandler
from services.engine.handlers.command import CommandHandler
from services.engine.handlers.http import HttpHandler
from services.engine.handlers.nats import NatsHandler
from services.engine.handlers.nats_link import NatsOptions
from services.engine.handlers.python import PythonHandler, register_python_handler
from services.errors import RetryableError, UnknownJobType
from services.model.vocabulary import JobType


def build_handler_registry(
    *,
    http_allowed_hosts: Sequence[str],
    job_webhook_url: str | None,
    command_allowlist: Sequence[str],
    python_handler_allowlist: Sequence[str],
    request_timeout: float,
    nats_options: NatsOptions | None = None,
    nats_subject_allowlist: Sequence[str] = (),
    celery_broker_url: str | None = None,
    celery_result_backend: str | None = None,
    celery_task_allowlist: Sequence[str] = (),
    celery_timeout: float = 10.0,
    clock: Clock = SYSTEM_CLOCK,
) -> HandlerRegistry:
    """Every job type's handler. Nothing connects here: NATS and the Celery broker are reached
    at a nats or celery job's first run (the defaults, with empty allowlists, refuse them all)."""
    return HandlerRegistry(
        {
            JobType.HTTP.value: HttpHandler(
                allowed_hosts=http_allowed_hosts,
                webhook_url=job_webhook_url,
                request_timeout=request_timeout,
                clock=clock,
            ),
            JobType.COMMAND.value: CommandHandler(
                allowlist=command_allowlist, kill_grace=1.0, clock=clock
            ),
            JobType.PYTHON.value: PythonHandler(allowlist=python_handler_allowlist, clock=clock),
            JobType.NATS.value: NatsHandler(
                options=nats_options or NatsOptions(),
                subject_allowlist=nats_subject_allowlist,
                clock=clock,
            ),
            JobType.CELERY.value: CeleryHandler(
                broker_url=celery_broker_url,
                result_backend=celery_result_backend,
                task_allowlist=celery_task_allowlist,
                timeout=celery_timeout,
                clock=clock,
            ),
        }
    )


__all__ = [
    "CeleryHandler",
    "CommandHandler",
    "Handler",
    "HandlerRegistry",
    "HttpHandler",
    "JobContext",
    "JobOutcome",
    "NatsHandler",
    "NatsOptions",
    "PythonHandler",
    "RetryableError",
    "RunLogger",
    "UnknownJobType",
    "build_handler_registry",
    "format_utc",
    "register_python_handler",
]
