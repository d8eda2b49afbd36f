"""The scheduler as a whole (status, global pause), the audit trail, and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from services.errors import TokenNotFound
from services.web.auth import Admin, Reader, Writer
from services.web.context import ApiContext, api_context
from services.web.problems import API_STATUSES, problem_responses
from services.web.schemas import (
    AuditPage,
    Instant,
    PauseState,
    SchedulerPauseIn,
    SchedulerStatus,
    Text,
    TokenCreated,
    TokenIn,
    TokenOut,
)

Context = Annotated[ApiContext, Depends(api_context)]
Limit = Annotated[int, Query(ge=1, le=500)]
NO_STORE_HEADER = {
    "description": "a secret: never kept by a cache",
    "required": True,
    "schema": {"type": "string", "enum": ["no-store"]},
}

scheduler = APIRouter(
    prefix="/api/v1/scheduler",
    tags=["scheduler"],
    responses=problem_responses(*API_STATUSES),
)
audit = APIRouter(tags=["audit"], responses=problem_responses(*API_STATUSES))
tokens = APIRouter(
    prefix="/api/v1/tokens", tags=["tokens"], responses=problem_responses(*API_STATUSES)
)


def _pause_state(context: ApiContext) -> dict[str, Any]:
    return context.scheduler_state.get().to_dict()


@scheduler.get("/status", response_model=SchedulerStatus, summary="live instances, and pause")
def status(context: Context, _caller: Reader) -> dict[str, Any]:
    return {"instances": context.live_instances(), "paused": _pause_state(context)}


@scheduler.post(
    "/pause",
    response_model=PauseState,
    summary="pause every instance (a maintenance window): due runs are recorded skipped",
)
def pause(context: Context, caller: Writer, body: SchedulerPauseIn) -> dict[str, Any]:
    return context.scheduler_state.pause(body.note, by=caller.actor).to_dict()


@scheduler.post("/resume", response_model=PauseState, summary="end the global pause")
def resume(context: Context, _caller: Writer) -> dict[str, Any]:
    return context.scheduler_state.resume().to_dict()


def _audit_page(
    context: ApiContext,
    schedule_id: UUID | None,
    actor: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    items, next_cursor = context.audit.list(
        schedule_id=schedule_id, actor=actor, since=since, limit=limit, cursor=cursor
    )
    return {"items": [e.to_dict() for e in items], "next_cursor": next_cursor}


@audit.get("/api/v1/audit", response_model=AuditPage, summary="configuration changes, newest first")
def list_audit(
    context: Context,
    _caller: Reader,
    schedule_id: UUID | None = None,
    actor: Text | None = None,
    since: Instant | None = None,
    limit: Limit = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    return _audit_page(context, schedule_id, actor, since, limit, cursor)


@audit.get(
    "/api/v1/schedules/{schedule_id}/audit",
    response_model=AuditPage,
    summary="one schedule's configuration changes (kept after it is deleted)",
)
def schedule_audit(
    context: Context,
    _caller: Reader,
    schedule_id: UUID,
    actor: Text | None = None,
    since: Instant | None = None,
    limit: Limit = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    return _audit_page(context, schedule_id, actor, since, limit, cursor)


@tokens.get("", response_model=list[TokenOut], summary="every token (never a secret)")
def list_tokens(context: Context, _caller: Admin) -> list[dict[str, Any]]:
    return [t.to_dict() for t in context.tokens.list()]


@tokens.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    summary="create a token; the answer is the only place it is shown",
    responses={201: {"headers": {"Cache-Control": NO_STORE_HEADER}}, **problem_responses(409)},
)
def create_token(
    context: Context, _caller: Admin, body: TokenIn, response: Response
) -> dict[str, Any]:
    record, token = context.tokens.create(body.name, body.role)
    response.headers["Cache-Control"] = "no-store"  # a secret: never kept by a proxy
    return {**record.to_dict(), "token": token}


@tokens.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="revoke a token",
    responses=problem_responses(404),
)
def revoke_token(context: Context, _caller: Admin, name: Text) -> Response:
    if not context.tokens.revoke(name):
        raise TokenNotFound(name)
    return Response(status_code=204)
