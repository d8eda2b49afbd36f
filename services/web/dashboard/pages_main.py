"""Login, logout, the overview page, static files, and how refused requests are answered."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from services.web.auth import client_address
from services.web.context import ApiContext, api_context
from services.web.dashboard import charts
from services.web.dashboard.render import back_to, page
from services.web.dashboard.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CurrentViewer,
    LoginRequired,
    Refused,
    Viewer,
    check_post,
    login_token_matches,
    new_login_token,
    optional_viewer,
    read_form,
    set_cookie,
)

Context = Annotated[ApiContext, Depends(api_context)]
router = APIRouter(include_in_schema=False)
NEXT_FIRES = 40


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never `//host` or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def login_form(
    request: Request, viewer: Annotated[Viewer | None, Depends(optional_viewer)], next: str = "/"
) -> Response:
    if viewer is not None:
        return back_to(_safe_next(next))
    token = new_login_token()
    response = page(request, "login.html", None, csrf_token=token, next=_safe_next(next))
    set_cookie(response, request, LOGIN_COOKIE, token, 3600)
    return response


@router.post("/login")
async def login(request: Request, context: Context) -> Response:
    form = await read_form(request)
    target = _safe_next(form.get("next"))
    if not login_token_matches(request, form):
        return _login_again(request, "The login form expired; please try again.", target)
    token = context.tokens.authenticate(form.get("token", "").strip())
    if token is None:
        # The same throttle as the API's: a form is no way around it. Awaited here, on the
        # event loop: a slowed guesser holds no worker thread.
        delay = context.auth_throttle.failed(client_address(request))
        if delay > 0:
            await asyncio.sleep(delay)
    made = None if token is None else context.sessions.create(token.name, token.role)
    if made is None:
        return _login_again(request, "Unknown or revoked token.", target)
    session_id, session = made
    response = back_to(target)
    lifetime = int((session.expires_at - context.clock.now()).total_seconds())
    set_cookie(response, request, SESSION_COOKIE, session_id, lifetime)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


def _login_again(request: Request, error: str, target: str, *, status: int = 401) -> Response:
    token = new_login_token()
    response = page(
        request, "login.html", None, status=status, csrf_token=token, next=target, error=error
    )
    set_cookie(response, request, LOGIN_COOKIE, token, 3600)
    return response


@router.post("/logout")
async def logout(request: Request, context: Context, viewer: CurrentViewer) -> Response:
    check_post(await read_form(request), viewer, write=False)
    context.sessions.delete(request.cookies.get(SESSION_COOKIE, ""))
    response = back_to("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, context: Context, viewer: CurrentViewer) -> Response:
    now = context.clock.now()
    by_status = context.history.status_counts(hours=24)
    due = context.schedules.next_due(NEXT_FIRES)
    fires = [(s.name or s.domain, s.next_run) for s in due if s.next_run is not None]
    horizon = now + timedelta(hours=24)
    return page(
        request,
        "overview.html",
        viewer,
        instances=context.live_instances(),
        pause=context.scheduler_state.get(),
        by_status=by_status,
        runs_chart=charts.status_bars(by_status, "runs of the last 24 hours by status"),
        failing=context.schedules.failing(20),
        upcoming=[s for s in due if s.next_run is not None and s.next_run <= horizon][:15],
        timeline=charts.timeline(fires, now),
        now=now,
    )


def install(app: FastAPI) -> None:
    """The dashboard's error pages: a login redirect, and a refusal explained."""

    async def on_login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return page(request, "refused.html", None, status=403, reason=exc.reason)

    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(Refused, on_refused)
    app.mount("/static", StaticFiles(packages=[("services.web", "static")]), name="static")
