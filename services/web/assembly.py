"""Builds the HTTP server a process runs: the daemon (with the scheduler behind /status) or
`scheduler.py serve` (the API alone). The one place that opens the API's own pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.clock import Clock
from services.config import Settings
from services.notify.assembly import build_senders
from services.notify.channels import ChannelAdmin
from services.store.audit import AuditStore
from services.store.channels import ChannelStore
from services.store.history import JobHistory
from services.store.notifications import NotificationStore
from services.store.pool import DatabaseConnection, open_pool
from services.store.run_requests import RunRequestStore
from services.store.scheduler_state import SchedulerStateStore
from services.store.schedules import ScheduleRepository
from services.store.tokens import TokenStore
from services.store.web_sessions import WebSessionStore
from services.web.app import build_app
from services.web.auth_throttle import AuthThrottle
from services.web.context import ApiContext
from services.web.limits import HttpLimits
from services.web.readiness import READY_CHECK_TIMEOUT, OpsView, Readiness
from services.web.server import WebServer

# The API works over a pool of its own, so that a burst of API requests never takes a
# connection a run is waiting for; a request waits at most this long for one.
API_POOL_SIZE = 4
API_POOL_TIMEOUT = 5.0
# How many API requests run at once. In the daemon, few: each one competes with the firing
# threads for the GIL (measured: 8 clients on the daemon's port doubled its fire lateness), so
# heavy API users belong on `scheduler.py serve`, which takes more.
DAEMON_API_THREADS = 2
SERVE_API_THREADS = 16


def open_api_pool(settings: Settings) -> DatabaseConnection:
    return open_pool(
        settings.database_url, min_size=0, max_size=API_POOL_SIZE, pool_timeout=API_POOL_TIMEOUT
    )


def api_context(
    settings: Settings,
    db: DatabaseConnection,
    *,
    live_instances: Callable[[], list[dict[str, Any]]],
    clock: Clock,
) -> ApiContext:
    return ApiContext(
        schedules=ScheduleRepository(db, default_timezone=settings.scheduler_timezone),
        history=JobHistory(db),
        run_requests=RunRequestStore(db),
        tokens=TokenStore(db),
        audit=AuditStore(db),
        scheduler_state=SchedulerStateStore(db),
        sessions=WebSessionStore(db),
        channels=ChannelAdmin(
            ChannelStore(db),
            NotificationStore(db),
            lambda: build_senders(settings),
            settings.notify_allowed_hosts,
        ),
        notifications=NotificationStore(db),
        live_instances=live_instances,
        clock=clock,
        max_schedules_per_creator=settings.max_schedules_per_creator,
        auth_throttle=AuthThrottle(clock),
    )


def build_web_server(
    ops: OpsView,
    *,
    host: str,
    port: int,
    clock: Clock,
    api: ApiContext | None = None,
    check_timeout: float = READY_CHECK_TIMEOUT,
    closers: list[Callable[[], None]] | None = None,
    worker_threads: int = SERVE_API_THREADS,
    limits: HttpLimits | None = None,
) -> WebServer:
    """The server for `ops` (and the API when `api` is given); `closers` run when it stops."""
    limits = limits or HttpLimits()
    readiness = Readiness(ops, clock=clock, timeout=check_timeout)
    app = build_app(ops, readiness, api, clock, limits=limits)
    return WebServer(
        app,
        host,
        port,
        closers=[readiness.close, *(closers or [])],
        worker_threads=worker_threads,
        limits=limits,
    )
