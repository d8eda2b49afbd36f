"""Notification channels (`/api/v1/channels`) and the latest notifications
(`/api/v1/notifications`). Channels carry secrets (a Slack URL is one), so only an admin adds,
removes or tests them, and every answer shows a URL by its host only."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from services.web.auth import Admin, Reader
from services.web.context import ApiContext, api_context
from services.web.problems import API_STATUSES, problem_responses
from services.web.schemas import (
    ChannelIn,
    ChannelOut,
    ChannelTestOut,
    NotificationPage,
    Text,
)

Context = Annotated[ApiContext, Depends(api_context)]
Limit = Annotated[int, Query(ge=1, le=500)]
Status = Literal["pending", "sent", "failed", "digested", "dropped"]

channels = APIRouter(
    prefix="/api/v1/channels", tags=["notifications"], responses=problem_responses(*API_STATUSES)
)
notifications = APIRouter(
    prefix="/api/v1/notifications",
    tags=["notifications"],
    responses=problem_responses(*API_STATUSES),
)


@channels.get("", response_model=list[ChannelOut], summary="every channel (URLs by host only)")
def list_channels(context: Context, _caller: Reader) -> list[dict[str, Any]]:
    return context.channels.list()


@channels.post(
    "",
    status_code=201,
    response_model=ChannelOut,
    summary="add a channel (its host must be in NOTIFY_ALLOWED_HOSTS)",
    responses=problem_responses(409),
)
def add_channel(context: Context, _caller: Admin, body: ChannelIn) -> dict[str, Any]:
    return context.channels.add(body.name, body.kind, body.target, enabled=body.enabled)


@channels.get(
    "/{name}", response_model=ChannelOut, summary="one channel", responses=problem_responses(404)
)
def get_channel(context: Context, _caller: Reader, name: Text) -> dict[str, Any]:
    return context.channels.get(name)


@channels.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="remove a channel and its pending notifications",
    responses=problem_responses(404),
)
def remove_channel(context: Context, _caller: Admin, name: Text) -> Response:
    context.channels.remove(name)
    return Response(status_code=204)


@channels.post(
    "/{name}/test",
    response_model=ChannelTestOut,
    summary="send a test message now; the answer says whether it was delivered",
    responses=problem_responses(404),
)
def test_channel(context: Context, _caller: Admin, name: Text) -> dict[str, Any]:
    return context.channels.test(name)


@notifications.get("", response_model=NotificationPage, summary="the latest, newest first")
def list_notifications(
    context: Context,
    _caller: Reader,
    channel: Text | None = None,
    status: Status | None = None,
    schedule_id: UUID | None = None,
    limit: Limit = 50,
    cursor: Text | None = None,
) -> dict[str, Any]:
    items, next_cursor = context.notifications.page(
        limit=limit, cursor=cursor, channel=channel, status=status, schedule_id=schedule_id
    )
    return {"items": items, "next_cursor": next_cursor}
