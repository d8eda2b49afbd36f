"""The `celery` job: hand `payload.task` to a Celery broker with `send_task`, by name.

The scheduler never imports a user's task: `send_task` needs only the name. The occurrence's
keys go with the message: `task_id` is the execution_id and the headers carry the
`Idempotency-Key`, so a worker (or a result backend) can recognise a re-send. The run's envelope
(the `http` job's JSON body) rides in the `scheduler` header rather than in `kwargs`, so the user's
task signatures stay as they were under celery beat.

On RabbitMQ every publish waits for the broker's confirm, so `completed` means the broker holds
the message. With `payload.wait: true` the run then polls `CELERY_RESULT_BACKEND` for the task's
state until the job's time-out. No step blocks for long: each connect, publish and confirm gets
a third of `CELERY_TIMEOUT`, so one retry on a fresh connection still fits in it, and an
unreachable broker is a retryable failure. (A publish whose confirm never came is sent once more
by that retry: the broker may then hold it twice, under the same task_id and key.)

Celery and kombu are imported where they are used, at the first send, not with this module: a
daemon without celery jobs would pay their start-up time and memory for nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import (
    TAIL_CHARS,
    JobContext,
    JobOutcome,
    json_safe,
    run_guarded,
    tail,
)
from services.engine.handlers.http import envelope
from services.model.celery_payload import celery_payload_problems
from services.model.vocabulary import ExecutionStatus

if TYPE_CHECKING:
    from celery import Celery

# A task's JSON result up to this size is kept whole in metadata; larger ones only as a tail.
MAX_KEPT_RESULT_CHARS = 4096
# Result polling starts fast (most tasks are quick) and backs off to this interval.
MAX_POLL_INTERVAL = 0.5
_AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
_READY_FAILED = frozenset({"FAILURE", "REVOKED", "REJECTED"})
# Connect, publish and confirm each get this share of CELERY_TIMEOUT (see the module's text).
_STEP_SHARE = 1 / 3


def build_celery_app(broker_url: str, result_backend: str | None, timeout: float) -> Celery:
    """A Celery app that only sends: no task modules, no retries beyond `timeout`."""
    from celery import Celery  # at the first send (see the module's text)

    app = Celery("enhanced-scheduler", set_as_current=False)
    options: dict[str, Any] = {}
    if urlsplit(broker_url).scheme in _AMQP_SCHEMES:
        # Without confirms a publish returns before the broker has the message.
        options["confirm_publish"] = True
    app.conf.update(
        broker_url=broker_url,
        result_backend=result_backend or "disabled",
        broker_transport_options=options,
        broker_connection_timeout=max(0.1, timeout * _STEP_SHARE),
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        # Producers are idle between runs and nobody would send their heartbeats.
        broker_heartbeat=0,
        # One quick retry covers a pooled connection the broker closed while idle.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        imports=(),
        include=(),
        # A Redis backend is one client with a thread-safe pool, shared by every worker thread;
        # others (rpc://) stay per thread, as Celery makes them by default.
        result_backend_thread_safe=urlsplit(result_backend or "").scheme in ("redis", "rediss"),
    )
    return app


def close_celery_app(app: Celery) -> None:
    """Closes the sockets the app holds. Celery's own close() only forgets its pools, and its
    producers come from kombu's process-wide pools, keyed by the broker's address: those are
    closed and dropped too, so that a later app for the same broker starts with fresh ones."""
    from kombu import pools  # loaded with the app (see the module's text)
    from kombu.utils.collections import eqhash

    connection = app.connection_for_write()
    key = eqhash(connection)  # type: ignore[no-untyped-call]
    for group in (pools.producers, pools.connections):
        if key in group:  # `group[connection]` would create a pool when there is none
            group[connection].force_close_all()
            del group[connection]
    connection.release()
    if app._pool is not None:
        app._pool.force_close_all()
    client = getattr(app._backend_cache, "client", None)
    if client is not None:
        client.close()
    app.close()


class CeleryHandler:
    def __init__(
        self,
        *,
        broker_url: str | None,
        result_backend: str | None,
        task_allowlist: Sequence[str],
        timeout: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._broker_url = broker_url or None
        self._result_backend = result_backend or None
        self._allowlist = tuple(entry for entry in (e.strip() for e in task_allowlist) if entry)
        self._timeout = timeout
        self._clock = clock
        self._app: Celery | None = None
        self._app_lock = threading.Lock()
        password = urlsplit(broker_url).password if broker_url else None
        backend_password = urlsplit(result_backend).password if result_backend else None
        self._secrets = tuple(p for p in (password, backend_password) if p)

    def close(self) -> None:
        with self._app_lock:
            if self._app is not None:
                close_celery_app(self._app)
                self._app = None

    def run(self, ctx: JobContext) -> JobOutcome:
        return run_guarded(ctx, "celery", self._run)

    def _celery(self) -> Celery:
        """The daemon's one app, made on first use (never, in a daemon without celery jobs)."""
        with self._app_lock:
            if self._app is None:
                assert self._broker_url is not None
                self._app = build_celery_app(self._broker_url, self._result_backend, self._timeout)
            return self._app

    def _scrub(self, text: str) -> str:
        """Error text without the broker's or backend's password (kombu may quote a URL)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _refusal(self, ctx: JobContext) -> JobOutcome | None:
        problems = celery_payload_problems(ctx.payload, self._allowlist)
        if problems:
            return JobOutcome.failure("invalid_payload", "; ".join(problems), retryable=False)
        if self._broker_url is None:
            return JobOutcome.failure(
                "no_broker", "celery job needs CELERY_BROKER_URL to be set", retryable=False
            )
        if ctx.payload.get("wait") is True and self._result_backend is None:
            return JobOutcome.failure(
                "no_result_backend",
                "celery job with wait: true needs CELERY_RESULT_BACKEND to be set",
                retryable=False,
            )
        return None

    def _run(self, ctx: JobContext) -> JobOutcome:
        refused = self._refusal(ctx)
        if refused is not None:
            ctx.log.warning("handler.celery.refused", reason=refused.error_message)
            return refused
        task: str = ctx.payload["task"]
        queue: str | None = ctx.payload.get("queue")
        task_id = str(ctx.execution_id)
        app = self._celery()
        from kombu.exceptions import KombuError, OperationalError  # loaded with the app

        started = self._clock.monotonic()
        try:
            result = app.send_task(
                task,
                args=list(ctx.payload.get("args", [])),
                kwargs=dict(ctx.payload.get("kwargs", {})),
                task_id=task_id,
                queue=queue,
                headers={"Idempotency-Key": ctx.idempotency_key(), "scheduler": envelope(ctx)},
                confirm_timeout=self._timeout * _STEP_SHARE,
                timeout=self._timeout * _STEP_SHARE,
            )
        except (OperationalError, KombuError, OSError, TimeoutError) as exc:
            message = self._scrub(str(exc) or repr(exc))
            ctx.log.warning("handler.celery.send_failed", error_type=type(exc).__name__)
            return JobOutcome.failure(
                "broker_error",
                f"celery task {task!r} not sent: {message}",
                retryable=True,
                exception=type(exc).__name__,
            )
        sent = {"task": task, "task_id": task_id, "queue": queue}
        ctx.log.info("handler.celery.sent", task=task, queue=queue)
        if ctx.payload.get("wait") is not True:
            return JobOutcome(status=ExecutionStatus.COMPLETED, metadata=sent)
        remaining = ctx.timeout - (self._clock.monotonic() - started)
        return self._await(ctx, app, result.id, remaining, sent)

    def _await(
        self, ctx: JobContext, app: Celery, task_id: str, budget: float, sent: dict[str, Any]
    ) -> JobOutcome:
        """Polls the task's state until it is ready, the budget is spent or the run is cancelled."""
        deadline = self._clock.monotonic() + budget
        interval = 0.02
        while True:
            try:
                # A plain read of the task's state: AsyncResult.get()'s shared pub/sub consumer
                # is not safe across the runner's threads.
                meta: dict[str, Any] = app.backend.get_task_meta(task_id)
            except Exception as exc:  # a backend outage: the task was sent, its result unknown
                return JobOutcome.failure(
                    "result_backend_error",
                    f"celery task sent, but its result could not be read: "
                    f"{self._scrub(str(exc) or repr(exc))}",
                    retryable=False,
                    metadata=sent,
                )
            state = str(meta.get("status", "PENDING"))
            if state == "SUCCESS":
                return JobOutcome(
                    status=ExecutionStatus.COMPLETED,
                    metadata={**sent, "state": state, **_kept_result(meta.get("result"))},
                )
            if state in _READY_FAILED:
                return self._task_failed(ctx, state, meta, sent)
            left = deadline - self._clock.monotonic()
            if left <= 0:
                # Not retryable: the task is in the broker and may still run, and a new
                # attempt would send it a second time under a new key.
                return JobOutcome.failure(
                    "timeout",
                    f"celery task {sent['task']!r} gave no result within {budget:.3g} s "
                    f"(last state {state})",
                    retryable=False,
                    status=ExecutionStatus.TIMED_OUT,
                    metadata={**sent, "state": state},
                )
            if ctx.cancel_event.wait(min(interval, left)):
                return self._cancelled(sent)
            interval = min(MAX_POLL_INTERVAL, interval * 2)

    def _task_failed(
        self, ctx: JobContext, state: str, meta: dict[str, Any], sent: dict[str, Any]
    ) -> JobOutcome:
        error = meta.get("result")
        described = (
            f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        )
        ctx.log.info("handler.celery.task_failed", state=state)
        return JobOutcome.failure(
            "task_failed",
            f"celery task {sent['task']!r} ended {state}: {tail(str(described), 1000)}",
            retryable=False,
            metadata={**sent, "state": state},
            traceback=tail(str(meta.get("traceback") or "")),
        )

    @staticmethod
    def _cancelled(sent: dict[str, Any]) -> JobOutcome:
        # The task is not revoked: the handler cannot tell a cancel request from a shutdown or
        # a lost lock, and a scheduler restarting must not undo work already handed over.
        return JobOutcome.failure(
            "cancelled",
            f"stopped waiting for celery task {sent['task']!r}; the task itself was not revoked",
            retryable=False,
            status=ExecutionStatus.CANCELLED,
            metadata=sent,
        )


def _kept_result(result: object) -> dict[str, Any]:
    """The task's result for metadata: whole when small, else the tail of its JSON text."""
    text = json.dumps(result, default=repr)
    if len(text) <= MAX_KEPT_RESULT_CHARS:
        return json_safe({"result": result})
    return {"result_tail": text[-TAIL_CHARS:]}
