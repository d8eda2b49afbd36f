"""`/api/v1/schedules`: list, create, read, replace, patch, delete, pause, resume, bulk.

Every write goes through the schedule store with the caller as the audit trail's actor
(`api:<token name>`); every answer about one schedule carries its ETag (the configuration hash,
so it changes with every configuration change and with nothing else).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Header, Query, Response

from services.errors import BulkInvalid, ScheduleNotFound, StaleSchedule
from services.model.catalog import Catalog
from services.model.fire_times import fire_times
from services.model.records import Schedule
from services.model.schedule_config import CONFIG_FIELDS
from services.store.backfill import Backfill
from services.store.schedule_pages import ScheduleFilter
from services.web.auth import Reader, Writer
from services.web.context import ApiContext, api_context
from services.web.merge_patch import merge_patch
from services.web.problems import API_STATUSES, ETAG_HEADER, Problem, problem_responses
from services.web.schemas import (
    BackfillIn,
    BackfillOut,
    BulkCreated,
    BulkCreateIn,
    BulkDone,
    BulkOperationIn,
    PauseIn,
    ScheduleDetail,
    ScheduleIn,
    SchedulePage,
    Text,
)

UPCOMING = 10
MERGE_PATCH_TYPE = "application/merge-patch+json"
# What PATCH and PUT may change: the configuration, but not `source` (the sync's business).
EDITABLE = tuple(f for f in CONFIG_FIELDS if f != "source")

Context = Annotated[ApiContext, Depends(api_context)]
IfMatch = Annotated[str | None, Header(description="an ETag from an earlier answer")]

# Every answer about one schedule carries its ETag; a create also says where the new one is.
WITH_ETAG: dict[int | str, dict[str, Any]] = {200: {"headers": {"ETag": ETAG_HEADER}}}
LOCATION_HEADER: dict[str, Any] = {
    "description": "the new schedule's path",
    "required": True,
    "schema": {"type": "string", "pattern": "^/api/v1/schedules/[0-9a-f-]{36}$"},
}

router = APIRouter(
    prefix="/api/v1/schedules",
    tags=["schedules"],
    responses=problem_responses(*API_STATUSES),
)


def schedule_body(schedule: Schedule) -> dict[str, Any]:
    body = schedule.to_dict()
    body["tags"] = list(schedule.tags)
    return body


def etag(schedule: Schedule) -> str:
    return f'"{schedule.config_hash}"'


def expected_hash(if_match: str | None) -> str | None:
    """The config hash an If-Match names (None: no precondition). `*` matches any row."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.split(",")[0].strip()
    tag = tag.removeprefix("W/")
    return tag.strip('"')


def upcoming(context: ApiContext, schedule: Schedule) -> list[Any]:
    try:
        spec = Catalog(context.default_timezone).parse(schedule).spec
    except Exception:  # an invalid row has no fire times; its last_error says why
        return []
    return fire_times(spec, None, context.clock.now(), UPCOMING)


def detail(context: ApiContext, schedule: Schedule, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = etag(schedule)
    return {**schedule_body(schedule), "upcoming": upcoming(context, schedule)}


@router.get("", response_model=SchedulePage, summary="list schedules, one page at a time")
def list_schedules(
    context: Context,
    _caller: Reader,
    enabled: bool | None = None,
    frequency: Text | None = None,
    job_type: Text | None = None,
    source: Text | None = None,
    last_status: Text | None = None,
    tag: Annotated[list[Text] | None, Query(description="repeat: all must match")] = None,
    q: Annotated[Text | None, Query(description="domain or name contains")] = None,
    sort: Literal["next_run", "created_at", "domain"] = "created_at",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    where = ScheduleFilter(
        enabled=enabled,
        frequency=frequency,
        job_type=job_type,
        source=source,
        last_status=last_status,
        tags=tuple(tag or ()),
        q=q,
    )
    items, next_cursor = context.schedules.page(where, sort=sort, limit=limit, cursor=cursor)
    return {"items": [schedule_body(s) for s in items], "next_cursor": next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=ScheduleDetail,
    summary="create a schedule",
    responses={
        201: {"headers": {"ETag": ETAG_HEADER, "Location": LOCATION_HEADER}},
        **problem_responses(429),
    },
)
def create_schedule(
    context: Context, caller: Writer, body: ScheduleIn, response: Response
) -> dict[str, Any]:
    try:
        (schedule_id,) = context.schedules.create_many(
            [body.model_dump(exclude_none=True)],
            actor=caller.actor,
            created_by=caller.actor,
            max_per_creator=context.max_schedules_per_creator,
        )
    except BulkInvalid as exc:  # one item: its own reason, word for word, fields unprefixed
        raise exc.problems[0][1] from None
    schedule = context.schedules.require_schedule(schedule_id)
    response.headers["Location"] = f"{router.prefix}/{schedule_id}"
    return detail(context, schedule, response)


@router.post(
    "/bulk/create",
    status_code=201,
    response_model=BulkCreated,
    summary="create many schedules: all or nothing",
    responses=problem_responses(429),
)
def bulk_create(context: Context, caller: Writer, body: BulkCreateIn) -> dict[str, Any]:
    created = context.schedules.create_many(
        [item.model_dump(exclude_none=True) for item in body.items],
        actor=caller.actor,
        created_by=caller.actor,
        max_per_creator=context.max_schedules_per_creator,
    )
    return {"created": created}


@router.post(
    "/bulk/operation",
    response_model=BulkDone,
    summary="pause, resume, delete or trigger schedules by ids or tag, in one transaction",
    responses=problem_responses(409),
)
def bulk_operation(context: Context, caller: Writer, body: BulkOperationIn) -> dict[str, Any]:
    if body.operation == "trigger" and not context.live_instances():
        raise Problem(409, "no live scheduler instance to run the triggers (no heartbeat)")
    result = context.schedules.bulk_operation(
        body.operation,
        schedule_ids=body.schedule_ids,
        tag=body.tag,
        note=body.note,
        by=caller.name,
        actor=caller.actor,
    )
    return {"matched": result.matched, "changed": result.changed}


@router.get(
    "/{schedule_id}",
    response_model=ScheduleDetail,
    summary="one schedule, with its next 10 fire times",
    responses={**WITH_ETAG, **problem_responses(404)},
)
def get_schedule(
    context: Context, _caller: Reader, schedule_id: UUID, response: Response
) -> dict[str, Any]:
    return detail(context, context.schedules.require_schedule(schedule_id), response)


@router.put(
    "/{schedule_id}",
    response_model=ScheduleDetail,
    summary="replace a schedule's configuration",
    responses={**WITH_ETAG, **problem_responses(404, 412)},
)
def replace_schedule(
    context: Context,
    caller: Writer,
    schedule_id: UUID,
    body: ScheduleIn,
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    changes = body.model_dump()
    if changes["domain_config_id"] is None:  # a replace keeps the row's own unless given
        changes.pop("domain_config_id")
    schedule = context.schedules.update_schedule(
        schedule_id, actor=caller.actor, expected_hash=expected_hash(if_match), **changes
    )
    return detail(context, schedule, response)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleDetail,
    summary="change part of a schedule (JSON merge patch, RFC 7396)",
    responses={**WITH_ETAG, **problem_responses(404, 412)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MERGE_PATCH_TYPE: {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
def patch_schedule(
    context: Context,
    caller: Writer,
    schedule_id: UUID,
    patch: Annotated[dict[str, Any], Body(media_type=MERGE_PATCH_TYPE)],
    response: Response,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    unknown = sorted(set(patch) - set(EDITABLE))
    if unknown:
        errors = [{"field": f, "message": f"{f} cannot be changed by PATCH"} for f in unknown]
        raise Problem(422, f"cannot patch: {', '.join(unknown)}", errors=errors)
    wanted = expected_hash(if_match)
    for attempt in range(_PATCH_ATTEMPTS):
        current = context.schedules.require_schedule(schedule_id)
        document = {f: _json_value(getattr(current, f)) for f in EDITABLE}
        merged = merge_patch(document, patch)
        changes = {f: merged.get(f, _REMOVED.get(f)) for f in EDITABLE}
        try:
            # The patch applies to the row as read: if it changed since, read it again (or,
            # with If-Match, the client's precondition fails: 412).
            schedule = context.schedules.update_schedule(
                schedule_id,
                actor=caller.actor,
                expected_hash=wanted or current.config_hash,
                **changes,
            )
        except StaleSchedule:
            if wanted is not None or attempt == _PATCH_ATTEMPTS - 1:
                raise
            continue
        return detail(context, schedule, response)
    raise AssertionError("unreachable")


_PATCH_ATTEMPTS = 3


# What a configuration field becomes when a merge patch removes it (sets it to null).
_REMOVED: dict[str, Any] = {"tags": [], "payload": {}, "notify": {}, "enabled": True}


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, UUID):
        return str(value)
    return value


@router.delete(
    "/{schedule_id}",
    status_code=204,
    response_class=Response,
    summary="delete a schedule (its run history stays)",
    responses=problem_responses(404, 412),
)
def delete_schedule(
    context: Context, caller: Writer, schedule_id: UUID, if_match: IfMatch = None
) -> Response:
    deleted = context.schedules.delete_schedule(
        schedule_id, actor=caller.actor, expected_hash=expected_hash(if_match)
    )
    if not deleted:
        raise ScheduleNotFound(schedule_id)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/pause",
    response_model=ScheduleDetail,
    summary="disable a schedule, with a note saying why",
    responses={**WITH_ETAG, **problem_responses(404)},
)
def pause_schedule(
    context: Context,
    caller: Writer,
    schedule_id: UUID,
    response: Response,
    body: PauseIn | None = None,
) -> dict[str, Any]:
    schedule = context.schedules.pause_schedule(
        schedule_id, note=body.note if body else None, by=caller.name, actor=caller.actor
    )
    return detail(context, schedule, response)


@router.post(
    "/{schedule_id}/resume",
    response_model=ScheduleDetail,
    summary="enable a paused schedule (its note is cleared)",
    responses={**WITH_ETAG, **problem_responses(404)},
)
def resume_schedule(
    context: Context, caller: Writer, schedule_id: UUID, response: Response
) -> dict[str, Any]:
    schedule = context.schedules.resume_schedule(schedule_id, actor=caller.actor)
    return detail(context, schedule, response)


@router.post(
    "/{schedule_id}/backfill",
    response_model=BackfillOut,
    summary="queue the schedule's occurrences in [from, to) to run again (trigger='backfill')",
    responses=problem_responses(404),
)
def backfill(
    context: Context, caller: Writer, schedule_id: UUID, body: BackfillIn
) -> dict[str, Any]:
    runner = Backfill(context.schedules.db, context.schedules, f"api:{caller.name}")
    result = runner.run(schedule_id, body.start, body.end, body.mode, dry_run=body.dry_run)
    return result.to_dict()
