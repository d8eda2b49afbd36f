"""What every benchmark shares: a throw-away database and Redis prefix, bulk schedules, results.

Each benchmark gets its own database `es_bench_<hex>` (created, migrated with the project's
Migrator, dropped afterwards) and its own Redis key prefix `bench:<uuid>:` (scanned and deleted
afterwards), so that nothing here touches another database or another key.

BENCH_QUICK=1 scales every N down for a smoke run; BENCH_ADMIN_URL names the server's
maintenance database (default postgresql://postgres@127.0.0.1:5432/postgres) and REDIS_URL the
Redis server (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from database.migrations import Migrator
from services.config import Settings, load_settings
from services.lock.client import create_redis_client

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "results.json"
QUICK = os.environ.get("BENCH_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NOOP_HANDLER = "noop"
NOOP_PAYLOAD = {"callable": NOOP_HANDLER}
Record = dict[str, Any]


def scale(full: int, quick: int) -> int:
    """N for this run: `quick` under BENCH_QUICK=1, else `full`."""
    return quick if QUICK else full


def load_average() -> float:
    """1-minute load average of the machine, to read next to a figure."""
    return round(os.getloadavg()[0], 2)


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


# -- results ----------------------------------------------------------------------------------


def figure(
    name: str,
    value: float,
    unit: str,
    n: int,
    *,
    target: str | None = None,
    ok: bool | None = None,
    note: str | None = None,
) -> Record:
    """One measured figure; `target` says what it is held to and `ok` whether it met it."""
    record: Record = {"figure": name, "value": value, "unit": unit, "n": n}
    if target is not None:
        record["target"] = target
        record["ok"] = ok
    if note:
        record["note"] = note
    record["load"] = load_average()
    return record


def ms(seconds: float, digits: int = 2) -> float:
    """Seconds as milliseconds, rounded for the table."""
    return round(seconds * 1000, digits)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank: a value that was actually measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(records: Sequence[Record]) -> None:
    headers = ("figure", "value", "unit", "n", "target", "ok", "load")
    rows = [
        (
            str(r["figure"]),
            _show(r["value"]),
            str(r["unit"]),
            str(r["n"]),
            str(r.get("target", "")),
            {True: "yes", False: "NO", None: ""}[r.get("ok")],
            f"{r['load']:.2f}" if "load" in r else "",
        )
        for r in records
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    right = {1, 3, 6}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in rows:
        print(line(row))
    for r in records:
        if r.get("note"):
            print(f"  * {r['figure']}: {r['note']}")


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def write_results(
    records: Sequence[Record], *, duration_s: float, module: str | None = None
) -> Path:
    """bench/results.json: one object per figure, each with date, git revision and load. With
    `module` (a benchmark run on its own), the records are that module's: they replace its
    earlier ones, and the other modules' figures already in the file stay as they were."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    revision = git_revision()
    kept: list[Record] = []
    if module is not None:
        records = [{"module": module, **r} for r in records]
        if RESULTS_PATH.exists():
            earlier = json.loads(RESULTS_PATH.read_text(encoding="utf-8"))
            kept = [r for r in earlier if r.get("module") != module]
    out = kept + [
        {
            **r,
            "date": date,
            "git_revision": revision,
            "quick": QUICK,
            "suite_duration_s": round(duration_s, 1),
        }
        for r in records
    ]
    RESULTS_PATH.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return RESULTS_PATH


# -- database and Redis -----------------------------------------------------------------------


@contextmanager
def bench_database(template: str | None = None) -> Iterator[str]:
    """A fresh, migrated database `es_bench_<hex>` (or a copy of the es_bench_* `template`);
    dropped on exit. Yields its URL."""
    name = f"es_bench_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        assert template.startswith("es_bench_"), template
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(create)
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    try:
        if template is None:
            Migrator(url).apply()
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def clone_database(template_url: str) -> Iterator[str]:
    """A copy of a bench database (CREATE DATABASE ... TEMPLATE), dropped on exit. Nothing may
    be connected to the template meanwhile."""
    template = template_url.rsplit("/", 1)[1]
    with bench_database(template=template) as url:
        yield url


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A unique key prefix `bench:<uuid>:`; every key under it is deleted on exit."""
    prefix = f"bench:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        delete_redis_keys(prefix)


def delete_redis_keys(prefix: str) -> int:
    client = create_redis_client(REDIS_URL, max_connections=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def bench_environ(database_url: str, prefix: str, **overrides: object) -> dict[str, str]:
    """The environment of a benchmark daemon (in-process Settings or a subprocess)."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "INSTANCE_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "HTTP_PORT": "0",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "DEFAULT_JOB_TYPE": "python",
        "SCHEDULE_CHECK_INTERVAL": "3600",  # benchmarks call the passes themselves
        "HISTORY_RETENTION_DAYS": "0",
        "STARTUP_TIMEOUT": "10",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def bench_settings(database_url: str, prefix: str, **overrides: object) -> Settings:
    return load_settings(bench_environ(database_url, prefix, **overrides), env_file="")


@contextmanager
def scheduler_logs() -> Iterator[Path]:
    """Send the in-process daemon's logs (INFO, JSON, as in production) to a temporary file, so
    that rendering costs what it costs without flooding the terminal."""
    from services.log import configure_logging

    handle, name = tempfile.mkstemp(prefix="es_bench_", suffix=".log")
    path = Path(name)
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        configure_logging(level="INFO", fmt="json", instance_id="bench", stream=stream)
        try:
            yield path
        finally:
            stream.flush()
            quiet_logging()  # threads that outlive the daemon must not write to a closed file
    problems = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if '"level": "error"' in line or '"level": "critical"' in line
    ]
    for line in problems[:5]:
        print(f"  ! daemon error: {line[:300]}")
    path.unlink()


def quiet_logging() -> None:
    """Outside a daemon under test: warnings and errors only, on stderr."""
    from services.log import configure_logging

    configure_logging(level="WARNING", fmt="console", instance_id="bench")


# -- schedules --------------------------------------------------------------------------------

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FREQUENCIES = ("interval", "daily", "weekly", "monthly", "hourly", "cron")


@dataclass
class QuietTimes:
    """Times that stay clear of the next ~20 minutes, so that nothing fires during a benchmark."""

    now: datetime
    hours: list[int] = field(default_factory=list)
    weekdays: list[str] = field(default_factory=list)
    month_days: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Hours at least 3 h away in UTC (and so at least 1 h away in Europe/Berlin).
        self.hours = [(self.now.hour + k) % 24 for k in range(3, 21)]
        soon = {(self.now + timedelta(days=d)).weekday() for d in (0, 1)}
        self.weekdays = [day for n, day in enumerate(_DAYS) if n not in soon]
        close = {(self.now + timedelta(days=d)).day for d in (0, 1)}
        self.month_days = [d for d in range(1, 29) if d not in close]

    def hourly_minute(self, i: int) -> int:
        return (self.now.minute + 25 + i % 30) % 60  # 25-54 minutes from now


def time_config_for(frequency: str, i: int, quiet: QuietTimes) -> dict[str, object]:
    """A valid time_config of `frequency` whose next fire time is well away from now."""
    minute = i % 60
    hour = quiet.hours[i % len(quiet.hours)]
    zone = {"timezone": "Europe/Berlin"} if i % 10 == 0 else {}
    if frequency == "interval":
        return {"hours": 24 + i % 48}  # anchored at created_at, set in the past below
    if frequency == "daily":
        return {"hour": hour, "minute": minute, **zone}
    if frequency == "weekly":
        days = quiet.weekdays
        if i % 2:
            return {"days": [days[i % len(days)][:3], days[(i + 1) % len(days)]], "hour": hour}
        return {"day": days[i % len(days)], "hour": hour, "minute": minute, **zone}
    if frequency == "monthly":
        return {"day": quiet.month_days[i % len(quiet.month_days)], "hour": hour, "minute": minute}
    if frequency == "hourly":
        return {"minute": quiet.hourly_minute(i)}
    if i % 3 == 0:  # 6-field cron, seconds first
        return {"expression": f"{i % 60} {minute} {hour} * * *", **zone}
    return {"expression": f"{minute} {hour} * * {'1-5' if i % 2 else '*'}"}


def insert_schedules(
    database_url: str, n: int, *, payload: Mapping[str, object] = NOOP_PAYLOAD
) -> float:
    """COPY `n` enabled schedules of mixed frequencies (a sixth of each), none due within
    ~20 minutes, with `job_type='python'` and a no-op payload; returns the seconds it took."""
    quiet = QuietTimes(datetime.now(UTC))
    rng = random.Random(n)
    payload_json = json.dumps(dict(payload))
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=False) as conn, conn.cursor() as cur:
        columns = "domain_config_id, domain, frequency, time_config, job_type, payload, created_at"
        with cur.copy(f"COPY schedules ({columns}) FROM STDIN") as copy:
            for i in range(n):
                frequency = FREQUENCIES[i % len(FREQUENCIES)]
                created = quiet.now - timedelta(hours=rng.randint(1, 20))
                copy.write_row(
                    (
                        uuid.uuid4(),
                        f"bench-{i}.example.com",
                        frequency,
                        json.dumps(time_config_for(frequency, i, quiet)),
                        "python",
                        payload_json,
                        created,
                    )
                )
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE schedules")
    return time.perf_counter() - started


def count_executions(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM job_executions").fetchone()
    return int(row[0]) if row else 0
