"""REDIS_SENTINELS and its companions: what a valid sentinel list is, and which combinations
of the Sentinel variables make sense.

Pure (no I/O, no Redis client): the settings validate with these at start-up, and the client
factory (services/lock/target.py) splits the same entries into (host, port).
"""

from __future__ import annotations

from collections.abc import Sequence


def split_host_port(entry: str) -> tuple[str, int]:
    """("host", port) of `host:port` (IPv6 in brackets: `[::1]:26379`); ValueError otherwise."""
    host, sep, port = entry.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or any(ch.isspace() or ch in "/@,[]" for ch in host):
        raise ValueError(entry)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(entry)
    return host, int(port)


def parse_sentinels(raw: str) -> tuple[str, ...]:
    """Comma-separated `host:port` entries, each checked on its own so that the error names
    the entry that is wrong (ValueError saying what is accepted)."""
    entries = tuple(item.strip() for item in raw.split(",") if item.strip())
    for entry in entries:
        try:
            split_host_port(entry)
        except ValueError:
            raise ValueError(
                f"comma-separated host:port entries (port 1-65535); {entry!r} is not one"
            ) from None
    return entries


def sentinel_settings_problem(
    sentinels: Sequence[str], master: str | None, url_scheme: str
) -> str | None:
    """Why these Sentinel settings cannot work together (a message naming the variable), or
    None. `url_scheme` is REDIS_URL's: it still gives TLS, database and credentials."""
    if sentinels and not master:
        return (
            "REDIS_SENTINEL_MASTER is missing: expected the service name the sentinels monitor "
            "(`sentinel monitor <name> ...`), required when REDIS_SENTINELS is set"
        )
    if master and not sentinels:
        return (
            f"REDIS_SENTINEL_MASTER={master!r} is set but REDIS_SENTINELS is empty: expected "
            "the sentinels as host:port, comma-separated"
        )
    if sentinels and url_scheme not in ("redis", "rediss"):
        return (
            f"REDIS_URL ({url_scheme}://) is invalid with REDIS_SENTINELS: expected redis:// "
            "or rediss:// (the sentinels name a TCP master)"
        )
    return None
