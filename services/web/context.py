"""What the REST API's routes work with: the stores, a view of the live instances, the clock.

Built once per process (the daemon's, or `scheduler.py serve`'s) and kept on the app; a route
gets it through the `api_context` dependency and never opens a connection of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from services.clock import Clock
from services.notify.channels import ChannelAdmin
from services.store.audit import AuditStore
from services.store.history import JobHistory
from services.store.notifications import NotificationStore
from services.store.run_requests import RunRequestStore
from services.store.scheduler_state import SchedulerStateStore
from services.store.schedules import ScheduleRepository
from services.store.tokens import TokenStore
from services.store.web_sessions import WebSessionStore
from services.web.auth_throttle import AuthThrottle


@dataclass(frozen=True)
class ApiContext:
    schedules: ScheduleRepository
    history: JobHistory
    run_requests: RunRequestStore
    tokens: TokenStore
    audit: AuditStore
    scheduler_state: SchedulerStateStore
    sessions: WebSessionStore
    channels: ChannelAdmin
    notifications: NotificationStore
    live_instances: Callable[[], list[dict[str, Any]]]  # from the heartbeats in Redis
    clock: Clock
    max_schedules_per_creator: int = 0  # 0: no limit
    auth_throttle: AuthThrottle = field(default_factory=AuthThrottle)  # bad tokens per client

    @property
    def default_timezone(self) -> str:
        return self.schedules.default_timezone


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context
