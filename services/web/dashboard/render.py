"""Rendering a dashboard page: one Jinja2 environment, the layout's context, safe headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from services.model.shards import owned_label
from services.web.dashboard.charts import COLOURS
from services.web.dashboard.session import Viewer

# Our own script and style only: an injected <script> or style would not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(value: datetime | str | None, zone: str | None = None) -> Markup | str:
    """A moment as `<time>`, in UTC or in `zone`; its date and its time each stay on one line.
    An ISO 8601 string (as a heartbeat's summary holds) is read first."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            return _when(datetime.fromisoformat(value), zone)
        except ValueError:
            return value
    moment = value
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if zone:
        try:
            text = moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
        except (ZoneInfoNotFoundError, ValueError):
            pass
    day, _, clock = text.partition(" ")
    return Markup('<time datetime="{}"><span>{}</span> <span>{}</span></time>').format(
        moment.isoformat(), day, clock
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


templates = Environment(
    loader=PackageLoader("services.web", "templates/dashboard"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a typo in a template is an error in the tests, not a blank
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["when"] = _when
templates.filters["seconds"] = _seconds
templates.filters["shards"] = owned_label
templates.globals["colours"] = COLOURS


def page(
    request: Request,
    name: str,
    viewer: Viewer | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = templates.get_template(name).render(
        viewer=viewer,
        path=request.url.path,
        notice=context.pop("notice", None),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def back_to(url: str) -> RedirectResponse:
    """After a post: see the result with a GET (reloading never posts twice)."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
