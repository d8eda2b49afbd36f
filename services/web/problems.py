"""Errors as `application/problem+json` (RFC 9457): one shape for every failure the app reports.

`{"type", "title", "status", "detail"}`, plus `"errors": [{"field", "message"}]` when input did
not validate. The scheduler's own exceptions map to statuses here, in one table, so a route never
builds an error body itself; anything unexpected is a 500 whose detail names no secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import (
    BulkInvalid,
    ChannelExists,
    ChannelNotFound,
    CreatorLimitReached,
    DatabaseError,
    DatabaseUnavailable,
    ExecutionNotFound,
    InvalidBackfill,
    InvalidChannel,
    InvalidCursor,
    InvalidPauseRequest,
    InvalidScheduleError,
    InvalidTokenRequest,
    ScheduleNotFound,
    SchedulerError,
    StaleSchedule,
    TokenExists,
    TokenNotFound,
)
from services.log import get_logger, mask_secrets
from services.model.schedule_config import CONFIG_FIELDS

log = get_logger(__name__)

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://enhanced-scheduler.dev/problems/"

# The scheduler's exceptions and what each means over HTTP (the first match wins).
_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (ScheduleNotFound, 404),
    (ExecutionNotFound, 404),
    (TokenNotFound, 404),
    (ChannelNotFound, 404),
    (StaleSchedule, 412),
    (BulkInvalid, 422),
    (InvalidScheduleError, 422),
    (InvalidTokenRequest, 422),
    (InvalidPauseRequest, 422),
    (InvalidBackfill, 422),
    (InvalidChannel, 422),
    (TokenExists, 409),
    (ChannelExists, 409),
    (CreatorLimitReached, 429),
    (InvalidCursor, 400),
    (DatabaseUnavailable, 503),
    (DatabaseError, 500),  # a statement the server refused: our bug, not the client's
    (SchedulerError, 400),
)


class ProblemOut(BaseModel):
    """application/problem+json (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


# What any /api/v1 operation may answer, whatever it does: a request it cannot read (400: a body
# that is not UTF-8, a cursor it never handed out), no token or a bad one (401), too low a role
# (403; a client sending bad tokens over and over gets its 401s late, auth_throttle.py), a body
# not sent in time (408), too large (413) or headers too large (431), input that does not
# validate (422: JSON too deep too), PostgreSQL out of reach (503).
API_STATUSES = (400, 401, 403, 408, 413, 422, 431, 503)


# Response headers as the OpenAPI document describes them (and schemathesis checks them).
ETAG_HEADER: dict[str, Any] = {
    "description": "the schedule's configuration hash: send it back as If-Match",
    "required": True,
    "schema": {"type": "string", "pattern": '^"[^"]*"$'},
}
_PROBLEM_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "how to authenticate: a bearer token",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer "},
        }
    },
    412: {"ETag": {**ETAG_HEADER, "description": "the schedule's current ETag"}},
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry for error statuses a route may answer."""
    return {
        status: {
            "model": ProblemOut,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemOut"}}},
            **({"headers": _PROBLEM_HEADERS[status]} if status in _PROBLEM_HEADERS else {}),
        }
        for status in statuses
    }


def only_problem_json(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` without the application/json entry FastAPI adds beside each problem response's
    own (it lists a response's model under the route's media type too): a problem is only ever
    sent as application/problem+json."""
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_TYPE in content:
                    content.pop("application/json", None)
    return spec


class Problem(Exception):
    """Raised by a route: answered as problem+json with this status and detail."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.delay = delay  # seconds to hold the answer back (awaited: no thread is held)


def problem_response(
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": TYPE_BASE + title.lower().replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": mask_secrets(detail),
    }
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def field_of(message: str) -> str:
    """Which field a validation message is about: the watcher's messages start with it
    ("time_config.hour must be ...", "tags 'x': ..."); cron and frequency wording is mapped."""
    first = message.split(" ", 1)[0].rstrip(":,")
    if first.startswith("time_config"):
        return first
    if first in CONFIG_FIELDS:
        return first
    if message.startswith("unknown frequency"):
        return "frequency"
    if message.startswith("cron expression"):
        return "time_config.expression"
    return "time_config"


def schedule_errors(exc: InvalidScheduleError, prefix: str = "") -> list[dict[str, str]]:
    return [{"field": prefix + field_of(p), "message": p} for p in exc.problems]


def _scheduler_error(exc: SchedulerError) -> JSONResponse:
    status = next(code for kind, code in _STATUS_OF if isinstance(exc, kind))
    errors: list[dict[str, str]] = []
    if isinstance(exc, InvalidScheduleError):
        errors = schedule_errors(exc)
        detail = exc.reason  # word for word what the watcher writes into last_error
    elif isinstance(exc, InvalidBackfill):
        errors = [{"field": exc.field, "message": exc.reason}]
        detail = exc.reason
    elif isinstance(exc, BulkInvalid):
        for index, item in exc.problems:
            errors += schedule_errors(item, prefix=f"items[{index}].")
        detail = str(exc)
    else:
        detail = str(exc)
    headers = {"ETag": f'"{exc.current_hash}"'} if isinstance(exc, StaleSchedule) else None
    return problem_response(status, detail, errors=errors, headers=headers)


def _location(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


def _validation_error(error: Mapping[str, Any]) -> dict[str, str]:
    loc = error.get("loc", ())
    if error.get("type") == "json_invalid":  # loc is ("body", offset): the body as a whole
        reason = (error.get("ctx") or {}).get("error", "invalid")
        where = f" at character {loc[-1]}" if len(loc) > 1 else ""
        return {"field": "body", "message": f"not JSON: {reason}{where}"}
    return {"field": _location(loc), "message": str(error.get("msg", "invalid"))}


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        if exc.delay > 0:
            await asyncio.sleep(exc.delay)
        return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    async def on_scheduler_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SchedulerError)
        return _scheduler_error(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [_validation_error(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(422, detail, errors=errors)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("http.request_failed", path=request.url.path, error=mask_secrets(repr(exc)[:300]))
        return problem_response(500, "internal error; the scheduler's log has the details")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(SchedulerError, on_scheduler_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
