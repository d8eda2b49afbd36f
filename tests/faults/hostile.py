"""The catalogue of hostile `schedules` rows of case 5, each with the outcome the contract asks
for and the exact reason: a wrong value of every type in every time_config field, broken
shapes, path-traversing time zones, crons that never fire, a `once` long gone, oversized JSON,
commands and python callables outside the allowlists (whose success would leave a marker file),
and an unknown job type."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.common import NOOP

COMMAND_ALLOWLIST = "echo"
PYTHON_ALLOWLIST = "tests.support"
MB = 1024 * 1024
DAY_HINT = "a day name (monday-sunday or mon-sun, any case)"
INTERVAL_KEYS = (
    "seconds, minutes, hours, timezone, jitter, start_date, end_date, timeout_seconds, "
    "max_retries, misfire_grace_time, overlap_policy, max_buffered, expected_within"
)


@dataclass(frozen=True)
class Hostile:
    label: str
    frequency: str
    time_config: Any  # stored as JSON (None is JSON null)
    expect: str  # 'invalid' | 'expired' (schedules.last_*), 'failed' | 'completed' (runs)
    reason: str = ""  # last_error / error_message: exactly, or as `match` says
    job_type: str = "python"
    payload: Any = field(default_factory=lambda: dict(NOOP))
    match: str = "exact"  # 'exact' | 'prefix' | 'contains'

    def reason_matches(self, text: str | None) -> bool:
        text = text or ""
        if self.match == "prefix":
            return text.startswith(self.reason)
        if self.match == "contains":
            return self.reason in text
        return text == self.reason


@dataclass(frozen=True)
class RawJson:
    """JSON given as text, for values Python's own encoder cannot produce (nested too deep)."""

    text: str


def json_text(value: Any) -> str:
    return value.text if isinstance(value, RawJson) else json.dumps(value)


def got(value: object) -> str:
    """How a reason quotes the offending value: plain integers bare, the rest with the type."""
    return repr(value) if type(value) is int else f"{value!r} ({type(value).__name__})"


WRONG = ("x", 1.5, 2.0, True, [1], {"a": 1})  # neither int nor in range, whatever the field
WRONG_TEXT = (5, 1.5, True, [1], {"a": 1})


def _time_config_fields() -> list[Hostile]:
    out: list[Hostile] = []
    # (frequency, valid base, field, low, high): every integer field.
    integers = [
        ("interval", {}, "seconds", 0, 315360000),
        ("interval", {}, "minutes", 0, 5256000),
        ("interval", {}, "hours", 0, 87600),
        ("hourly", {}, "minute", 0, 59),
        ("daily", {}, "hour", 0, 23),
        ("daily", {"hour": 2}, "minute", 0, 59),
        ("weekly", {"day": "monday"}, "hour", 0, 23),
        ("weekly", {"day": "monday", "hour": 2}, "minute", 0, 59),
        ("monthly", {"day": 1}, "hour", 0, 23),
        ("monthly", {"day": 1, "hour": 2}, "minute", 0, 59),
        ("interval", {"seconds": 60}, "jitter", 0, 86400),
        ("interval", {"seconds": 60}, "max_retries", 0, 100),
    ]
    for frequency, base, key, low, high in integers:
        for value in (*WRONG, low - 1, 10**20):
            out.append(
                Hostile(
                    f"{frequency}.{key}={value!r}",
                    frequency,
                    {**base, key: value},
                    "invalid",
                    f"time_config.{key} must be an integer {low}-{high}, got {got(value)}",
                )
            )
    for key, bound in (
        ("timeout_seconds", "> 0 and <= 2678400"),  # 31 days
        ("misfire_grace_time", ">= 0 and <= 31622400"),  # 366 days
    ):
        zero = (0,) if key == "timeout_seconds" else ()  # 0 is a valid grace time
        for value in ("x", True, [1], {"a": 1}, -1, 1e12, *zero):
            out.append(
                Hostile(
                    f"interval.{key}={value!r}",
                    "interval",
                    {"seconds": 60, key: value},
                    "invalid",
                    f"time_config.{key} must be a number {bound}, got {got(value)}",
                )
            )
    dates = [
        ("interval", {"seconds": 60}, "start_date"),
        ("interval", {"seconds": 60}, "end_date"),
        ("once", {}, "run_at"),
    ]
    for frequency, base, key in dates:
        for value in (*WRONG_TEXT, "not a date", "2026-13-45T99:00:00Z"):
            out.append(
                Hostile(
                    f"{frequency}.{key}={value!r}",
                    frequency,
                    {**base, key: value},
                    "invalid",
                    f"time_config.{key} must be an ISO 8601 date-time, got {got(value)}",
                )
            )
    for frequency, base, key in (
        ("cron", {}, "expression"),
        ("interval", {"seconds": 60}, "timezone"),
    ):
        for value in WRONG_TEXT:
            out.append(
                Hostile(
                    f"{frequency}.{key}={value!r}",
                    frequency,
                    {**base, key: value},
                    "invalid",
                    f"time_config.{key} must be a string, got {got(value)}",
                )
            )
    for value in (1, 1.5, True, [1], {"a": 1}, "funday"):
        out.append(
            Hostile(
                f"weekly.day={value!r}",
                "weekly",
                {"day": value, "hour": 2},
                "invalid",
                f"time_config.day must be {DAY_HINT}, got {got(value)}",
            )
        )
    for value in ("monday", [], {"a": 1}, 5):
        out.append(
            Hostile(
                f"weekly.days={value!r}",
                "weekly",
                {"days": value, "hour": 2},
                "invalid",
                f"time_config.days must be a non-empty list of day names, got {got(value)}",
            )
        )
    for value, index in (([1], 0), (["monday", None], 1), (["monday", "mon", ["tue"]], 2)):
        out.append(
            Hostile(
                f"weekly.days={value!r}",
                "weekly",
                {"days": value, "hour": 2},
                "invalid",
                f"time_config.days[{index}] must be {DAY_HINT}, got {got(value[index])}",
            )
        )
    for value in (0, 32, "first", 1.5, True, [1], {"a": 1}):
        out.append(
            Hostile(
                f"monthly.day={value!r}",
                "monthly",
                {"day": value, "hour": 2},
                "invalid",
                f"time_config.day must be an integer 1-31 or 'last', got {got(value)}",
            )
        )
    return out


def _shapes() -> list[Hostile]:
    out = [
        Hostile(
            f"time_config={value!r}",
            "interval",
            value,
            "invalid",
            f"time_config must be a JSON object, got {got(value)}",
        )
        for value in ("x", 5, [1], None)
    ]
    expected = "cron, interval, once, hourly, daily, weekly, monthly"
    for frequency in ("yearly", "", "CRON", "interval; DROP TABLE schedules"):
        out.append(
            Hostile(
                f"frequency={frequency!r}",
                frequency,
                {"seconds": 60},
                "invalid",
                f"unknown frequency {frequency!r} (expected one of: {expected})",
            )
        )
    required = [
        ("daily", {}, "time_config.hour is required for daily"),
        ("daily", {"hour": None}, "time_config.hour is required for daily"),
        ("weekly", {"hour": 2}, "time_config.day or time_config.days is required for weekly"),
        ("cron", {}, "time_config.expression is required for cron"),
        ("once", {}, "time_config.run_at is required for once"),
        ("interval", {}, "time_config.seconds, minutes or hours is required for interval"),
        (
            "interval",
            {"seconds": 0},
            "interval must be 1-315360000 seconds in total (seconds + minutes + hours), got 0",
        ),
        (
            "interval",
            {"seconds": 60, "secnds": 1},
            f"time_config has unknown key 'secnds' for interval (accepted: {INTERVAL_KEYS})",
        ),
        ("cron", {"expression": "0 0 30 2 *"}, "cron expression '0 0 30 2 *' never fires"),
        (
            "cron",
            {"expression": "0 0 31 4,6,9,11 *"},
            "cron expression '0 0 31 4,6,9,11 *' never fires",
        ),
        (
            "cron",
            {"expression": "* * *"},
            "cron expression '* * *': expected 5, 6 or 7 fields, got 3",
        ),
    ]
    out += [Hostile(f"{f} {c!r}", f, c, "invalid", r) for f, c, r in required]
    for zone in (
        "../../etc/passwd",
        "/etc/passwd",
        "Europe/../../../etc/passwd",
        "..",
        "Europe/Berlin/../../../../proc/self/environ",
        "UTC/",
        "~root",
    ):
        out.append(
            Hostile(
                f"timezone={zone!r}",
                "interval",
                {"seconds": 60, "timezone": zone},
                "invalid",
                f"time_config.timezone {zone!r} is not an IANA time zone",
            )
        )
    gone = (
        "nothing left to fire (once in the past, end_date passed or a cron's last year over, "
        "beyond the misfire grace time)"
    )
    out += [
        Hostile("once in 1970", "once", {"run_at": "1970-01-01T00:00:00Z"}, "expired", gone),
        Hostile("once in 1900, naive", "once", {"run_at": "1900-01-01T00:00:00"}, "expired", gone),
        Hostile(
            "interval ended in 2000",
            "interval",
            {"seconds": 1, "end_date": "2000-01-01T00:00:00Z"},
            "expired",
            gone,
        ),
        # 10 MB of JSON in time_config: refused by key, never echoed back.
        Hostile(
            "10 MB time_config",
            "interval",
            {"seconds": 60, "x": "a" * (10 * MB)},
            "invalid",
            f"time_config has unknown key 'x' for interval (accepted: {INTERVAL_KEYS})",
        ),
    ]
    return out


def _jobs(markers: Path) -> list[Hostile]:
    """Jobs that must not run anything outside the allowlists; each would leave a marker."""
    every = {"seconds": 2}
    allowed = f"(allowed: {COMMAND_ALLOWLIST})"

    def command(label: str, argv: Any, reason: str, **kw: Any) -> Hostile:
        return Hostile(
            label,
            "interval",
            every,
            kw.pop("expect", "failed"),
            reason,
            job_type="command",
            payload={"argv": argv},
            **kw,
        )

    def python(label: str, spec: str, reason: str) -> Hostile:
        return Hostile(label, "interval", every, "failed", reason, payload={"callable": spec})

    touch = f"touch {markers}/"
    argv_reason = "command job needs payload.argv: a non-empty list of strings"
    out = [
        command(
            "sh -c",
            ["sh", "-c", touch + "sh"],
            f"command 'sh' is not in COMMAND_ALLOWLIST {allowed}",
        ),
        command(
            "../../bin/sh",
            ["../../bin/sh", "-c", touch + "dotdot"],
            f"command '../../bin/sh' is not in COMMAND_ALLOWLIST {allowed}",
        ),
        command(
            "absolute path outside",
            ["/usr/bin/touch", f"{markers}/absolute"],
            f"command '/usr/bin/touch' is not in COMMAND_ALLOWLIST {allowed}",
        ),
        command(
            "allowlisted name as a path",
            ["/bin/echo", "x"],
            f"command '/bin/echo' is not in COMMAND_ALLOWLIST {allowed}",
        ),
        command("argv as one string", f"sh -c '{touch}string'", argv_reason),
        command("argv empty", [], argv_reason),
        command("argv not strings", [1, 2], argv_reason),
        command("argv missing", None, argv_reason),
        # Allowed, and no shell: the metacharacters are echo's plain arguments.
        command(
            "shell metacharacters",
            ["echo", f"$({touch}subst)", f"; {touch}semi", f"`{touch}tick`", f"| {touch}pipe"],
            "",
            expect="completed",
        ),
        # 10 MB in $PAYLOAD: the kernel refuses the exec; a failure with the reason.
        Hostile(
            "10 MB payload, command",
            "interval",
            every,
            "failed",
            "command 'echo' could not start: [Errno 7] Argument list too long",
            match="prefix",
            job_type="command",
            payload={"argv": ["echo"], "blob": "b" * (10 * MB)},
        ),
        Hostile(
            "10 MB payload, python",
            "interval",
            every,
            "completed",
            payload={**NOOP, "blob": "b" * (10 * MB)},
        ),
        Hostile(
            "unknown job type",
            "interval",
            every,
            "failed",
            "unknown job type 'shell' (accepted: celery, command, http, nats, python)",
            job_type="shell",
            payload={"argv": ["sh", "-c", touch + "jobtype"]},
        ),
    ]
    for spec in ("os:system", "subprocess:run", "builtins:exec", "tests.supportx.evil:run"):
        out.append(
            python(
                spec,
                spec,
                f"python callable {spec!r} is not under PYTHON_HANDLER_ALLOWLIST "
                f"(allowed: {PYTHON_ALLOWLIST})",
            )
        )
    code = f"__import__('os').system('{touch}import')"
    out += [
        python(
            "code as callable",
            code,
            f"python callable {code!r} is neither a registered "
            "handler nor of the form 'pkg.module:function'",
        ),
        python(
            "module as callable",
            "tests.support.handler_funcs:threading",
            "'tests.support.handler_funcs' has no callable named 'threading'",
        ),
    ]
    return out


def catalogue(markers: Path) -> list[Hostile]:
    rows = _time_config_fields() + _shapes() + _jobs(markers)
    labels = [h.label for h in rows]
    assert len(labels) == len(set(labels)), "labels name rows: keep them unique"
    return rows


# Rows at datetime's limits and nested deeper than Python's JSON decoder goes: whatever their
# outcome, they must neither crash a watcher pass nor stop the daemon from starting.
DEEP = 2000


def _nested(depth: int, inside: str = "") -> RawJson:
    return RawJson("[" * depth + inside + "]" * depth)


def edge_rows() -> list[Hostile]:
    deep = _nested(DEEP).text
    return [
        Hostile(
            "once at year 1 +14:00",
            "once",
            {"run_at": "0001-01-01T00:00:00+14:00"},
            "invalid",
            "time_config.run_at",
            match="contains",
        ),
        Hostile(
            "once at year 9999 -14:00",
            "once",
            {"run_at": "9999-12-31T23:59:59-14:00"},
            "invalid",
            "time_config.run_at",
            match="contains",
        ),
        Hostile(
            "cron whose next fire is in year 10000",
            "cron",
            {"expression": "0 0 1 1 *", "start_date": "9999-06-01T00:00:00Z"},
            "expired",
            "nothing left to fire",
            match="prefix",
        ),
        Hostile(
            f"payload nested {DEEP} deep",
            "interval",
            {"seconds": 60},
            "invalid",
            "payload",
            payload=RawJson(f'{{"callable": "{NOOP["callable"]}", "deep": {deep}}}'),
            match="contains",
        ),
        Hostile(
            f"time_config nested {DEEP} deep",
            "interval",
            RawJson(f'{{"seconds": 60, "deep": {deep}}}'),
            "invalid",
            "time_config",
            match="contains",
        ),
    ]
