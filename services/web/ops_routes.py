"""The operations endpoints: /health, /live, /ready, /status, /metrics, /health/detailed.

Unchanged from the first HTTP server in what they answer. They are `async` and never touch the
thread pool the API's routes run on, so a burst of API requests (or a hung PostgreSQL behind
them) cannot delay a probe; /ready and /health/detailed wait at most the check deadline.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.clock import Clock
from services.log import mask_secrets
from services.web.readiness import OpsView, Readiness

JSON_TYPE = "application/json"
NO_STORE = {"Cache-Control": "no-store"}
JSON_BODY: dict[str, Any] = {JSON_TYPE: {"schema": {"type": "object"}}}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def json_response(status: int, body: dict[str, Any]) -> Response:
    # Masked once more as a whole: /status must never show a secret, whatever status() holds.
    text = mask_secrets(json.dumps(body, default=_json_default))
    return Response(text, status_code=status, media_type=JSON_TYPE, headers=NO_STORE)


def ops_router(ops: OpsView, readiness: Readiness, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["operations"])
    started_at = clock.monotonic()

    @router.get("/health", summary="the process is alive")
    async def health() -> Response:
        return json_response(200, {"status": "ok"})

    @router.get("/live", summary="the process is alive (same as /health)")
    async def live() -> Response:
        return json_response(200, {"status": "ok"})

    @router.get(
        "/ready",
        summary="PostgreSQL and Redis answer and the scheduler runs",
        responses={503: {"description": "not ready; `reasons` says why", "content": JSON_BODY}},
    )
    async def ready() -> Response:
        is_ready, reasons, redis = await readiness.readiness()
        body: dict[str, Any] = {"ready": is_ready}
        if reasons:
            body["reasons"] = reasons
        if redis.get("mode") == "sentinel":
            # Which master the sentinels gave (host:port): after a failover, the new one.
            body["redis_master"] = redis["master"]
        return json_response(200 if is_ready else 503, body)

    @router.get(
        "/health/detailed",
        summary="each dependency with its latency",
        responses={
            503: {"description": "degraded: `checks` says what failed", "content": JSON_BODY}
        },
    )
    async def detailed() -> Response:
        checks = {name: r.to_dict() for name, r in (await readiness.check_all()).items()}
        problem = ops.readiness_problem()
        checks["scheduler"] = {"ok": problem is None, **({"error": problem} if problem else {})}
        healthy = all(c["ok"] for c in checks.values())
        body = {"status": "ok" if healthy else "degraded", "checks": checks}
        return json_response(200 if healthy else 503, body)

    @router.get("/status", summary="this instance: jobs loaded, running runs, last passes")
    async def status() -> Response:
        body = {**ops.status(), "uptime_seconds": round(clock.monotonic() - started_at, 3)}
        return json_response(200, body)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(
            generate_latest(ops.metrics_registry), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE
        )

    return router
