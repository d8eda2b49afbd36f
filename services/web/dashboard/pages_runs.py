"""The runs page (running now, with cancel; recent failures with their error and output) and
the audit trail."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.errors import SchedulerError
from services.model.records import AuditEntry
from services.model.run_output import output_tail
from services.web.context import ApiContext, api_context
from services.web.dashboard.render import back_to, page
from services.web.dashboard.session import CurrentViewer, check_post, read_form

Context = Annotated[ApiContext, Depends(api_context)]
router = APIRouter(include_in_schema=False)
FAILURES = 25
TAIL_CHARS = 1500
FAILED = ["failed", "timed_out", "abandoned"]
NOTICES = {
    "cancelling": "Cancel requested: its instance stops it within a second.",
    "finished": "That run had already finished.",
}


@router.get("/runs")
def runs(
    request: Request, context: Context, viewer: CurrentViewer, notice: str | None = None
) -> Response:
    failures, _ = context.history.page_executions(statuses=FAILED, limit=FAILURES)
    return page(
        request,
        "runs.html",
        viewer,
        running=context.history.get_running_executions(),
        failures=[(run, output_tail(run, TAIL_CHARS)) for run in failures],
        notice=NOTICES.get(notice or ""),
    )


@router.post("/runs/{execution_id}/cancel")
async def cancel(
    request: Request, context: Context, viewer: CurrentViewer, execution_id: UUID
) -> Response:
    check_post(await read_form(request), viewer)
    execution = context.history.get_execution(execution_id)
    if execution is None:
        return page(request, "missing.html", viewer, status=404, what=f"run {execution_id}")
    if execution.status != "running":
        return back_to("/runs?notice=finished")
    context.run_requests.request_cancel(execution_id)
    return back_to("/runs?notice=cancelling")


@router.get("/audit")
def audit(
    request: Request,
    context: Context,
    viewer: CurrentViewer,
    schedule_id: str = "",
    actor: str = "",
    cursor: str | None = None,
) -> Response:
    error = None
    entries: list[AuditEntry] = []
    next_cursor: str | None = None
    try:
        wanted = UUID(schedule_id) if schedule_id.strip() else None
        entries, next_cursor = context.audit.list(
            schedule_id=wanted, actor=actor.strip() or None, limit=50, cursor=cursor
        )
    except ValueError:
        error = f"{schedule_id!r} is not a schedule id (a UUID)"
    except SchedulerError as exc:
        error = str(exc)
    kept = {k: v for k, v in {"schedule_id": schedule_id, "actor": actor}.items() if v}
    return page(
        request,
        "audit.html",
        viewer,
        entries=entries,
        filters={"schedule_id": schedule_id, "actor": actor},
        next_url=f"/audit?{urlencode({**kept, 'cursor': next_cursor})}" if next_cursor else None,
        first_url=f"/audit?{urlencode(kept)}" if cursor else None,
        error=error,
    )
