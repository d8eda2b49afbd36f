"""Adds the dashboard to the app: its pages, static files and error pages."""

from __future__ import annotations

from fastapi import FastAPI

from services.web.dashboard import pages_main, pages_notify, pages_runs, pages_schedules


def install_dashboard(app: FastAPI) -> None:
    app.include_router(pages_main.router)
    app.include_router(pages_schedules.router)
    app.include_router(pages_runs.router)
    app.include_router(pages_notify.router)
    pages_main.install(app)
