"""Schedules that look like a real install's, for benchmarks that list, sort and filter them.

`insert_schedules` (common.py) writes rows that differ only where the scheduler's work differs
(frequency, fire time). A list page also sorts and filters by domain, name, tags and next_run, so
`insert_varied_schedules` varies those too: domains of a dozen kinds under seven TLDs; a name on
four rows in five; 0-4 tags (environment, team, kind, a rare `audit`); eight time zones; jitter,
retries and time-outs on some; http or python jobs from the sync or made by hand; a few paused
(next_run null, with a note); last_run and last_status on most. next_run is what the daemon
itself would write (the project's `next_fire_time`), so a daemon started on these rows writes
nothing and catches nothing up, and `sort=next_run` orders real fire times, with their ties.

Like `insert_schedules`, nothing fires within ~20 minutes of the insert: each row's hours are
chosen clear of now in its own time zone (QuietTimes of the local wall clock).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from bench.common import FREQUENCIES, NOOP_PAYLOAD, QuietTimes, time_config_for
from services.model.fire_times import next_fire_time
from services.model.spec import parse_schedule

DEFAULT_ZONE = "UTC"  # the bench daemons' SCHEDULER_TIMEZONE
ZONES = (
    DEFAULT_ZONE,
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
)
KINDS = ("shop", "blog", "news", "docs", "status", "api", "app", "mail", "cdn", "portal", "wiki")
TLDS = ("com", "de", "io", "net", "org", "co.uk", "fr")
TEAMS = 20  # team-00 .. team-19: one on each tagged row (96 %), so about 5 % each
RARE_TAG = "audit"  # on 1 row in 200
ENVIRONMENTS = ("prod", "prod", "prod", "staging", "dev")
VERBS = ("Crawl", "Scan", "Check", "Audit", "Index", "Report on")
# The columns COPY writes, in order.
COLUMNS = (
    "domain_config_id, domain, name, frequency, time_config, enabled, job_type, payload, source,"
    " tags, next_run, last_run, last_status, paused_note, paused_by, paused_at, created_at"
)


def domain_of(i: int) -> str:
    return f"{KINDS[i % len(KINDS)]}{i}.example.{TLDS[i // len(KINDS) % len(TLDS)]}"


def _tags(team: str, frequency: str, rng: random.Random) -> list[str]:
    if rng.random() < 0.04:
        return []
    tags = [team]
    if rng.random() < 0.9:
        tags.append(rng.choice(ENVIRONMENTS))
    if frequency in ("daily", "cron") and rng.random() < 0.5:
        tags.append("nightly")
    if rng.random() < 0.005:
        tags.append(RARE_TAG)
    return tags


def _time_config(frequency: str, i: int, zone: str, quiet: dict[str, QuietTimes]) -> Any:
    """time_config_for's shapes, with each time of day clear of now in the row's own zone."""
    if frequency in ("interval", "hourly"):  # no time of day: the UTC rules apply as they are
        return time_config_for(frequency, i, quiet[DEFAULT_ZONE])
    config = time_config_for(frequency, i, quiet[zone])
    config.pop("timezone", None)
    if zone != DEFAULT_ZONE:
        config["timezone"] = zone
    if i % 7 == 0:
        config["jitter"] = 30 + i % 90
    if i % 11 == 0:
        config["timeout_seconds"] = 300
        config["max_retries"] = i % 4
    return config


def _job(domain: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
    if rng.random() < 0.3:
        return "python", dict(NOOP_PAYLOAD)
    return "http", {"url": f"https://{domain}/{rng.choice(('health', 'sitemap.xml', ''))}"}


def varied_rows(n: int, now: datetime) -> list[tuple[Any, ...]]:
    """`n` rows for COPY (COLUMNS), deterministic for a given n apart from ids and `now`."""
    rng = random.Random(n)
    quiet = {zone: QuietTimes(now.astimezone(ZoneInfo(zone))) for zone in ZONES}
    rows = []
    for i in range(n):
        frequency = FREQUENCIES[i % len(FREQUENCIES)]
        zone = ZONES[0] if rng.random() < 0.4 else rng.choice(ZONES[1:])
        config = _time_config(frequency, i, zone, quiet)
        domain = domain_of(i)
        team = f"team-{rng.randrange(TEAMS):02d}"
        name = None if rng.random() < 0.2 else f"{rng.choice(VERBS)} {domain} for {team}"
        created = now - timedelta(hours=rng.randint(1, 20), seconds=rng.randint(0, 3599))
        schedule_id = uuid.uuid4()
        enabled = rng.random() >= 0.025  # 2.5 % paused
        next_run = None
        if enabled:
            spec = parse_schedule(
                frequency,
                config,
                default_timezone=DEFAULT_ZONE,
                schedule_id=str(schedule_id),
                created_at=created,
            )
            next_run = next_fire_time(spec, None, now)
        ran = rng.random() < 0.7
        last_run = now - timedelta(minutes=rng.randint(30, 600)) if ran else None
        last_status = None
        if ran:
            last_status = rng.choices(("completed", "failed", "timed_out"), (90, 7, 3))[0]
        job_type, payload = _job(domain, rng)
        paused = (
            ("maintenance window", "api:ops", now - timedelta(hours=2))
            if not enabled and rng.random() < 0.5
            else (None, None, None)
        )
        rows.append(
            (
                uuid.uuid4(),
                domain,
                name,
                frequency,
                json.dumps(config),
                enabled,
                job_type,
                json.dumps(payload),
                "api" if rng.random() < 0.25 else "manual",
                _tags(team, frequency, rng),
                next_run,
                last_run,
                last_status,
                *paused,
                created,
            )
        )
    return rows


def insert_varied_schedules(database_url: str, n: int) -> float:
    """COPY `n` varied schedules, then VACUUM ANALYZE; returns the seconds it took."""
    started = time.perf_counter()
    rows = varied_rows(n, datetime.now(UTC))
    with psycopg.connect(database_url, autocommit=False) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY schedules ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE schedules")
    return time.perf_counter() - started
