"""The `nats` job: publish the run's envelope to JetStream, or make a core NATS request.

Publish (the default) sends the `http` job's JSON body to `payload.subject` with the header
`Nats-Msg-Id: <Idempotency-Key>`, so the stream's duplicate window drops a second send of the
same occurrence and attempt; the run completes when a stream acknowledges it. With
`payload.request: true` it is a request instead, completed by the first reply.

Only subjects matching NATS_SUBJECT_ALLOWLIST are used. Bodies are never logged.

nats-py is imported at a nats job's first run (past the payload check), not with this module: a
daemon without nats jobs would pay its start-up time and memory for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import TAIL_CHARS, JobContext, JobOutcome, run_guarded
from services.engine.handlers.http import MAX_KEPT_JSON_CHARS, envelope
from services.engine.handlers.nats_link import (
    NatsCallCancelled,
    NatsDeadline,
    NatsLink,
    NatsOptions,
    NatsUnavailable,
)
from services.model.nats_subject import nats_payload_problems
from services.model.vocabulary import ExecutionStatus

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import PubAck


class NatsHandler:
    def __init__(
        self,
        *,
        options: NatsOptions,
        subject_allowlist: Sequence[str],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._options = options
        self._allowlist = tuple(subject_allowlist)
        self._clock = clock
        self._link = NatsLink(options)

    def close(self) -> None:
        self._link.close()

    def run(self, ctx: JobContext) -> JobOutcome:
        return run_guarded(ctx, "nats", self._run)

    def _run(self, ctx: JobContext) -> JobOutcome:
        problems = nats_payload_problems(ctx.payload, self._allowlist)
        if problems:
            ctx.log.warning("handler.nats.refused", reason=problems[0])
            return JobOutcome.failure("invalid_payload", "; ".join(problems), retryable=False)
        import nats.errors  # here, not at the top (see the module's text)
        import nats.js.errors

        subject: str = ctx.payload["subject"]
        request = ctx.payload.get("request", False) is True
        limit = max(0.001, min(ctx.timeout, self._options.timeout))
        body = json.dumps(envelope(ctx), default=str).encode()
        key = ctx.idempotency_key()
        # Idempotency-Key too, so a worker can deduplicate the way an http receiver does.
        headers = {"Nats-Msg-Id": key, "Idempotency-Key": key}
        mode = "request" if request else "publish"
        ctx.log.debug(f"handler.nats.{mode}", subject=subject, timeout_s=limit)
        started = self._clock.monotonic()

        async def publish(_nc: Client, js: JetStreamContext) -> PubAck:
            return await js.publish(subject, body, timeout=limit, headers=headers)

        async def ask(nc: Client, _js: JetStreamContext) -> Msg:
            return await nc.request(subject, body, timeout=limit, headers=headers)

        try:
            if request:
                reply = self._link.call(ask, timeout=limit, cancel=ctx.cancel_event)
                return self._replied(ctx, subject, reply, self._clock.monotonic() - started)
            ack = self._link.call(publish, timeout=limit, cancel=ctx.cancel_event)
            return self._acked(ctx, subject, ack, self._clock.monotonic() - started)
        except NatsCallCancelled:
            return JobOutcome(status=ExecutionStatus.CANCELLED, error_message="cancelled")
        except nats.errors.NoRespondersError:
            return self._no_reply(ctx, subject, limit, "no_responders", "no responder is listening")
        except nats.js.errors.NoStreamResponseError:
            return self._failed(
                ctx,
                "no_stream",
                f"no JetStream stream takes subject {subject!r} (create one whose subjects "
                "cover it)",
                retryable=True,
            )
        except (NatsDeadline, TimeoutError):
            if request:
                return self._no_reply(ctx, subject, limit, "timeout", f"no reply in {limit:g} s")
            return self._failed(
                ctx, "timeout", f"no acknowledgement from JetStream in {limit:g} s", retryable=True
            )
        except NatsUnavailable as exc:
            return self._failed(ctx, "unavailable", str(exc), retryable=True)
        except nats.js.errors.APIError as exc:
            # Errors a later attempt cannot fix (a bad request, a stream or account that does
            # not exist as named); others (503 and the like) are worth retrying.
            final_api_errors = (nats.js.errors.BadRequestError, nats.js.errors.NotFoundError)
            return self._failed(
                ctx,
                "jetstream_error",
                f"JetStream refused the message: {exc.description or exc}",
                retryable=not isinstance(exc, final_api_errors),
                code=exc.code,
                err_code=exc.err_code,
            )
        except nats.errors.Error as exc:
            # Errors about the message itself: the same message will fail again.
            final_client_errors = (nats.errors.MaxPayloadError, nats.errors.BadSubjectError)
            return self._failed(
                ctx,
                type(exc).__name__,
                self._link.scrub(str(exc) or type(exc).__name__),
                retryable=not isinstance(exc, final_client_errors),
            )

    @staticmethod
    def _acked(ctx: JobContext, subject: str, ack: PubAck, elapsed: float) -> JobOutcome:
        summary = {
            "subject": subject,
            "stream": ack.stream,
            "seq": ack.seq,
            "duplicate": bool(ack.duplicate),
            "duration_s": round(elapsed, 3),
        }
        # A duplicate is the stream dropping a second send of this very attempt: it is done,
        # and worth a line. Plain acks are debug: the run's own line says it completed.
        if summary["duplicate"]:
            ctx.log.info("handler.nats.duplicate", **summary)
        else:
            ctx.log.debug("handler.nats.acked", **summary)
        return JobOutcome(status=ExecutionStatus.COMPLETED, metadata=summary)

    @staticmethod
    def _replied(ctx: JobContext, subject: str, reply: Msg, elapsed: float) -> JobOutcome:
        text = reply.data.decode("utf-8", errors="replace")
        summary: dict[str, Any] = {"subject": subject, "duration_s": round(elapsed, 3)}
        parsed: Any = None
        if len(text) <= MAX_KEPT_JSON_CHARS:
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
        if parsed is not None:
            summary["reply"] = parsed
        elif text:
            summary["reply_tail"] = text[-TAIL_CHARS:]
        ctx.log.info("handler.nats.replied", subject=subject, duration_s=summary["duration_s"])
        return JobOutcome(status=ExecutionStatus.COMPLETED, metadata=summary)

    @staticmethod
    def _no_reply(ctx: JobContext, subject: str, limit: float, kind: str, why: str) -> JobOutcome:
        ctx.log.warning("handler.nats.no_reply", subject=subject, error_type=kind)
        return JobOutcome.failure(
            kind,
            f"nats request to {subject!r} got no reply: {why}",
            retryable=True,
            status=ExecutionStatus.TIMED_OUT,
            timeout_s=limit,
        )

    @staticmethod
    def _failed(
        ctx: JobContext, kind: str, message: str, *, retryable: bool, **details: Any
    ) -> JobOutcome:
        ctx.log.warning("handler.nats.failed", error_type=kind, retryable=retryable)
        return JobOutcome.failure(
            kind, f"nats job failed: {message}", retryable=retryable, **details
        )
