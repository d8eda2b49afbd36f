"""Runs over HTTP: trigger a schedule now, page through executions, cancel one, statistics.

A trigger or a cancel is a `run_requests` row that a live instance acts on, exactly as the CLI
does: this app may run on a host that schedules nothing (`scheduler.py serve`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from services.errors import ExecutionNotFound
from services.model.records import Execution
from services.model.run_output import output_tail
from services.web.auth import Reader, Writer
from services.web.context import ApiContext, api_context
from services.web.problems import API_STATUSES, Problem, problem_responses
from services.web.schemas import (
    ExecutionDetail,
    ExecutionOut,
    ExecutionPage,
    Instant,
    RequestAccepted,
    Stats,
    Text,
)

Context = Annotated[ApiContext, Depends(api_context)]
POLL_INTERVAL = 0.05

schedule_runs = APIRouter(
    prefix="/api/v1/schedules",
    tags=["schedules"],
    responses=problem_responses(*API_STATUSES, 404),
)
executions = APIRouter(
    prefix="/api/v1/executions",
    tags=["executions"],
    responses=problem_responses(*API_STATUSES),
)


def execution_detail(execution: Execution) -> dict[str, Any]:
    return {**execution.to_dict(), "output_tail": output_tail(execution)}


@schedule_runs.post(
    "/{schedule_id}/trigger",
    status_code=202,
    response_model=RequestAccepted,
    summary="run a schedule now on a live instance (trigger='manual')",
    responses={
        200: {"model": ExecutionDetail, "description": "with `wait`: the finished run"},
        **problem_responses(409, 504),
    },
)
def trigger(
    context: Context,
    _caller: Writer,
    schedule_id: UUID,
    wait: Annotated[float | None, Query(ge=0, le=60, description="seconds to wait")] = None,
) -> Any:
    context.schedules.require_schedule(schedule_id)
    if not context.live_instances():
        raise Problem(409, "no live scheduler instance (no heartbeat in Redis) to run it")
    request = context.run_requests.request_trigger(schedule_id)
    if wait is None:
        return {"request_id": request.request_id}
    deadline = context.clock.monotonic() + wait
    while True:
        current = context.run_requests.get(request.request_id)
        if current is not None and current.done_at is not None:
            break
        if context.clock.monotonic() >= deadline:
            raise Problem(
                504, f"the run did not finish within {wait:g}s (request_id {request.request_id})"
            )
        context.clock.sleep(POLL_INTERVAL)
    run = context.history.get_execution(current.execution_id) if current.execution_id else None
    if run is None:
        raise Problem(409, f"the run did not start: {current.result}")
    return JSONResponse(
        ExecutionDetail.model_validate(execution_detail(run)).model_dump(mode="json")
    )


def _page(
    context: ApiContext,
    schedule_id: UUID | None,
    status: list[str] | None,
    trigger: str | None,
    instance_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    items, next_cursor = context.history.page_executions(
        schedule_id=schedule_id,
        statuses=status,
        trigger=trigger,
        instance_id=instance_id,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return {"items": [e.to_dict() for e in items], "next_cursor": next_cursor}


Statuses = Annotated[list[Text] | None, Query(description="repeat for several")]
Limit = Annotated[int, Query(ge=1, le=500)]


@schedule_runs.get(
    "/{schedule_id}/executions", response_model=ExecutionPage, summary="one schedule's runs"
)
def schedule_executions(
    context: Context,
    _caller: Reader,
    schedule_id: UUID,
    status: Statuses = None,
    trigger: Text | None = None,
    instance_id: Text | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Limit = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    context.schedules.require_schedule(schedule_id)
    return _page(context, schedule_id, status, trigger, instance_id, since, until, limit, cursor)


@executions.get("", response_model=ExecutionPage, summary="runs, newest first, one page at a time")
def list_executions(
    context: Context,
    _caller: Reader,
    schedule_id: UUID | None = None,
    status: Statuses = None,
    trigger: Text | None = None,
    instance_id: Text | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    limit: Limit = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    return _page(context, schedule_id, status, trigger, instance_id, since, until, limit, cursor)


@executions.get("/running", response_model=list[ExecutionOut], summary="runs going on now")
def running(context: Context, _caller: Reader) -> list[dict[str, Any]]:
    return [e.to_dict() for e in context.history.get_running_executions()]


Days = Annotated[float, Query(gt=0, le=3650)]


@executions.get("/stats", response_model=Stats, summary="outcomes and durations of recent runs")
def stats(context: Context, _caller: Reader, days: Days = 7) -> dict[str, Any]:
    return context.history.execution_stats(days=days)


@executions.get(
    "/stats/{schedule_id}",
    response_model=Stats,
    summary="one schedule's outcomes and durations",
    responses=problem_responses(404),
)
def schedule_stats(
    context: Context, _caller: Reader, schedule_id: UUID, days: Days = 7
) -> dict[str, Any]:
    context.schedules.require_schedule(schedule_id)
    return context.history.execution_stats(days=days, schedule_id=schedule_id)


@executions.get(
    "/{execution_id}",
    response_model=ExecutionDetail,
    summary="one run, with its output tail",
    responses=problem_responses(404),
)
def get_execution(context: Context, _caller: Reader, execution_id: UUID) -> dict[str, Any]:
    execution = context.history.get_execution(execution_id)
    if execution is None:
        raise ExecutionNotFound(execution_id)
    return execution_detail(execution)


@executions.post(
    "/{execution_id}/cancel",
    status_code=202,
    response_model=RequestAccepted,
    summary="stop a running run (its instance acts on the request)",
    responses=problem_responses(404, 409),
)
def cancel(context: Context, _caller: Writer, execution_id: UUID) -> dict[str, Any]:
    execution = context.history.get_execution(execution_id)
    if execution is None:
        raise ExecutionNotFound(execution_id)
    if execution.status != "running":
        raise Problem(409, f"execution {execution_id} is not running (status {execution.status})")
    request = context.run_requests.request_cancel(execution_id)
    return {"request_id": request.request_id}
