"""Connection strings in messages and logs: libpq's key=value form read, the passwords a URL or
a key=value string carries found, and masked (every host kept: a multi-host DATABASE_URL names
each server of a failover cluster)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit, urlunsplit

# One `keyword = value` of a libpq key=value connection string; a value is a bare word or
# single-quoted with backslash escapes.
_CONNINFO_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)\s*")


def conninfo_pairs(text: str) -> dict[str, str] | None:
    """The keywords of a libpq key=value connection string (`host=a,b port=5432,5433
    dbname=db`), values unquoted; None when `text` is not one."""
    pairs: dict[str, str] = {}
    text, pos = text.strip(), 0
    while pos < len(text):
        match = _CONNINFO_PAIR.match(text, pos)
        if match is None:
            return None
        value = match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        pairs[match.group(1).lower()] = value
        pos = match.end()
    return pairs or None


def url_passwords(url: str) -> list[str]:
    """The passwords a connection string carries: a URL's user part and `?password=`, or a
    key=value string's `password=` (so that the log masker knows them)."""
    if "://" not in url:
        pairs = conninfo_pairs(url) or {}
        return [pairs["password"]] if pairs.get("password") else []
    parts = urlsplit(url)
    found = [parts.password] if parts.password else []
    return found + parse_qs(parts.query).get("password", [])


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages (each URL of a
    comma-separated list, such as a NATS server pool, on its own)."""
    if "://" not in url:  # libpq's key=value form
        return _CONNINFO_PASSWORD.sub(r"\1***", url)
    pieces = url.split(",")
    if len(pieces) > 1 and all("://" in piece for piece in pieces):
        return ",".join(mask_url(piece) for piece in pieces)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unreadable address: mask the whole thing rather than leak it
        return "<unparseable URL>"
    if password is None:
        return _mask_query_password(url)
    # The hosts are kept as written: a libpq multi-host URL (`u:pw@a:5432,b:5433/db`, for
    # failover) has no single host or port for urlsplit to read.
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return _mask_query_password(urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}")))


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE)


def _mask_query_password(url: str) -> str:
    # libpq also reads `?password=` from a postgresql:// URL's query.
    return _QUERY_PASSWORD.sub(r"\1***", url)
