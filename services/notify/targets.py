"""What a channel may point at: its kind, its target, and the hosts it may reach.

A webhook's or Slack's URL often carries a secret (Slack's incoming-webhook path is one), so
whatever is shown to people (`redacted`) keeps only the scheme and host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from services.errors import InvalidChannel
from services.model.notify_rule import CHANNEL_NAME

KINDS = ("webhook", "slack", "email")
MAX_RECIPIENTS = 50
MAX_URL_LENGTH = 2048
_ADDRESS = re.compile(r"[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,255}")


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """`host` is in the allowlist, exactly or under a `*.example.com` entry."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


def check_name(name: object) -> str:
    if not isinstance(name, str) or not CHANNEL_NAME.fullmatch(name):
        raise InvalidChannel(
            f"channel name {name!r} must be 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return name


def check_target(kind: object, target: object, allowed_hosts: Sequence[str]) -> dict[str, Any]:
    """The target of a channel of `kind`, checked; InvalidChannel says what is wrong (without
    repeating a URL, which may hold a secret)."""
    if kind not in KINDS:
        raise InvalidChannel(f"kind {kind!r} is not one of: {', '.join(KINDS)}")
    if not isinstance(target, dict):
        raise InvalidChannel(f"target must be a JSON object, got {type(target).__name__}")
    if kind == "email":
        return {"to": _recipients(target)}
    extra = sorted(set(target) - {"url"})
    if extra:
        raise InvalidChannel(f"a {kind} target takes only url, not {', '.join(extra)}")
    return {"url": check_url(target.get("url"), allowed_hosts)}


def check_url(url: object, allowed_hosts: Sequence[str]) -> str:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidChannel(f"target.url must be an http(s) URL of at most {MAX_URL_LENGTH} chars")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - a bad port raises here, not at send time
    except ValueError:
        raise InvalidChannel("target.url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidChannel("target.url must start with http:// or https:// and name a host")
    if not host_allowed(host, allowed_hosts):
        raise InvalidChannel(
            f"host {host!r} is not in NOTIFY_ALLOWED_HOSTS"
            + ("" if allowed_hosts else " (empty: no webhook or Slack host is allowed)")
        )
    return url


def _recipients(target: dict[str, Any]) -> list[str]:
    extra = sorted(set(target) - {"to"})
    if extra:
        raise InvalidChannel(f"an email target takes only to, not {', '.join(extra)}")
    to = target.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or len(to) > MAX_RECIPIENTS:
        raise InvalidChannel(f"target.to must list 1-{MAX_RECIPIENTS} email addresses")
    for address in to:
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise InvalidChannel(f"target.to: {address!r} is not an email address")
    return list(dict.fromkeys(to))


def redacted(kind: str, target: dict[str, Any]) -> dict[str, Any]:
    """The target as people may see it: a URL's scheme and host only; addresses as they are."""
    if kind == "email":
        return {"to": list(target.get("to") or [])}
    try:
        parts = urlsplit(str(target.get("url") or ""))
        shown = f"{parts.scheme}://{parts.hostname}/***" if parts.hostname else "<unparseable URL>"
    except ValueError:
        shown = "<unparseable URL>"
    return {"url": shown}
