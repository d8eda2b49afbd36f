"""Who is looking: the session cookie, login and logout, the CSRF check of every form.

The cookie holds a random session id (HttpOnly, SameSite=Strict, Secure over HTTPS); the
database keeps its SHA-256 and the token it came from, so revoking the token logs the browser
out. The login form, which has no session yet, is protected by a double-submit cookie.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request, Response

from services.model.vocabulary import TokenRole
from services.web.context import ApiContext, api_context

SESSION_COOKIE = "es_session"
LOGIN_COOKIE = "es_login_csrf"
MAX_FORM_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    role: str
    csrf_token: str

    @property
    def can_write(self) -> bool:
        return self.role in (TokenRole.WRITE.value, TokenRole.ADMIN.value)

    @property
    def is_admin(self) -> bool:
        return self.role == TokenRole.ADMIN.value

    @property
    def actor(self) -> str:
        return f"api:{self.name}"


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to the login form."""


class Refused(Exception):
    """A post the viewer may not make (read role, or a missing/wrong CSRF token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def optional_viewer(
    request: Request, context: Annotated[ApiContext, Depends(api_context)]
) -> Viewer | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    session = context.sessions.get(session_id)
    if session is None:
        return None
    return Viewer(session.token_name, session.role, session.csrf_token)


def viewer(viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        raise LoginRequired()
    return viewer


CurrentViewer = Annotated[Viewer, Depends(viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form as a dict (the last value of a repeated field wins)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused("form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        raise Refused("unreadable form") from None
    return {key: values[-1] for key, values in fields.items()}


def check_post(form: dict[str, str], viewer: Viewer, *, write: bool = True) -> None:
    """Refuse a post without this session's CSRF token, or a write by a read-role viewer."""
    if not hmac.compare_digest(form.get("csrf_token", ""), viewer.csrf_token):
        raise Refused("the form's CSRF token is missing or stale; reload the page and try again")
    if write and not viewer.can_write:
        raise Refused(f"token {viewer.name!r} has role {viewer.role}: it may only look")


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def login_token_matches(request: Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(form.get("csrf_token", ""), cookie)


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, site-wide; Secure when the page came over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
