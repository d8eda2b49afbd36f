"""The one HTTP application: operations endpoints, the REST API, its OpenAPI document and /docs.

`build_app(ops, readiness, api)` wires the routers; `api=None` serves the operations endpoints
only (what a daemon whose API pool is not wanted would serve, and what the ops tests use).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from services.clock import Clock
from services.web import api_admin, api_notify, api_runs, api_schedules
from services.web.context import ApiContext
from services.web.dashboard.assembly import install_dashboard
from services.web.docs_page import render_docs
from services.web.limits import HttpLimits
from services.web.ops_routes import ops_router
from services.web.problems import install_problem_handlers, only_problem_json
from services.web.query import one_value_each
from services.web.readiness import OpsView, Readiness
from services.web.request_guard import RequestGuard

API_VERSION = "1.0.0"
DESCRIPTION = (
    "Schedules as rows in PostgreSQL, runs exactly once under Redis locks. Every /api/v1 "
    "request needs `Authorization: Bearer <token>`; errors are application/problem+json."
)


def build_app(
    ops: OpsView,
    readiness: Readiness,
    api: ApiContext | None,
    clock: Clock,
    *,
    limits: HttpLimits | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Enhanced Scheduler",
        version=API_VERSION,
        description=DESCRIPTION,
        docs_url=None,  # our own /docs below: Swagger UI would load its script from a CDN
        redoc_url=None,
        dependencies=[Depends(one_value_each)],
    )
    install_problem_handlers(app)
    # Outermost: a body over the limits is refused before routing, parsing or authentication.
    app.add_middleware(RequestGuard, limits=limits or HttpLimits())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = only_problem_json(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to amend the document
    app.include_router(ops_router(ops, readiness, clock))
    if api is not None:
        app.state.api = api
        app.include_router(api_schedules.router)
        app.include_router(api_runs.schedule_runs)
        app.include_router(api_runs.executions)
        app.include_router(api_admin.scheduler)
        app.include_router(api_admin.audit)
        app.include_router(api_admin.tokens)
        app.include_router(api_notify.channels)
        app.include_router(api_notify.notifications)
        install_dashboard(app)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))

    return app
