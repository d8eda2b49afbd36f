"""The `http` job: POST the run's envelope as JSON to `payload.url` or `JOB_WEBHOOK_URL`.

Only hosts listed in `HTTP_ALLOWED_HOSTS` may be named by a payload (the webhook URL is the
operator's own setting). Bodies are never logged: payloads may carry secrets.

httpx is imported at the first http job's run, not with this module, which every daemon loads
(the `nats` and `celery` jobs use its `envelope` too): see services/http_client.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from services.clock import SYSTEM_CLOCK, Clock
from services.engine.handlers.base import (
    TAIL_CHARS,
    JobContext,
    JobOutcome,
    format_utc,
    parse_scan_id,
    run_guarded,
)
from services.errors import BodyDeadline
from services.http_client import LazyHttpClient
from services.model.vocabulary import ExecutionStatus

if TYPE_CHECKING:
    import httpx

# A response body larger than this is not read further: we only need a summary and a scan_id.
MAX_BODY_BYTES = 1024 * 1024
# A JSON answer up to this size is kept whole in metadata; larger ones only as a tail.
MAX_KEPT_JSON_CHARS = 4096


def envelope(ctx: JobContext) -> dict[str, Any]:
    """The contract's request body."""
    return {
        "execution_id": str(ctx.execution_id),
        "schedule_id": str(ctx.schedule_id),
        "domain_config_id": str(ctx.domain_config_id),
        "domain": ctx.domain,
        "profile_id": None if ctx.profile_id is None else str(ctx.profile_id),
        "scheduled_for": format_utc(ctx.scheduled_for),
        "attempt": ctx.attempt,
        "payload": dict(ctx.payload),
    }


def _is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class HttpHandler:
    def __init__(
        self,
        *,
        allowed_hosts: Sequence[str],
        webhook_url: str | None,
        request_timeout: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._allowed_hosts = frozenset(
            h.strip().strip("[]").lower() for h in allowed_hosts if h.strip()
        )
        self._webhook_url = webhook_url or None
        self._request_timeout = request_timeout
        # One pooled client for all runs, made at the first. Redirects are not followed: a 3xx
        # is an answer, and following one could leave the allowlist.
        self._client = LazyHttpClient(follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def run(self, ctx: JobContext) -> JobOutcome:
        return run_guarded(ctx, "http", self._run)

    def _target(self, ctx: JobContext) -> httpx.URL | JobOutcome:
        """The URL to call, or the refusal explaining why there is none."""
        import httpx  # at the first http job's run (see the module's text)

        requested = ctx.payload.get("url")
        if requested is None:
            if self._webhook_url is None:
                return JobOutcome.failure(
                    "no_url",
                    "http job has no payload.url and JOB_WEBHOOK_URL is not set",
                    retryable=False,
                )
            return httpx.URL(self._webhook_url)
        if not isinstance(requested, str):
            return JobOutcome.failure(
                "invalid_url", "payload.url must be a string", retryable=False
            )
        try:
            url = httpx.URL(requested)
        except httpx.InvalidURL as exc:
            return JobOutcome.failure(
                "invalid_url", f"payload.url is invalid: {exc}", retryable=False
            )
        if url.scheme not in ("http", "https"):
            return JobOutcome.failure(
                "invalid_url",
                f"payload.url scheme {url.scheme!r} is not allowed (use http or https)",
                retryable=False,
            )
        # httpx parses the host it will connect to, so checking its parse leaves no gap.
        if url.host.lower() not in self._allowed_hosts:
            return JobOutcome.failure(
                "host_not_allowed",
                f"host {url.host!r} is not in HTTP_ALLOWED_HOSTS; add it there to allow this job",
                retryable=False,
                host=url.host,
            )
        return url

    def _run(self, ctx: JobContext) -> JobOutcome:
        import httpx  # at the first http job's run (see the module's text)

        target = self._target(ctx)
        if isinstance(target, JobOutcome):
            ctx.log.warning("handler.http.refused", reason=target.error_message)
            return target

        limit = max(0.001, min(ctx.timeout, self._request_timeout))
        deadline = self._clock.monotonic() + limit
        body = json.dumps(envelope(ctx), default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": ctx.idempotency_key(),
        }
        ctx.log.debug("handler.http.request", host=target.host, timeout_s=limit)
        started = self._clock.monotonic()
        try:
            with self._client.get().stream(
                "POST", target, content=body, headers=headers, timeout=limit
            ) as response:
                raw, truncated = self._read_body(response, deadline)
        except httpx.TimeoutException as exc:
            return self._transport_failure(ctx, "timeout", f"timed out after {limit:g} s", exc)
        except httpx.TransportError as exc:
            return self._transport_failure(ctx, "connection_error", str(exc) or repr(exc), exc)
        except BodyDeadline:
            return self._transport_failure(
                ctx, "timeout", f"response body not read within {limit:g} s", None
            )
        elapsed = self._clock.monotonic() - started
        ctx.log.info(
            "handler.http.response", http_status=response.status_code, duration_s=round(elapsed, 3)
        )
        return self._outcome(response, raw, truncated, elapsed)

    def _read_body(self, response: httpx.Response, deadline: float) -> tuple[bytes, bool]:
        """Reads at most MAX_BODY_BYTES, within the deadline (httpx's timeouts are per read)."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_BODY_BYTES:
                return b"".join(chunks)[:MAX_BODY_BYTES], True
            if self._clock.monotonic() > deadline:
                raise BodyDeadline
        return b"".join(chunks), False

    @staticmethod
    def _transport_failure(
        ctx: JobContext, kind: str, message: str, exc: Exception | None
    ) -> JobOutcome:
        ctx.log.warning("handler.http.failed", error_type=kind)
        details: dict[str, Any] = {}
        if exc is not None:
            details["exception"] = type(exc).__name__
        return JobOutcome.failure(
            kind, f"http request failed: {message}", retryable=True, **details
        )

    @staticmethod
    def _outcome(
        response: httpx.Response, raw: bytes, truncated: bool, elapsed: float
    ) -> JobOutcome:
        status = response.status_code
        text = raw.decode("utf-8", errors="replace")
        summary: dict[str, Any] = {"http_status": status, "duration_s": round(elapsed, 3)}
        parsed: Any = None
        if not truncated:
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
        if parsed is not None and len(text) <= MAX_KEPT_JSON_CHARS:
            summary["response"] = parsed
        elif text:
            summary["body_tail"] = text[-TAIL_CHARS:]

        if 200 <= status < 300:
            scan_id = None
            if isinstance(parsed, dict) and parsed.get("scan_id") is not None:
                scan_id = parse_scan_id(parsed["scan_id"])
                if scan_id is None:
                    summary["invalid_scan_id"] = repr(parsed["scan_id"])[:200]
            return JobOutcome(status=ExecutionStatus.COMPLETED, scan_id=scan_id, metadata=summary)

        retryable = _is_retryable_status(status)
        details: dict[str, Any] = {"http_status": status, "body_tail": text[-TAIL_CHARS:]}
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            details["retry_after"] = retry_after[:100]
        message = f"http job answered {status} {response.reason_phrase}".rstrip()
        if 300 <= status < 400:
            message += " (redirects are not followed)"
        return JobOutcome.failure(
            "http_status",
            message,
            retryable=retryable,
            metadata=summary,
            **details,
        )
