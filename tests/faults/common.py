"""Helpers shared by the fault cases: durations scaled by FAULTS_SCALE, daemon environments,
the database's clock, lateness figures and process memory."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.support.daemon import DaemonProcess
from tests.support.daemon import Spawn as Spawn
from tests.support.daemon import start_all as start_all
from tests.support.schedules import db_now as db_now

NOOP = {"callable": "tests.support.handler_funcs:noop"}


def scale() -> float:
    """FAULTS_SCALE (default 1): multiplies the length of every timed stretch of the suite."""
    return float(os.environ.get("FAULTS_SCALE", "1") or "1")


def scaled(seconds: float) -> float:
    return seconds * scale()


def engine_env(base: dict[str, str], **overrides: str) -> dict[str, str]:
    """A daemon's environment: short lock and heartbeat periods (loss and reaping show within
    seconds), the test handlers allowlisted, nothing on HTTP."""
    return {
        **base,
        "LOCK_TIMEOUT": "3",
        "HEARTBEAT_INTERVAL": "0.5",
        "SHUTDOWN_TIMEOUT": "2",
        "STARTUP_TIMEOUT": "30",
        "SCHEDULE_CHECK_INTERVAL": "2",
        "COMMAND_ALLOWLIST": "sleep,echo",
        "PYTHON_HANDLER_ALLOWLIST": "tests.support",
        "HTTP_PORT": "0",
        "LOG_FORMAT": "json",
        "ENV_FILE": "",
        **overrides,
    }


def server_env(database_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """The base environment for a daemon on given servers (private ones, typically)."""
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": redis_prefix}


def keep_alive_for(seconds: float, daemons: Sequence[DaemonProcess], step: float = 0.25) -> None:
    """Let a stretch of time pass (the case is about it), failing at once if a daemon exits."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for daemon in daemons:
            assert daemon.process is not None and daemon.process.poll() is None, (
                f"{daemon.instance_id} exited ({daemon.process and daemon.process.returncode}):\n"
                + daemon.tail()
            )
        time.sleep(min(step, left))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def lateness(rows: Iterable[dict[str, Any]]) -> list[float]:
    """started_at - scheduled_for of the rows that ran (the occurrence's claim time)."""
    return [
        (r["started_at"] - r["scheduled_for"]).total_seconds()
        for r in rows
        if r["status"] not in ("skipped",)
    ]


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def alive(pid: int) -> bool:
    """A zombie counts as gone: it runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def events_named(daemon: DaemonProcess, name: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in daemon.events()
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]
