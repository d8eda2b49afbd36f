"""What CLI commands talk to, built once per process from the settings."""

from __future__ import annotations

import getpass
import os
from functools import cache

import redis

from services.config import get_settings
from services.lock.client import create_redis_client
from services.lock.target import RedisTarget
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


@cache
def _pool() -> DatabaseConnection:
    settings = get_settings()
    return open_pool(settings.database_url, min_size=0, max_size=2, pool_timeout=10)


@cache
def redis_client() -> redis.Redis:
    settings = get_settings()
    target = RedisTarget.from_settings(settings)
    return create_redis_client(target, max_connections=4, socket_timeout=5.0)


def repository() -> ScheduleRepository:
    return ScheduleRepository(_pool(), default_timezone=get_settings().scheduler_timezone)


def history() -> JobHistory:
    return JobHistory(_pool())


def run_requests() -> RunRequestStore:
    return RunRequestStore(_pool())


def key_prefix() -> str:
    return get_settings().redis_key_prefix


def tokens() -> TokenStore:
    return TokenStore(_pool())


def scheduler_state() -> SchedulerStateStore:
    return SchedulerStateStore(_pool())


def audit() -> AuditStore:
    return AuditStore(_pool())


def actor() -> str:
    """Who the audit trail names for this command's schedule changes: `cli:<OS user>`."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry (some containers)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def channel_admin() -> ChannelAdmin:
    settings = get_settings()
    return ChannelAdmin(
        ChannelStore(_pool()),
        NotificationStore(_pool()),
        lambda: build_senders(settings),
        settings.notify_allowed_hosts,
    )


def notification_store() -> NotificationStore:
    return NotificationStore(_pool())
