"""The notifications page: the channels (URLs by host only; an admin may send a test) and the
latest notifications with their delivery state."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.errors import ChannelNotFound
from services.web.context import ApiContext, api_context
from services.web.dashboard.render import back_to, page
from services.web.dashboard.session import CurrentViewer, Refused, check_post, read_form

Context = Annotated[ApiContext, Depends(api_context)]
router = APIRouter(include_in_schema=False)
LATEST = 50


@router.get("/notifications")
def notifications(
    request: Request,
    context: Context,
    viewer: CurrentViewer,
    tested: str | None = None,
    error: str | None = None,
) -> Response:
    return page(
        request,
        "notifications.html",
        viewer,
        channels=context.channels.list(),
        latest=context.notifications.recent(limit=LATEST),
        tested=tested,
        test_error=error,
    )


@router.post("/notifications/channels/{name}/test")
async def test_channel(
    request: Request, context: Context, viewer: CurrentViewer, name: str
) -> Response:
    check_post(await read_form(request), viewer)
    if not viewer.is_admin:
        raise Refused(f"token {viewer.name!r} has role {viewer.role}: only an admin tests channels")
    try:
        result = context.channels.test(name)
    except ChannelNotFound:
        return page(request, "missing.html", viewer, status=404, what=f"channel {name}")
    if result["delivered"]:
        return back_to(f"/notifications?tested={quote(name)}")
    return back_to(f"/notifications?tested={quote(name)}&error={quote(str(result['error']))}")
