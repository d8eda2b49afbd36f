"""Settings: every contract variable, read once from the environment and `.env`, validated.

A bad value stops start-up with one line naming the variable, the value and what it accepts.
The environment wins over `.env`; `.env` is for local use (path overridable with ENV_FILE).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import quote, urlsplit

from dotenv import dotenv_values

from services import setting_values as values
from services.errors import ConfigurationError
from services.model.redis_sentinels import parse_sentinels, sentinel_settings_problem
from services.process_wide import ProcessWide
from services.urls import mask_url as mask_url

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JOB_TYPES = ("http", "command", "python", "nats", "celery")


def _setting(env: str, parse: Callable[[str], Any], default: str | None) -> Any:
    """Declare a field: its variable name, its parser and its default (as the raw string)."""
    return field(metadata={"env": env, "parse": parse, "default": default})


def default_instance_id() -> str:
    # hostname-pid: unique per process; set INSTANCE_ID for an identity that survives restarts.
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    database_url: str = _setting(
        "DATABASE_URL",
        values.database_url,
        "postgresql://postgres@127.0.0.1:5432/enhanced_scheduler",
    )
    db_pool_min_size: int = _setting("DB_POOL_MIN_SIZE", values.integer(0, 100), "1")
    db_pool_max_size: int = _setting("DB_POOL_MAX_SIZE", values.integer(1, 1000), "10")
    redis_url_setting: str | None = _setting(
        "REDIS_URL", values.optional_url("redis", "rediss", "unix"), ""
    )
    redis_host: str = _setting("REDIS_HOST", values.text, "127.0.0.1")
    redis_port: int = _setting("REDIS_PORT", values.integer(1, 65535), "6379")
    redis_db: int = _setting("REDIS_DB", values.integer(0, 1000), "0")
    redis_password: str | None = _setting("REDIS_PASSWORD", values.optional_text, "")
    redis_max_connections: int = _setting("REDIS_MAX_CONNECTIONS", values.integer(2, 10000), "50")
    redis_key_prefix: str = _setting("REDIS_KEY_PREFIX", values.text, "")
    # Sentinel mode (services/lock/sentinel.py): the master is asked of these; REDIS_URL (or
    # REDIS_DB/REDIS_PASSWORD) still gives the database, the credentials and TLS.
    redis_sentinels: tuple[str, ...] = _setting("REDIS_SENTINELS", parse_sentinels, "")
    redis_sentinel_master: str | None = _setting("REDIS_SENTINEL_MASTER", values.optional_text, "")
    redis_sentinel_password: str | None = _setting(
        "REDIS_SENTINEL_PASSWORD", values.optional_text, ""
    )
    max_workers: int = _setting("MAX_WORKERS", values.integer(1, 1000), "5")
    job_replace_existing_instance: bool = _setting(
        "JOB_REPLACE_EXISTING_INSTANCE", values.boolean, "true"
    )
    job_max_instances: int = _setting("JOB_MAX_INSTANCES", values.integer(1, 1000), "1")
    job_coalesce: bool = _setting("JOB_COALESCE", values.boolean, "true")
    job_misfire_grace_time: float = _setting("JOB_MISFIRE_GRACE_TIME", values.number(0), "300")
    api_url: str | None = _setting("API_URL", values.optional_url("http", "https"), "")
    api_token: str | None = _setting("API_TOKEN", values.optional_text, "")
    request_timeout: float = _setting("REQUEST_TIMEOUT", values.number(0, exclusive=True), "10")
    api_sync_interval: float = _setting("API_SYNC_INTERVAL", values.number(1), "300")
    api_sync_disable_missing: bool = _setting("API_SYNC_DISABLE_MISSING", values.boolean, "false")
    schedule_check_interval: float = _setting("SCHEDULE_CHECK_INTERVAL", values.number(0.1), "60")
    lock_timeout: float = _setting("LOCK_TIMEOUT", values.number(1), "60")
    heartbeat_interval: float = _setting("HEARTBEAT_INTERVAL", values.number(0.2), "5")
    instance_id: str = _setting("INSTANCE_ID", values.instance_id, None)
    # Beyond one machine (services/watch/shard_keeper.py): 1 = every instance loads everything.
    scheduler_shards: int = _setting("SCHEDULER_SHARDS", values.integer(1, 4096), "1")
    shard_replicas: int = _setting("SHARD_REPLICAS", values.integer(1, 64), "2")
    scheduler_timezone: str = _setting("SCHEDULER_TIMEZONE", values.timezone, "UTC")
    default_job_type: str = _setting("DEFAULT_JOB_TYPE", values.choice(*JOB_TYPES), "http")
    job_webhook_url: str | None = _setting(
        "JOB_WEBHOOK_URL", values.optional_url("http", "https"), ""
    )
    job_timeout: float = _setting("JOB_TIMEOUT", values.number(0, exclusive=True), "3600")
    command_allowlist: tuple[str, ...] = _setting("COMMAND_ALLOWLIST", values.text_list, "")
    python_handler_allowlist: tuple[str, ...] = _setting(
        "PYTHON_HANDLER_ALLOWLIST", values.text_list, ""
    )
    http_allowed_hosts: tuple[str, ...] = _setting("HTTP_ALLOWED_HOSTS", values.text_list, "")
    http_host: str = _setting("HTTP_HOST", values.text, "127.0.0.1")
    http_port: int = _setting("HTTP_PORT", values.integer(0, 65535), "8008")
    # Hostile clients (services/web/limits.py): body size, read deadlines, open connections.
    http_max_body_bytes: int = _setting(
        "HTTP_MAX_BODY_BYTES", values.integer(1024, 1 << 30), "1048576"
    )
    http_header_timeout: float = _setting(
        "HTTP_HEADER_TIMEOUT", values.number(0, exclusive=True), "10"
    )
    http_body_timeout: float = _setting("HTTP_BODY_TIMEOUT", values.number(0, exclusive=True), "30")
    http_max_connections: int = _setting("HTTP_MAX_CONNECTIONS", values.integer(8, 100000), "256")
    shutdown_timeout: float = _setting("SHUTDOWN_TIMEOUT", values.number(0), "30")
    history_retention_days: int = _setting("HISTORY_RETENTION_DAYS", values.integer(0), "90")
    audit_retention_days: int = _setting("AUDIT_RETENTION_DAYS", values.integer(0), "365")
    max_schedules_per_creator: int = _setting("MAX_SCHEDULES_PER_CREATOR", values.integer(0), "0")
    log_level: str = _setting("LOG_LEVEL", values.choice(*LOG_LEVELS, upper=True), "INFO")
    log_format: str = _setting("LOG_FORMAT", values.choice(*LOG_FORMATS), "auto")
    startup_timeout: float = _setting("STARTUP_TIMEOUT", values.number(0), "60")
    migrate_on_start: bool = _setting("MIGRATE_ON_START", values.boolean, "false")
    retry_initial_delay: float = _setting("RETRY_INITIAL_DELAY", values.number(0), "1")
    retry_backoff_base: float = _setting("RETRY_BACKOFF_BASE", values.number(1), "2")
    retry_max_delay: float = _setting("RETRY_MAX_DELAY", values.number(0), "300")
    retry_max_attempts: int = _setting("RETRY_MAX_ATTEMPTS", values.integer(1, 100), "3")
    backfill_concurrency: int = _setting("BACKFILL_CONCURRENCY", values.integer(1, 1000), "1")
    notify_default: Mapping[str, Any] = _setting("NOTIFY_DEFAULT", values.notify_rule, "{}")
    notify_allowed_hosts: tuple[str, ...] = _setting("NOTIFY_ALLOWED_HOSTS", values.text_list, "")
    notify_webhook_secret: str | None = _setting("NOTIFY_WEBHOOK_SECRET", values.optional_text, "")
    notify_max_attempts: int = _setting("NOTIFY_MAX_ATTEMPTS", values.integer(1, 100), "5")
    notify_rate_per_minute: int = _setting(
        "NOTIFY_RATE_PER_MINUTE", values.integer(1, 100000), "30"
    )
    notify_check_interval: float = _setting("NOTIFY_CHECK_INTERVAL", values.number(0.1), "5")
    notify_dashboard_url: str | None = _setting(
        "NOTIFY_DASHBOARD_URL", values.optional_url("http", "https"), ""
    )
    notify_retention_days: int = _setting("NOTIFY_RETENTION_DAYS", values.integer(0), "30")
    smtp_host: str | None = _setting("SMTP_HOST", values.optional_text, "")
    smtp_port: int = _setting("SMTP_PORT", values.integer(1, 65535), "587")
    smtp_user: str | None = _setting("SMTP_USER", values.optional_text, "")
    smtp_password: str | None = _setting("SMTP_PASSWORD", values.optional_text, "")
    smtp_starttls: bool = _setting("SMTP_STARTTLS", values.boolean, "true")
    smtp_from: str = _setting("SMTP_FROM", values.text, "scheduler@localhost")
    nats_url: str = _setting("NATS_URL", values.nats_urls, "nats://127.0.0.1:4222")
    nats_subject_allowlist: tuple[str, ...] = _setting(
        "NATS_SUBJECT_ALLOWLIST", values.subject_patterns, ""
    )
    nats_timeout: float = _setting("NATS_TIMEOUT", values.number(0, exclusive=True), "5")
    nats_creds_file: str | None = _setting("NATS_CREDS_FILE", values.optional_file, "")
    nats_tls_ca: str | None = _setting("NATS_TLS_CA", values.optional_file, "")
    # The celery job type (handlers/celery.py).
    celery_broker_url: str | None = _setting(
        "CELERY_BROKER_URL", values.optional_url("amqp", "amqps", "pyamqp", "redis", "rediss"), ""
    )
    celery_result_backend: str | None = _setting("CELERY_RESULT_BACKEND", values.celery_backend, "")
    celery_task_allowlist: tuple[str, ...] = _setting("CELERY_TASK_ALLOWLIST", values.text_list, "")
    celery_timeout: float = _setting("CELERY_TIMEOUT", values.number(0, exclusive=True), "10")

    @property
    def redis_url(self) -> str:
        """REDIS_URL if set, else built from REDIS_HOST/PORT/DB/PASSWORD."""
        if self.redis_url_setting:
            return self.redis_url_setting
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def public_view(self) -> dict[str, Any]:
        """Every setting by variable name, secrets masked: safe for logs and `status`."""
        view: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            env = item.metadata["env"]
            if env in SECRET_VARIABLES and value:
                value = "***"
            elif isinstance(value, str) and ("://" in value or env == "DATABASE_URL"):
                value = mask_url(value)
            view[env] = list(value) if isinstance(value, tuple) else value
        return view


SECRET_VARIABLES = frozenset(
    {
        "API_TOKEN",
        "REDIS_PASSWORD",
        "REDIS_SENTINEL_PASSWORD",
        "NOTIFY_WEBHOOK_SECRET",
        "SMTP_PASSWORD",
    }
)
VARIABLES = tuple(item.metadata["env"] for item in fields(Settings))


def _read_sources(environ: Mapping[str, str] | None, env_file: str | None) -> dict[str, str]:
    values: dict[str, str] = {}
    path = env_file if env_file is not None else os.environ.get("ENV_FILE", ".env")
    if path and os.path.isfile(path):
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: str | None = None
) -> Settings:
    """Settings from `environ` (default os.environ) over `.env`; raise on the first bad value."""
    source = _read_sources(environ, env_file)
    kwargs: dict[str, Any] = {}
    for item in fields(Settings):
        env, parse, default = (item.metadata[k] for k in ("env", "parse", "default"))
        raw = source.get(env)
        if raw is None or (raw.strip() == "" and default is not None):
            if default is None:
                kwargs[item.name] = default_instance_id() if env == "INSTANCE_ID" else None
                continue
            raw = default
        try:
            kwargs[item.name] = parse(raw)
        except ValueError as exc:
            shown = "***" if env in SECRET_VARIABLES else mask_url(raw)
            raise ConfigurationError(f"{env}={shown!r} is invalid: expected {exc}") from None
    settings = Settings(**kwargs)
    if settings.db_pool_min_size > settings.db_pool_max_size:
        raise ConfigurationError(
            f"DB_POOL_MIN_SIZE={settings.db_pool_min_size} is invalid: expected at most "
            f"DB_POOL_MAX_SIZE ({settings.db_pool_max_size})"
        )
    problem = sentinel_settings_problem(
        settings.redis_sentinels,
        settings.redis_sentinel_master,
        urlsplit(settings.redis_url).scheme,
    )
    if problem is not None:
        raise ConfigurationError(problem)
    return settings


_settings: ProcessWide[Settings] = ProcessWide(lambda: load_settings())


def get_settings() -> Settings:
    """The process-wide Settings, loaded on first use."""
    return _settings.get()


def set_settings(settings: Settings | None) -> None:
    """Replace (or with None, forget) the process-wide Settings: for start-up and tests."""
    _settings.set(settings)
