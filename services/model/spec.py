"""Parsing and validation of a schedule's (frequency, time_config) into a frozen ScheduleSpec.

Shapes (contract, DESIGN.md "frequency and time_config"); keys outside them are errors:

    cron      {"expression": "0 9 * * 1-5"}  5 fields, 6 with seconds first (Quartz, Spring), 7
              with a year last, or a macro (@daily); H, LW, L-n, nL and more: `model.cron_syntax`
    interval  {"seconds": N, "minutes": N, "hours": N}  at least one; summed; the sum must be > 0
    once      {"run_at": ISO 8601}  a naive time is a wall time in the schedule's zone
    hourly    {"minute": M}  minute defaults to 0
    daily     {"hour": H, "minute": M}  hour is required, minute defaults to 0
    weekly    {"day": "monday"} or {"days": ["mon", "thu"]}, plus hour and minute as for daily
    monthly   {"day": 1..31 | "last"}, plus hour and minute as for daily; short months are skipped

Every shape also takes timezone, jitter, start_date, end_date, timeout_seconds, max_retries,
misfire_grace_time, overlap_policy (`model.overlap`), max_buffered and expected_within (seconds
after an occurrence by which a run must have completed, else a `missed` notification); a null
value counts as absent (so a null required key is missing). Integers
are JSON integers (true is not 1, 2.0 is not 2). Naive dates are wall times in the schedule's zone
(resolved by the wall-clock rules of `model.wallclock`); start_date and run_at are rounded up and
end_date down to whole seconds, so no fire time oversteps them. The interval anchor is start_date,
else created_at truncated to whole seconds; without either (validation only) it is None, which
`model.fire_times` reads as the Unix epoch. Limits: jitter <= 86400 s, max_retries <= 100, an
interval <= 10 years; cron searches give up after 50 years without a match (`model.cron_rule`).

Rows that share a configuration text share one parse (`_read_cached`); each row then gets its own
id and anchor, and a cron with H its own draw (`_with_identity`), so two rows with the text
`H 2 * * *` fire at their own minutes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.errors import InvalidScheduleError
from services.model.cron_rule import HashedCron
from services.model.overlap import DEFAULT_MAX_BUFFERED, MAX_BUFFERED, OverlapPolicy, read_policy
from services.model.shapes import SHAPES, Reader, got, round_up
from services.model.wallclock import (
    WallRule,
)

FREQUENCIES = ("cron", "interval", "once", "hourly", "daily", "weekly", "monthly")
COMMON_KEYS = (
    "timezone",
    "jitter",
    "start_date",
    "end_date",
    "timeout_seconds",
    "max_retries",
    "misfire_grace_time",
    "overlap_policy",
    "max_buffered",
    "expected_within",
)
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "cron": ("expression",),
    "interval": ("seconds", "minutes", "hours"),
    "once": ("run_at",),
    "hourly": ("minute",),
    "daily": ("hour", "minute"),
    "weekly": ("day", "days", "hour", "minute"),
    "monthly": ("day", "hour", "minute"),
}
MAX_JITTER = 86_400
MAX_RETRIES = 100
# Only plain zone names reach the file system, never paths such as '../../etc/passwd'.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")


# Bounds that keep every timer finite and meaningful: a run of over 31 days, or an occurrence
# still worth running a year late, is a typo (and a far deadline once stopped the timer thread).
MAX_TIMEOUT = 31 * 86400.0
MAX_GRACE = 366 * 86400.0


@dataclass(frozen=True, slots=True)  # one per loaded schedule: no per-instance __dict__
class ScheduleSpec:
    frequency: str
    timezone: ZoneInfo  # time_config.timezone, else the default zone
    jitter: int = 0  # seconds; 0 = none
    start_date: datetime | None = None  # aware UTC, whole seconds
    end_date: datetime | None = None
    timeout_seconds: float | None = None
    max_retries: int | None = None
    misfire_grace_time: float | None = None  # None = the daemon's default
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP  # an earlier run still going (model.overlap)
    max_buffered: int = DEFAULT_MAX_BUFFERED  # buffer_all: at most this many waiting
    expected_within: float | None = None  # seconds after an occurrence its run must be done by
    schedule_id: str = ""  # seeds the deterministic jitter
    anchor: datetime | None = None  # interval phase: start_date, else created_at
    rule: WallRule | None = None  # cron (a HashedCron only in a shared template), hourly, ...
    period: timedelta | None = None  # interval
    run_at: datetime | None = None  # once: aware UTC, whole seconds


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo | None:
    """The zone called `name`, or None when it is not an IANA time zone."""
    if not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        return None


def _frequency_name(frequency: object, problems: list[str]) -> str | None:
    if not isinstance(frequency, str):
        problems.append(f"frequency must be a string, got {got(frequency)}")
        return None
    if frequency not in FREQUENCIES:
        problems.append(
            f"unknown frequency {frequency!r} (expected one of: {', '.join(FREQUENCIES)})"
        )
        return None
    return frequency


def _zone_of(config: dict[str, object], default_timezone: str, problems: list[str]) -> ZoneInfo:
    given = config.get("timezone")
    name = default_timezone if given is None else given
    label = "default timezone" if given is None else "time_config.timezone"
    if not isinstance(name, str):
        problems.append(f"{label} must be a string, got {got(name)}")
        return ZoneInfo("UTC")
    zone = load_zone(name)
    if zone is None:
        problems.append(f"{label} {name!r} is not an IANA time zone")
        return ZoneInfo("UTC")
    return zone


def _read(
    frequency: object, time_config: object, default_timezone: str
) -> tuple[ScheduleSpec | None, list[str]]:
    """The spec shared by every row with this configuration (no id, anchor = start_date), or
    every problem."""
    problems: list[str] = []
    name = _frequency_name(frequency, problems)
    if not isinstance(time_config, dict):
        problems.append(f"time_config must be a JSON object, got {got(time_config)}")
        return None, problems
    if name is not None:
        # Unknown keys are usually typos, so they are errors rather than ignored.
        known = SHAPE_KEYS[name] + COMMON_KEYS
        problems.extend(
            f"time_config has unknown key {key!r} for {name} (accepted: {', '.join(known)})"
            for key in time_config
            if key not in known
        )
    zone = _zone_of(time_config, default_timezone, problems)
    r = Reader(time_config, str(frequency), zone)
    jitter = r.integer("jitter", 0, MAX_JITTER, default=0)
    max_retries = r.integer("max_retries", 0, MAX_RETRIES)
    timeout = r.number("timeout_seconds", 0, inclusive=False, high=MAX_TIMEOUT)
    grace = r.number("misfire_grace_time", 0, inclusive=True, high=MAX_GRACE)
    expected_within = r.number("expected_within", 0, inclusive=False, high=MAX_GRACE)
    policy = read_policy(time_config.get("overlap_policy"), r.problems)
    max_buffered = r.integer("max_buffered", 1, MAX_BUFFERED, default=DEFAULT_MAX_BUFFERED)
    start, end = r.date("start_date"), r.date("end_date")
    if start is not None and end is not None and end <= start:
        r.problems.append(
            f"time_config.end_date {time_config['end_date']!r} must be after "
            f"time_config.start_date {time_config['start_date']!r}"
        )
    shape = SHAPES[name](r) if name is not None else None
    if shape is not None and shape.period is not None and jitter:
        # Jitter beyond the period would shuffle occurrences (and cost a search per period).
        period_s = int(shape.period.total_seconds())
        if jitter >= period_s:
            r.problems.append(
                f"time_config.jitter must be less than the interval ({period_s} s), got {jitter}"
            )
    problems.extend(r.problems)
    if name is None or shape is None or problems:
        return None, problems
    if start is not None:
        start = round_up(start)
    if end is not None:
        end = end.replace(microsecond=0)
    spec = ScheduleSpec(
        frequency=name,
        timezone=zone,
        jitter=jitter or 0,
        start_date=start,
        end_date=end,
        timeout_seconds=timeout,
        max_retries=max_retries,
        misfire_grace_time=grace,
        overlap_policy=policy,
        max_buffered=max_buffered or DEFAULT_MAX_BUFFERED,
        expected_within=expected_within,
        anchor=start,
        rule=shape.rule,
        period=shape.period,
        run_at=shape.run_at,
    )
    return spec, []


def parse_schedule(
    frequency: object,
    time_config: object,
    *,
    default_timezone: str = "UTC",
    schedule_id: object = "",
    created_at: datetime | None = None,
    config_json: str | None = None,
) -> ScheduleSpec:
    """The ScheduleSpec of a row; InvalidScheduleError lists every problem, joined by '; '.
    `config_json`: time_config's stored text, when known (saves encoding it for the cache)."""
    key = _cache_key(frequency, time_config, config_json)
    if key is None:
        template, problems = _read(frequency, time_config, default_timezone)
    else:
        # Many rows share a configuration (every "daily at 02:00"): parse each one once and
        # give each row its own id and phase anchor.
        template, cached_problems = _read_cached(key[0], key[1], default_timezone)
        problems = list(cached_problems)
    if template is None:
        raise InvalidScheduleError("; ".join(problems))
    return _with_identity(
        template,
        "" if schedule_id is None else str(schedule_id),
        template.start_date or _anchor_of(created_at),
    )


def _with_identity(
    template: ScheduleSpec, schedule_id: str, anchor: datetime | None
) -> ScheduleSpec:
    """A copy of a shared spec with one row's id and anchor, and a cron's H drawn for that id
    (dataclasses.replace re-runs __init__ and costs several times more, which shows at 100,000
    rows)."""
    spec = object.__new__(ScheduleSpec)
    for name, value in zip(_SPEC_FIELDS, _spec_values(template), strict=True):
        object.__setattr__(spec, name, value)
    object.__setattr__(spec, "schedule_id", schedule_id)
    object.__setattr__(spec, "anchor", anchor)
    if isinstance(template.rule, HashedCron):
        object.__setattr__(spec, "rule", template.rule.bind(schedule_id))
    return spec


_SPEC_FIELDS = tuple(f.name for f in fields(ScheduleSpec))
_spec_values = attrgetter(*_SPEC_FIELDS)


def _cache_key(
    frequency: object, time_config: object, config_json: str | None = None
) -> tuple[str, str] | None:
    if not isinstance(frequency, str):
        return None
    if config_json is not None and (time_config is None or isinstance(time_config, dict)):
        return frequency, config_json  # the stored text (time_config itself may be undecoded)
    if not isinstance(time_config, dict):
        return None
    try:
        return frequency, json.dumps(time_config)  # key order kept: messages follow it
    except (TypeError, ValueError):
        return None


# Shared configurations ("daily at 02:00" on thousands of rows) hit; a configuration of its own
# (most rows of a varied install) is parsed once either way, so a larger cache only holds specs
# nobody will ask for again (at 100,000 varied rows, 65,536 entries held ~300 B per schedule).
@lru_cache(maxsize=4096)
def _read_cached(
    frequency: str, config_json: str, default_timezone: str
) -> tuple[ScheduleSpec | None, tuple[str, ...]]:
    try:
        config = json.loads(config_json)
    except RecursionError:  # what database.connection.load_json reads as UnreadableJson
        return None, (_UNREADABLE,)
    spec, problems = _read(frequency, config, default_timezone)
    return spec, tuple(problems)


# The same words as for a value decoded by database.connection.load_json, whichever path the
# row came by, so its last_error does not change with the way it was read.
_UNREADABLE = (
    "time_config must be a JSON object, got <unreadable JSON: nested too deeply> (UnreadableJson)"
)


def _anchor_of(created_at: datetime | None) -> datetime | None:
    """An interval's phase without start_date: its row's creation, to the whole second."""
    if created_at is None:
        return None
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)  # timestamptz columns are UTC
    return created_at.astimezone(UTC).replace(microsecond=0)


def validate_schedule(
    frequency: object, time_config: object, *, default_timezone: str = "UTC"
) -> list[str]:
    """Every problem of (frequency, time_config); [] when it is valid."""
    return _read(frequency, time_config, default_timezone)[1]
