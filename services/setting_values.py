"""How each setting's text becomes its value: one parser per kind, each raising ValueError with
what it accepts (services/config.py names the variable)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from services.model.nats_subject import pattern_problem
from services.model.notify_rule import notify_problems
from services.urls import conninfo_pairs

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("true or false (also 1/0, yes/no, on/off)")


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
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


def number(minimum: float, *, exclusive: bool = False) -> Callable[[str], float]:
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


def text_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def choice(*choices: str, upper: bool = False) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in choices:
            raise ValueError("one of: " + ", ".join(choices))
        return value

    return parse


def url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError("a URL starting with " + " or ".join(f"{s}://" for s in schemes))
        return value

    return parse


# A key=value DATABASE_URL names at least where to connect.
_CONNINFO_NEEDS = frozenset({"host", "hostaddr", "dbname", "service"})


def database_url(raw: str) -> str:
    """A postgresql:// URL, or libpq's key=value form; both may list several hosts (failover)."""
    value = raw.strip()
    pairs = None if "://" in value else conninfo_pairs(value)
    if pairs is not None and _CONNINFO_NEEDS & set(pairs):
        return value
    try:
        return url("postgresql", "postgres")(value)
    except ValueError:
        raise ValueError(
            "a URL starting with postgresql:// or postgres://, or a libpq key=value string "
            "(host=a,b port=5432,5433 dbname=...)"
        ) from None


def optional_url(*schemes: str) -> Callable[[str], str | None]:
    strict = url(*schemes)

    def parse(raw: str) -> str | None:
        return strict(raw) if raw.strip() else None

    return parse


def nats_urls(raw: str) -> str:
    """One NATS server URL or several, comma-separated (nats-py takes a pool)."""
    servers = [part.strip() for part in raw.split(",") if part.strip()]
    if not servers:
        raise ValueError("a URL starting with nats:// or tls:// (several: comma-separated)")
    strict = url("nats", "tls", "ws", "wss")
    for server in servers:
        try:
            strict(server)
            urlsplit(server).port  # noqa: B018 -- a non-numeric port raises here
        except ValueError:
            raise ValueError(
                "a URL starting with nats://, tls://, ws:// or wss:// (several: comma-separated)"
            ) from None
    return ",".join(servers)


def subject_patterns(raw: str) -> tuple[str, ...]:
    patterns = text_list(raw)
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise ValueError(
                f"comma-separated NATS subjects ('*' one token, '>' the rest); {pattern!r} "
                f"{problem}"
            )
    return patterns


def optional_file(raw: str) -> str | None:
    value = raw.strip()
    if value and not os.path.isfile(value):
        raise ValueError("the path of a readable file (or empty)")
    return value or None


def celery_backend(raw: str) -> str | None:
    # rpc:// has no host (results come back over the broker), so url's host check cannot apply.
    value = raw.strip()
    if value in ("rpc://", "rpc"):
        return "rpc://"
    return optional_url("redis", "rediss")(value)


def timezone(raw: str) -> str:
    value = raw.strip()
    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        raise ValueError("an IANA time zone name such as UTC or Europe/Berlin") from None
    return value


def text(raw: str) -> str:
    return raw.strip()


def optional_text(raw: str) -> str | None:
    return raw.strip() or None


def instance_id(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 200 or any(ch.isspace() or ch == "|" for ch in value):
        raise ValueError("a non-empty name of at most 200 characters without spaces or '|'")
    return value


def notify_rule(raw: str) -> dict[str, Any]:
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
