"""Settings: every contract variable, read once from the environment and `.env`, validated.

A bad value stops start-up with one line naming the variable, the value and what it accepts.
The environment wins over `.env`; `.env` is for local use (path overridable with ENV_FILE).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from dotenv import dotenv_values

from services.errors import ConfigurationError
from services.model.nats_subject import pattern_problem
from services.model.notify_rule import notify_problems
from services.model.redis_sentinels import parse_sentinels, sentinel_settings_problem
from services.process_wide import ProcessWide

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JOB_TYPES = ("http", "command", "python", "nats", "celery")


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("true or false (also 1/0, yes/no, on/off)")


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        bounds = (
            f"an integer >= {minimum}" if maximum is None else f"an integer {minimum}-{maximum}"
        )
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(bounds) from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(bounds)
        return value

    return parse


def _float(minimum: float, *, exclusive: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        accepted = f"a number {'>' if exclusive else '>='} {minimum:g} (seconds)"
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(accepted) from None
        if value != value or value < minimum or (exclusive and value == minimum):
            raise ValueError(accepted)
        return value

    return parse


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ValueError("one of: " + ", ".join(choices))
        return value

    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError("a URL starting with " + " or ".join(f"{s}://" for s in schemes))
        return value

    return parse


def _optional_url(*schemes: str) -> Callable[[str], str | None]:
    strict = _url(*schemes)

    def parse(raw: str) -> str | None:
        return strict(raw) if raw.strip() else None

    return parse


def _nats_urls(raw: str) -> str:
    """One NATS server URL or several, comma-separated (nats-py takes a pool)."""
    servers = [part.strip() for part in raw.split(",") if part.strip()]
    if not servers:
        raise ValueError("a URL starting with nats:// or tls:// (several: comma-separated)")
    strict = _url("nats", "tls", "ws", "wss")
    for server in servers:
        try:
            strict(server)
            urlsplit(server).port  # noqa: B018 -- a non-numeric port raises here
        except ValueError:
            raise ValueError(
                "a URL starting with nats://, tls://, ws:// or wss:// (several: comma-separated)"
            ) from None
    return ",".join(servers)


def _subject_patterns(raw: str) -> tuple[str, ...]:
    patterns = _list(raw)
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise ValueError(
                f"comma-separated NATS subjects ('*' one token, '>' the rest); {pattern!r} "
                f"{problem}"
            )
    return patterns


def _optional_file(raw: str) -> str | None:
    value = raw.strip()
    if value and not os.path.isfile(value):
        raise ValueError("the path of a readable file (or empty)")
    return value or None


def _celery_backend(raw: str) -> str | None:
    # rpc:// has no host (results come back over the broker), so _url's host check cannot apply.
    value = raw.strip()
    if value in ("rpc://", "rpc"):
        return "rpc://"
    return _optional_url("redis", "rediss")(value)


def _timezone(raw: str) -> str:
    value = raw.strip()
    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        raise ValueError("an IANA time zone name such as UTC or Europe/Berlin") from None
    return value


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _instance_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 200 or any(ch.isspace() or ch == "|" for ch in value):
        raise ValueError("a non-empty name of at most 200 characters without spaces or '|'")
    return value


def _notify_rule(raw: str) -> dict[str, Any]:
    """NOTIFY_DEFAULT: a notify object as a schedule's `notify` column takes it."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError('a JSON object such as {"channels": ["ops"], "on": ["failed"]}') from None
    problems = notify_problems(value, "NOTIFY_DEFAULT")
    if problems:
        raise ValueError("; ".join(problems))
    result: dict[str, Any] = value
    return result


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
        _url("postgresql", "postgres"),
        "postgresql://postgres@127.0.0.1:5432/enhanced_scheduler",
    )
    db_pool_min_size: int = _setting("DB_POOL_MIN_SIZE", _int(0, 100), "1")
    db_pool_max_size: int = _setting("DB_POOL_MAX_SIZE", _int(1, 1000), "10")
    redis_url_setting: str | None = _setting(
        "REDIS_URL", _optional_url("redis", "rediss", "unix"), ""
    )
    redis_host: str = _setting("REDIS_HOST", _text, "127.0.0.1")
    redis_port: int = _setting("REDIS_PORT", _int(1, 65535), "6379")
    redis_db: int = _setting("REDIS_DB", _int(0, 1000), "0")
    redis_password: str | None = _setting("REDIS_PASSWORD", _optional_text, "")
    redis_max_connections: int = _setting("REDIS_MAX_CONNECTIONS", _int(2, 10000), "50")
    redis_key_prefix: str = _setting("REDIS_KEY_PREFIX", _text, "")
    # Sentinel mode (services/lock/sentinel.py): the master is asked of these; REDIS_URL (or
    # REDIS_DB/REDIS_PASSWORD) still gives the database, the credentials and TLS.
    redis_sentinels: tuple[str, ...] = _setting("REDIS_SENTINELS", parse_sentinels, "")
    redis_sentinel_master: str | None = _setting("REDIS_SENTINEL_MASTER", _optional_text, "")
    redis_sentinel_password: str | None = _setting("REDIS_SENTINEL_PASSWORD", _optional_text, "")
    max_workers: int = _setting("MAX_WORKERS", _int(1, 1000), "5")
    job_replace_existing_instance: bool = _setting("JOB_REPLACE_EXISTING_INSTANCE", _bool, "true")
    job_max_instances: int = _setting("JOB_MAX_INSTANCES", _int(1, 1000), "1")
    job_coalesce: bool = _setting("JOB_COALESCE", _bool, "true")
    job_misfire_grace_time: float = _setting("JOB_MISFIRE_GRACE_TIME", _float(0), "300")
    api_url: str | None = _setting("API_URL", _optional_url("http", "https"), "")
    api_token: str | None = _setting("API_TOKEN", _optional_text, "")
    request_timeout: float = _setting("REQUEST_TIMEOUT", _float(0, exclusive=True), "10")
    api_sync_interval: float = _setting("API_SYNC_INTERVAL", _float(1), "300")
    api_sync_disable_missing: bool = _setting("API_SYNC_DISABLE_MISSING", _bool, "false")
    schedule_check_interval: float = _setting("SCHEDULE_CHECK_INTERVAL", _float(0.1), "60")
    lock_timeout: float = _setting("LOCK_TIMEOUT", _float(1), "60")
    heartbeat_interval: float = _setting("HEARTBEAT_INTERVAL", _float(0.2), "5")
    instance_id: str = _setting("INSTANCE_ID", _instance_id, None)
    scheduler_timezone: str = _setting("SCHEDULER_TIMEZONE", _timezone, "UTC")
    default_job_type: str = _setting("DEFAULT_JOB_TYPE", _choice(*JOB_TYPES), "http")
    job_webhook_url: str | None = _setting("JOB_WEBHOOK_URL", _optional_url("http", "https"), "")
    job_timeout: float = _setting("JOB_TIMEOUT", _float(0, exclusive=True), "3600")
    command_allowlist: tuple[str, ...] = _setting("COMMAND_ALLOWLIST", _list, "")
    python_handler_allowlist: tuple[str, ...] = _setting("PYTHON_HANDLER_ALLOWLIST", _list, "")
    http_allowed_hosts: tuple[str, ...] = _setting("HTTP_ALLOWED_HOSTS", _list, "")
    http_host: str = _setting("HTTP_HOST", _text, "127.0.0.1")
    http_port: int = _setting("HTTP_PORT", _int(0, 65535), "8008")
    shutdown_timeout: float = _setting("SHUTDOWN_TIMEOUT", _float(0), "30")
    history_retention_days: int = _setting("HISTORY_RETENTION_DAYS", _int(0), "90")
    audit_retention_days: int = _setting("AUDIT_RETENTION_DAYS", _int(0), "365")
    max_schedules_per_creator: int = _setting("MAX_SCHEDULES_PER_CREATOR", _int(0), "0")
    log_level: str = _setting("LOG_LEVEL", _choice(*LOG_LEVELS, upper=True), "INFO")
    log_format: str = _setting("LOG_FORMAT", _choice(*LOG_FORMATS), "auto")
    startup_timeout: float = _setting("STARTUP_TIMEOUT", _float(0), "60")
    migrate_on_start: bool = _setting("MIGRATE_ON_START", _bool, "false")
    retry_initial_delay: float = _setting("RETRY_INITIAL_DELAY", _float(0), "1")
    retry_backoff_base: float = _setting("RETRY_BACKOFF_BASE", _float(1), "2")
    retry_max_delay: float = _setting("RETRY_MAX_DELAY", _float(0), "300")
    retry_max_attempts: int = _setting("RETRY_MAX_ATTEMPTS", _int(1, 100), "3")
    backfill_concurrency: int = _setting("BACKFILL_CONCURRENCY", _int(1, 1000), "1")
    notify_default: Mapping[str, Any] = _setting("NOTIFY_DEFAULT", _notify_rule, "{}")
    notify_allowed_hosts: tuple[str, ...] = _setting("NOTIFY_ALLOWED_HOSTS", _list, "")
    notify_webhook_secret: str | None = _setting("NOTIFY_WEBHOOK_SECRET", _optional_text, "")
    notify_max_attempts: int = _setting("NOTIFY_MAX_ATTEMPTS", _int(1, 100), "5")
    notify_rate_per_minute: int = _setting("NOTIFY_RATE_PER_MINUTE", _int(1, 100000), "30")
    notify_check_interval: float = _setting("NOTIFY_CHECK_INTERVAL", _float(0.1), "5")
    notify_dashboard_url: str | None = _setting(
        "NOTIFY_DASHBOARD_URL", _optional_url("http", "https"), ""
    )
    notify_retention_days: int = _setting("NOTIFY_RETENTION_DAYS", _int(0), "30")
    smtp_host: str | None = _setting("SMTP_HOST", _optional_text, "")
    smtp_port: int = _setting("SMTP_PORT", _int(1, 65535), "587")
    smtp_user: str | None = _setting("SMTP_USER", _optional_text, "")
    smtp_password: str | None = _setting("SMTP_PASSWORD", _optional_text, "")
    smtp_starttls: bool = _setting("SMTP_STARTTLS", _bool, "true")
    smtp_from: str = _setting("SMTP_FROM", _text, "scheduler@localhost")
    nats_url: str = _setting("NATS_URL", _nats_urls, "nats://127.0.0.1:4222")
    nats_subject_allowlist: tuple[str, ...] = _setting(
        "NATS_SUBJECT_ALLOWLIST", _subject_patterns, ""
    )
    nats_timeout: float = _setting("NATS_TIMEOUT", _float(0, exclusive=True), "5")
    nats_creds_file: str | None = _setting("NATS_CREDS_FILE", _optional_file, "")
    nats_tls_ca: str | None = _setting("NATS_TLS_CA", _optional_file, "")
    # The celery job type (handlers/celery.py).
    celery_broker_url: str | None = _setting(
        "CELERY_BROKER_URL", _optional_url("amqp", "amqps", "pyamqp", "redis", "rediss"), ""
    )
    celery_result_backend: str | None = _setting("CELERY_RESULT_BACKEND", _celery_backend, "")
    celery_task_allowlist: tuple[str, ...] = _setting("CELERY_TASK_ALLOWLIST", _list, "")
    celery_timeout: float = _setting("CELERY_TIMEOUT", _float(0, exclusive=True), "10")

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
            elif isinstance(value, str) and "://" in value:
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


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages (each URL of a
    comma-separated list, such as a NATS server pool, on its own)."""
    pieces = url.split(",")
    if len(pieces) > 1 and all("://" in piece for piece in pieces):
        return ",".join(mask_url(piece) for piece in pieces)
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # e.g. a non-numeric port: mask the whole thing rather than leak it
        return "<unparseable URL>"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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
