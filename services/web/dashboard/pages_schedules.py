"""The schedules pages: search and filter with server-side paging, bulk pause/resume by tag, one
schedule's page (settings, upcoming fires, outcomes, runs, edit, pause, resume, trigger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.errors import (
    InvalidBackfill,
    InvalidScheduleError,
    ScheduleNotFound,
    SchedulerError,
    StaleSchedule,
)
from services.model.catalog import Catalog
from services.model.fire_times import fire_times
from services.model.records import Schedule
from services.store.backfill import Backfill
from services.store.schedule_pages import ScheduleFilter
from services.web.context import ApiContext, api_context
from services.web.dashboard import charts
from services.web.dashboard.render import back_to, page
from services.web.dashboard.session import CurrentViewer, check_post, read_form
from services.web.problems import field_of

Context = Annotated[ApiContext, Depends(api_context)]
router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
HISTORY = 40
NOTICES = {
    "saved": "Saved. Running daemons apply the change within a second.",
    "paused": "Paused: it will not run until resumed.",
    "resumed": "Resumed.",
    "triggered": "Triggered: a live instance runs it now; the run appears below.",
    "no-instance": "No live scheduler instance to run it (no heartbeat): start a daemon.",
    "bulk-refused": "A bulk change needs an operation (pause or resume) and a tag.",
}
STATUS_FILTERS: dict[str, dict[str, Any]] = {
    "": {},
    "enabled": {"enabled": True},
    "paused": {"enabled": False},
    "failed": {"last_status": "failed"},
    "invalid": {"last_status": "invalid"},
}
FREQUENCIES = ("", "cron", "interval", "once", "hourly", "daily", "weekly", "monthly")


def _notice(code: str | None) -> str | None:
    return NOTICES.get(code or "")


def _bulk_notice(request: Request) -> str | None:
    """What a bulk operation did, from its redirect's numbers (never text from the URL)."""
    params = request.query_params
    op, changed, matched = params.get("op"), params.get("changed", ""), params.get("matched", "")
    if op not in ("pause", "resume") or not (changed.isdigit() and matched.isdigit()):
        return None
    return f"{op.capitalize()}d {changed} of the {matched} schedules with that tag."


@router.get("/schedules")
def schedules(
    request: Request,
    context: Context,
    viewer: CurrentViewer,
    q: str = "",
    tag: str = "",
    status: str = "",
    frequency: str = "",
    cursor: str | None = None,
    notice: str | None = None,
) -> Response:
    where = ScheduleFilter(
        frequency=frequency or None,
        tags=tuple(t for t in tag.replace(",", " ").split() if t),
        q=q.strip() or None,
        **STATUS_FILTERS.get(status, {}),
    )
    error = None
    try:
        items, next_cursor = context.schedules.page(where, limit=PAGE_SIZE, cursor=cursor)
    except SchedulerError as exc:  # a hand-edited cursor or filter: say so, show page one
        items, next_cursor, error = [], None, str(exc)
    query = {"q": q, "tag": tag, "status": status, "frequency": frequency}
    kept = {k: v for k, v in query.items() if v}
    return page(
        request,
        "schedules.html",
        viewer,
        items=items,
        filters=query,
        statuses=list(STATUS_FILTERS),
        frequencies=FREQUENCIES,
        next_url=f"/schedules?{urlencode({**kept, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        first_url=f"/schedules?{urlencode(kept)}" if cursor else None,
        error=error,
        notice=_bulk_notice(request) if notice == "bulk" else _notice(notice),
    )


@router.post("/schedules/bulk")
async def bulk(request: Request, context: Context, viewer: CurrentViewer) -> Response:
    form = await read_form(request)
    check_post(form, viewer)
    operation, tag = form.get("operation", ""), form.get("tag", "").strip()
    if operation not in ("pause", "resume") or not tag:
        return back_to("/schedules?notice=bulk-refused")
    result = context.schedules.bulk_operation(
        operation, tag=tag, note=form.get("note") or None, by=viewer.name, actor=viewer.actor
    )
    counts = {"op": operation, "changed": result.changed, "matched": result.matched}
    return back_to(f"/schedules?{urlencode({'tag': tag, 'notice': 'bulk', **counts})}")


def _zone(context: ApiContext, schedule: Schedule) -> str:
    config = schedule.time_config if isinstance(schedule.time_config, dict) else {}
    zone = config.get("timezone")
    return zone if isinstance(zone, str) and zone else context.default_timezone


def _edit_values(schedule: Schedule) -> dict[str, str]:
    return {
        "domain": schedule.domain,
        "name": schedule.name or "",
        "frequency": schedule.frequency,
        "time_config": json.dumps(schedule.time_config, indent=2, sort_keys=True),
        "job_type": schedule.job_type or "",
        "payload": json.dumps(schedule.payload, indent=2, sort_keys=True),
        "tags": " ".join(schedule.tags),
        "config_hash": schedule.config_hash,
    }


def _detail(
    request: Request,
    context: ApiContext,
    viewer: CurrentViewer,
    schedule: Schedule,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    notice: str | None = None,
    backfill: dict[str, Any] | None = None,
) -> Response:
    now = context.clock.now()
    try:
        spec = Catalog(context.default_timezone).parse(schedule).spec
        upcoming = fire_times(spec, None, now, 10)
    except InvalidScheduleError:
        upcoming = []
    runs, _ = context.history.page_executions(schedule_id=schedule.schedule_id, limit=HISTORY)
    outcomes = context.history.daily_outcomes(schedule.schedule_id, 35)
    timed = [(r.started_at, r.status, r.duration_seconds) for r in reversed(runs)]
    return page(
        request,
        "schedule.html",
        viewer,
        status=status,
        schedule=schedule,
        zone=_zone(context, schedule),
        upcoming=upcoming,
        runs=runs,
        duration_chart=charts.durations(timed),
        calendar=charts.calendar(outcomes, now.date()),
        values=values or _edit_values(schedule),
        errors=errors or [],
        frequencies=FREQUENCIES[1:],
        notice=notice,
        backfill=backfill or {"form": _backfill_defaults(now)},
    )


def _backfill_defaults(now: datetime) -> dict[str, str]:
    """The form's first values: the last 24 hours, missing runs only, as a dry run."""
    day_ago = now - timedelta(days=1)
    return {
        "from": day_ago.strftime(_LOCAL_INPUT),
        "to": now.strftime(_LOCAL_INPUT),
        "mode": "missing",
        "dry_run": "1",
    }


_LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">, read as UTC


def _utc_input(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidBackfill(f"{field} must be a date and time, got {text!r}", field) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.post("/schedules/{schedule_id}/backfill")
async def backfill(
    request: Request, context: Context, viewer: CurrentViewer, schedule_id: UUID
) -> Response:
    form = await read_form(request)
    check_post(form, viewer)
    schedule = context.schedules.get_schedule(schedule_id)
    if schedule is None:
        return page(request, "missing.html", viewer, status=404, what=f"schedule {schedule_id}")
    shown = {k: form.get(k, "") for k in ("from", "to", "mode", "dry_run")}
    try:
        result = Backfill(context.schedules.db, context.schedules, viewer.actor).run(
            schedule_id,
            _utc_input(shown["from"], "from"),
            _utc_input(shown["to"], "to"),
            shown["mode"] or "missing",
            dry_run=bool(shown["dry_run"]),
        )
    except (InvalidBackfill, InvalidScheduleError) as exc:
        outcome = {"form": shown, "error": str(exc)}
        return _detail(request, context, viewer, schedule, status=422, backfill=outcome)
    outcome = {"form": shown, "result": result.to_dict()}
    return _detail(request, context, viewer, schedule, backfill=outcome)


@router.get("/schedules/{schedule_id}")
def schedule_page(
    request: Request,
    context: Context,
    viewer: CurrentViewer,
    schedule_id: UUID,
    notice: str | None = None,
) -> Response:
    schedule = context.schedules.get_schedule(schedule_id)
    if schedule is None:
        return page(request, "missing.html", viewer, status=404, what=f"schedule {schedule_id}")
    return _detail(request, context, viewer, schedule, notice=_notice(notice))


def _json_field(form: dict[str, str], name: str, errors: list[dict[str, str]]) -> Any:
    text = form.get(name, "").strip() or "{}"
    try:
        return json.loads(text)
    except ValueError as exc:
        errors.append({"field": name, "message": f"{name} is not valid JSON: {exc}"})
        return None


@router.post("/schedules/{schedule_id}/edit")
async def edit(
    request: Request, context: Context, viewer: CurrentViewer, schedule_id: UUID
) -> Response:
    form = await read_form(request)
    check_post(form, viewer)
    current = context.schedules.require_schedule(schedule_id)
    errors: list[dict[str, str]] = []
    changes = {
        "domain": form.get("domain", "").strip(),
        "name": form.get("name", "").strip() or None,
        "frequency": form.get("frequency", "").strip(),
        "time_config": _json_field(form, "time_config", errors),
        "job_type": form.get("job_type", "").strip() or None,
        "payload": _json_field(form, "payload", errors),
        "tags": [t for t in form.get("tags", "").replace(",", " ").split() if t],
    }
    if not errors:
        try:
            context.schedules.update_schedule(
                schedule_id,
                actor=viewer.actor,
                expected_hash=form.get("config_hash") or None,
                **changes,
            )
            return back_to(f"/schedules/{schedule_id}?notice=saved")
        except InvalidScheduleError as exc:  # the watcher's own words, field by field
            errors = [{"field": field_of(p), "message": p} for p in exc.problems]
        except StaleSchedule:
            errors = [
                {
                    "field": "",
                    "message": "Someone changed this schedule since you opened "
                    "it; your edit was not saved. Review the current settings and try again.",
                }
            ]
            current = context.schedules.require_schedule(schedule_id)
    values = {**_edit_values(current), **{k: form.get(k, "") for k in _edit_values(current)}}
    return _detail(request, context, viewer, current, status=422, values=values, errors=errors)


@router.post("/schedules/{schedule_id}/{action}")
async def act(
    request: Request, context: Context, viewer: CurrentViewer, schedule_id: UUID, action: str
) -> Response:
    form = await read_form(request)
    check_post(form, viewer)
    try:
        if action == "pause":
            note = form.get("note") or None
            context.schedules.pause_schedule(
                schedule_id, note=note, by=viewer.name, actor=viewer.actor
            )
        elif action == "resume":
            context.schedules.resume_schedule(schedule_id, actor=viewer.actor)
        elif action == "trigger":
            context.schedules.require_schedule(schedule_id)
            if not context.live_instances():
                return back_to(f"/schedules/{schedule_id}?notice=no-instance")
            context.run_requests.request_trigger(schedule_id)
        else:
            return page(request, "missing.html", viewer, status=404, what=f"action {action}")
    except ScheduleNotFound:
        return page(request, "missing.html", viewer, status=404, what=f"schedule {schedule_id}")
    done = {"pause": "paused", "resume": "resumed", "trigger": "triggered"}[action]
    return back_to(f"/schedules/{schedule_id}?notice={done}")
