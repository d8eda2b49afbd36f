"""structlog set-up: one JSON object a line on stderr (or a console renderer on a terminal).

Every line carries `instance_id`; stdlib loggers (APScheduler, psycopg_pool) go through the same
processors. Secrets are masked on every line: passwords inside URLs and the configured secret
values (API token, Redis password, database password).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

from services.urls import url_passwords

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_secrets: tuple[str, ...] = ()
_instance_id: str | None = None


def mask_secrets(text: str) -> str:
    """`text` with URL passwords and the registered secret values replaced by ***."""
    if "@" in text:  # every URL password is followed by one; most values have none
        text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def _mask_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: _mask(value) for key, value in event.items()}


def _add_instance_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _instance_id is not None:
        event.setdefault("instance_id", _instance_id)
    return event


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line (short ones are ignored: too many false hits)."""
    global _secrets
    _secrets = tuple(sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True))


def secrets_of(settings: Any) -> list[str | None]:
    """The secret values held by a Settings object."""
    secrets = [settings.api_token, settings.redis_password]
    secrets += url_passwords(settings.database_url)
    # REDIS_URL's own password (REDIS_PASSWORD is unset then), and the sentinels' password.
    secrets += [urlsplit(settings.redis_url).password, settings.redis_sentinel_password]
    # The celery job's broker and result backend (handlers/celery.py).
    for url in (settings.celery_broker_url, settings.celery_result_backend):
        secrets.append(urlsplit(url).password if url else None)
    return secrets


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "auto",
    instance_id: str | None = None,
    secrets: Iterable[str | None] = (),
    stream: Any = None,
) -> None:
    """Configure structlog and stdlib logging once for the process."""
    global _instance_id
    _instance_id = instance_id
    register_secrets(secrets)
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_instance_id,
        structlog.processors.format_exc_info,
        _mask_processor,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer(default=str)
    )
    # Our own events are filtered by level before any work and written straight to the stream
    # (a run logs on the hot path; the stdlib round trip cost more than the rest of its logging).
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Not cached: a later configure_logging (the CLI, tests, benchmarks) must reach loggers
        # already used; a run binds its own logger once, so this costs little on the hot path.
        cache_logger_on_first_use=False,
    )
    # Other libraries' stdlib records (APScheduler, psycopg_pool) get the same processors.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every run at INFO; we log our own, richer events instead.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # httpx and httpcore log each request's full URL at INFO/DEBUG; a notification URL (a Slack
    # hook) or a job's URL may carry a token in it, so their per-request lines never show.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
