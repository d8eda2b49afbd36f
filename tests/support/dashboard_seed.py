"""A realistic installation for the dashboard's screenshots and its page checks: three dozen
schedules of every frequency in several time zones, tagged by team, some paused with a note,
three invalid (as an operator's typo in SQL leaves them), five weeks of run history with mixed
outcomes and durations, and an audit trail of who made and changed what.

Rows go in with plain SQL, in one transaction per schedule and one batch for the history; the
daemon started afterwards loads them as after a restart (it marks the invalid ones itself).
Random choices come from a fixed seed, so every run of the seed looks the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

INSTANCES = ("sched-a", "sched-b")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Seed:
    """One schedule to insert and the history it has had."""

    name: str | None
    domain: str
    frequency: str
    time_config: dict[str, Any]
    tags: tuple[str, ...] = ()
    job: tuple[str, dict[str, Any]] = ("http", {"url": "https://example.com/"})
    every: timedelta | None = None  # how often its history has a run (None: no history)
    took: float = 1.0  # typical duration in seconds
    health: str = "good"  # good, flaky, broken (failing the last days), slow (timeouts)
    paused: str | None = None  # the pause note
    actor: str = "api:deploy-bot"
    edits: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def _http(url: str) -> tuple[str, dict[str, Any]]:
    return "http", {"url": url, "method": "GET"}


def _cmd(*argv: str) -> tuple[str, dict[str, Any]]:
    return "command", {"argv": list(argv)}


H, D = timedelta(hours=1), DAY
SEEDS = (
    Seed("Crawl shop.example.com", "shop.example.com", "interval", {"minutes": 30},
         ("crawl", "team:web"), _http("https://shop.example.com/sitemap.xml"), 6 * H, 4.2, "flaky"),
    Seed("Crawl blog.example.org", "blog.example.org", "interval", {"hours": 2},
         ("crawl", "team:web"), _http("https://blog.example.org/feed"), 8 * H, 2.1),
    Seed("Crawl docs.example.net", "docs.example.net", "daily",
         {"hour": 2, "minute": 15, "timezone": "Europe/Berlin"}, ("crawl", "team:web", "eu"),
         _http("https://docs.example.net/"), D, 38.0),
    Seed("Nightly backup: orders-db", "orders-db.internal", "daily", {"hour": 1},
         ("backup", "nightly", "team:ops", "critical"), _cmd("pg_dump", "orders"), D, 412.0,
         actor="cli:maria"),
    Seed("Nightly backup: users-db", "users-db.internal", "daily", {"hour": 1, "minute": 30},
         ("backup", "nightly", "team:ops", "critical"), _cmd("pg_dump", "users"), D, 188.0,
         "broken", actor="cli:maria"),
    Seed("Invoice export", "billing.example.com", "weekly",
         {"day": "monday", "hour": 6, "timezone": "Europe/London"}, ("team:billing", "reports"),
         _http("https://billing.example.com/export"), 7 * D, 61.0),
    Seed("Monthly revenue report", "billing.example.com", "monthly",
         {"day": 1, "hour": 7, "timezone": "America/New_York"}, ("team:billing", "reports"),
         _http("https://billing.example.com/revenue")),
    Seed("Month-end close", "ledger.example.com", "monthly",
         {"day": "last", "hour": 18, "timezone": "America/New_York"}, ("team:billing",),
         _http("https://ledger.example.com/close")),
    Seed("Cache warmer EU", "cdn-eu.example.com", "cron",
         {"expression": "*/15 * * * *", "timezone": "Europe/Paris"}, ("team:web", "eu"),
         _http("https://cdn-eu.example.com/warm"), 4 * H, 0.8),
    Seed("Cache warmer US", "cdn-us.example.com", "cron",
         {"expression": "*/15 * * * *", "timezone": "America/Chicago"}, ("team:web", "us"),
         _http("https://cdn-us.example.com/warm"), 4 * H, 0.9, "flaky"),
    Seed("Cache warmer APAC", "cdn-ap.example.com", "cron",
         {"expression": "*/15 * * * *", "timezone": "Asia/Tokyo"}, ("team:web", "apac"),
         _http("https://cdn-ap.example.com/warm"), 4 * H, 1.3),
    Seed("Search index refresh", "search.example.com", "hourly", {"minute": 5},
         ("team:data",), _http("https://search.example.com/reindex"), 3 * H, 95.0, "slow"),
    Seed("Sitemap ping", "shop.example.com", "hourly", {"minute": 40}, ("team:web",),
         _http("https://www.google.com/ping?sitemap=shop"), 12 * H, 0.4),
    Seed("Stale session cleanup", "app.example.com", "interval", {"minutes": 10},
         ("team:ops",), _cmd("echo", "vacuum sessions"), 12 * H, 3.0),
    Seed("TLS certificate check", "status.example.io", "daily",
         {"hour": 9, "timezone": "Asia/Singapore"}, ("team:ops", "apac"),
         _http("https://status.example.io/tls"), D, 1.7),
    Seed(None, "api.example.com", "interval", {"minutes": 5}, ("team:ops", "critical"),
         _http("https://api.example.com/health"), 6 * H, 0.2),
    Seed("Weekly digest email", "mail.example.com", "weekly",
         {"days": ["mon", "thu"], "hour": 8, "timezone": "Australia/Sydney"},
         ("team:growth", "apac"), _http("https://mail.example.com/digest"), 3 * D, 140.0),
    Seed("Partner feed import", "feeds.example.com", "cron",
         {"expression": "0 */4 * * *", "timezone": "America/Sao_Paulo"}, ("team:data",),
         _http("https://feeds.example.com/partner.csv"), 4 * H, 22.0, "flaky"),
    Seed("Log rotation", "app.example.com", "daily", {"hour": 0, "minute": 5},
         ("team:ops", "nightly"), _cmd("echo", "logrotate"), D, 6.0),
    Seed("Data warehouse load", "dwh.example.com", "cron",
         {"expression": "30 3 * * 1-5", "timezone": "Europe/Berlin"},
         ("team:data", "nightly", "eu"), _cmd("echo", "dbt run"), D, 780.0, "slow"),
    Seed("ML model retrain", "ml.example.com", "weekly", {"day": "sunday", "hour": 22},
         ("team:data",), _cmd("echo", "train"), 7 * D, 2900.0),
    Seed("GDPR export requests", "privacy.example.com", "daily",
         {"hour": 10, "timezone": "Europe/Dublin"}, ("team:legal", "eu"),
         _http("https://privacy.example.com/exports"), D, 12.0),
    Seed("Quarterly audit snapshot", "ledger.example.com", "cron",
         {"expression": "0 6 1 1,4,7,10 *"}, ("team:billing", "reports"),
         _http("https://ledger.example.com/snapshot")),
    Seed("Black Friday price sync", "shop.example.com", "once",
         {"run_at": "2030-11-29T05:00:00", "timezone": "America/New_York"}, ("team:web",),
         _http("https://shop.example.com/prices/sync")),
    Seed("Inventory sync: warehouse 2", "erp.example.com", "interval", {"minutes": 20},
         ("team:ops",), _http("https://erp.example.com/inventory/2"), 6 * H, 9.5, "broken"),
    Seed("Currency rates", "rates.example.com", "hourly", {"minute": 0}, ("team:billing",),
         _http("https://rates.example.com/eur"), 8 * H, 0.6),
    Seed("Newsletter send", "mail.example.com", "weekly",
         {"day": "tuesday", "hour": 14, "timezone": "America/Los_Angeles"}, ("team:growth",),
         _http("https://mail.example.com/newsletter"), 7 * D, 610.0),
    Seed("Thumbnail regeneration", "media.example.com", "daily",
         {"hour": 4, "minute": 45, "timezone": "Asia/Kolkata"}, ("team:web", "apac"),
         _cmd("echo", "thumbs"), D, 240.0, edits=({"time_config": {
             "hour": 5, "minute": 15, "timezone": "Asia/Kolkata"}, "by": "cli:arjun"},)),
    Seed("Legacy FTP pull", "ftp.partner.example", "daily", {"hour": 5}, ("team:data",),
         _cmd("echo", "ftp pull"), D, 31.0,
         paused="Vendor retired the FTP server; replaced by Partner feed import"),
    Seed("Crawl old.example.com", "old.example.com", "interval", {"hours": 6}, ("crawl",),
         _http("https://old.example.com/"), 6 * H, 3.0, "broken",
         paused="Domain expired, waiting on renewal (OPS-2211)"),
    Seed("Disk usage report", "app.example.com", "daily", {"hour": 7}, ("team:ops", "reports"),
         _cmd("echo", "df"), D, 2.0, paused="Too noisy during the migration week"),
    Seed("Backup verification", "orders-db.internal", "weekly",
         {"day": "saturday", "hour": 3}, ("backup", "team:ops"), _cmd("echo", "restore-test"),
         7 * D, 1500.0, actor="cli:maria"),
    Seed("Reminder emails", "mail.example.com", "daily", {"hour": 27}, ("team:growth",),
         _http("https://mail.example.com/remind"), actor="sql:postgres"),
    Seed("Broken cron example", "legacy.example.com", "cron",
         {"expression": "61 * * * *", "timezone": "Mars/Olympus"}, (),
         _http("https://legacy.example.com/"), actor="sql:postgres"),
    Seed("Ticket escalation", "support.example.com", "interval", {"minutes": 0},
         ("team:support",), _http("https://support.example.com/escalate"),
         actor="sql:postgres"),
    Seed("Media bucket backup", "media.example.com", "daily", {"hour": 2},
         ("backup", "team:ops"), _cmd("sleep", "300"), D, 95.0),
)  # fmt: skip
RUNNING = "Media bucket backup"  # the fixture starts it, so "running now" has a row

FAILURES = {
    "http": ("HTTP 503 Service Unavailable from {url}", "connection refused by {domain}:443"),
    "command": ("command {program!r} exited with status 1", "command {program!r} was killed"),
}


def _outcome(seed: Seed, rng: random.Random, age: timedelta) -> str:
    roll = rng.random()
    if seed.health == "broken" and age < 3 * DAY:
        return "failed" if roll < 0.85 else "timed_out"
    if seed.health == "flaky":
        return "completed" if roll < 0.78 else ("failed" if roll < 0.95 else "timed_out")
    if seed.health == "slow":
        return "completed" if roll < 0.88 else ("timed_out" if roll < 0.97 else "skipped")
    for status, chance in (("failed", 0.03), ("skipped", 0.02), ("cancelled", 0.005)):
        if roll < chance:
            return status
        roll -= chance
    return "abandoned" if roll < 0.004 else "completed"


def _run(
    seed: Seed, sid: Any, config_id: Any, at: datetime, rng: random.Random, now: datetime
) -> tuple[Any, ...]:
    status = _outcome(seed, rng, now - at)
    kind, payload = seed.job
    took = seed.took * rng.lognormvariate(0, 0.35)
    error = meta = None
    if status == "timed_out":
        took = max(seed.took * 3, 60.0)
        error = f"timed out after {took:.0f} s; its process group was killed"
    elif status == "failed":
        template = rng.choice(FAILURES[kind])
        program = (payload.get("argv") or ["job"])[0]
        error = template.format(url=payload.get("url"), domain=seed.domain, program=program)
        took *= 0.3
        if kind == "command":
            meta = {
                "stdout_tail": f"{program}: starting\n",
                "stderr_tail": (
                    f'{program}: error: connection to server at "{seed.domain}" failed: '
                    "FATAL: remaining connection slots are reserved\n"
                ),
            }
        else:
            meta = {"http_status": 503, "body_tail": "<h1>503 Service Unavailable</h1>"}
    elif status == "skipped":
        took, error = 0.0, "previous run still going (max_instances=1)"
    elif status == "cancelled":
        took, error = took * 0.5, "cancelled from the dashboard by api:maria"
    elif status == "abandoned":
        error = "instance sched-b stopped heartbeating during the run (reaped by sched-a)"
    elif kind == "command":
        meta = {"stdout_tail": "done\n", "stdout_bytes": 5, "exit_code": 0}
    else:
        meta = {"http_status": 200, "response": {"ok": True}}
    started = at + timedelta(seconds=rng.uniform(0, 2))
    return (
        sid, str(sid), seed.domain, config_id, status, started,
        started + timedelta(seconds=took), None if status == "skipped" else took,
        error, Jsonb(meta) if meta else None, at, rng.choice(INSTANCES),
        "manual" if rng.random() < 0.03 else "schedule",
    )  # fmt: skip


def seed_dashboard(database_url: str, now: datetime) -> dict[str, str]:
    """Insert SEEDS and their history; schedule name (or domain) -> schedule_id."""
    rng = random.Random(15)
    ids: dict[str, str] = {}
    history: list[tuple[Any, ...]] = []
    changes: list[tuple[datetime, Seed, dict[str, Any]]] = []
    with psycopg.connect(database_url) as conn:
        for index, seed in enumerate(SEEDS):
            created = now - timedelta(days=60) + index * timedelta(hours=7)
            with conn.transaction():
                conn.execute("SELECT set_config('scheduler.actor', %s, true)", (seed.actor,))
                sid, config_id = conn.execute(
                    """INSERT INTO schedules (domain_config_id, domain, name, frequency,
                           time_config, job_type, payload, tags, created_by, created_at)
                       VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s, %s, %s, %s)
                       RETURNING schedule_id, domain_config_id""",
                    (seed.domain, seed.name, seed.frequency, Jsonb(seed.time_config),
                     seed.job[0], Jsonb(seed.job[1]), list(seed.tags), seed.actor, created),
                ).fetchone()  # type: ignore[misc]  # fmt: skip
                conn.execute(
                    "UPDATE schedule_audit SET changed_at = %s WHERE schedule_id = %s",
                    (created, sid),
                )
            ids[seed.name or seed.domain] = str(sid)
            if seed.every is not None:
                at = now - timedelta(days=35) + timedelta(minutes=rng.randrange(0, 180))
                while at < now - timedelta(minutes=20):
                    history.append(_run(seed, sid, config_id, at, rng, now))
                    at += seed.every
            for edit in seed.edits:
                changes.append((now - timedelta(days=rng.uniform(2, 20)), seed, edit))
            if seed.paused:
                pause = {"paused": seed.paused, "by": rng.choice(("cli:maria", "api:ops-bot"))}
                changes.append((now - timedelta(days=rng.uniform(1, 10)), seed, pause))
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id,
                       status, started_at, completed_at, duration_seconds, error_message,
                       metadata, scheduled_for, instance_id, trigger)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""",
                history,
            )
        for when, seed, change in sorted(changes, key=lambda c: c[0]):
            _change(conn, ids[seed.name or seed.domain], when, change)
        conn.execute(
            """UPDATE schedules s SET last_run = r.started_at, last_status = r.status,
                   last_error = r.error_message
               FROM (SELECT DISTINCT ON (schedule_id) schedule_id, started_at, status,
                            error_message
                     FROM job_executions ORDER BY schedule_id, started_at DESC) r
               WHERE s.schedule_id = r.schedule_id"""
        )
    return ids


def _change(
    conn: psycopg.Connection[Any], sid: str, when: datetime, change: dict[str, Any]
) -> None:
    """One audited change at `when`: a pause with its note, or an edit of time_config."""
    with conn.transaction():
        conn.execute("SELECT set_config('scheduler.actor', %s, true)", (change["by"],))
        if "paused" in change:
            conn.execute(
                """UPDATE schedules SET enabled = false, paused_note = %s, paused_by = %s,
                       paused_at = %s WHERE schedule_id = %s""",
                (change["paused"], change["by"].split(":")[1], when, sid),
            )
        else:
            conn.execute(
                "UPDATE schedules SET time_config = %s WHERE schedule_id = %s",
                (Jsonb(change["time_config"]), sid),
            )
        conn.execute(
            """UPDATE schedule_audit SET changed_at = %s
               WHERE audit_id = (SELECT max(audit_id) FROM schedule_audit
                                 WHERE schedule_id = %s)""",
            (when, sid),
        )
