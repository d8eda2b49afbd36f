"""The invariants every fault case must leave true, checked on `job_executions`, Redis, the
daemons' logs and the process table once the case's instances have all stopped or died:

1. no (schedule_id, scheduled_for, attempt) twice, neither as rows nor as runs started in the
   logs (two `run.started` for one occurrence would be two runners);
2. no occurrence of the case's interval schedules that fell due inside a healthy window (at
   least one instance up with both PostgreSQL and Redis) is without a row (the window's edges,
   `edge` seconds each side, excepted), and no row off the schedule's grid;
3. no row still `running`, and none resolved later than LOCK_TIMEOUT + `check_interval` after
   its instance died or stopped;
4. every result a cleanly stopped daemon logged as written is in the database, as logged;
5. no lock key lives on past its TTL after the last instance ended, and every one has a TTL;
   heartbeats go within their TTL;
6. no process with the case's environment (daemons, their commands) and no thread started by
   in-process schedulers is left.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from tests.faults.common import db_now
from tests.support.daemon import DaemonProcess
from tests.support.schedules import Row, interval_occurrences, query


@dataclass(frozen=True)
class Ending:
    """An instance process that died (`killed`) or shut down (`stopped`), at the database's
    clock read right after."""

    instance_id: str
    at: datetime
    how: str = "stopped"


@dataclass
class CaseRecord:
    database_url: str
    redis_url: str
    redis_prefix: str
    lock_timeout: float
    # How long after LOCK_TIMEOUT a dead instance's `running` row may wait for the reaper:
    # heartbeat TTL (3 beats) + missing for 2 beats + one sweep, plus scheduling slack.
    check_interval: float
    heartbeat_ttl: float
    endings: list[Ending] = field(default_factory=list)
    schedules: Sequence[Row] = ()  # interval schedules (schedule_id, created_at) to account for
    period: float = 1.0
    healthy: Sequence[tuple[datetime, datetime]] = ()
    edge: float = 1.5
    daemons: Sequence[DaemonProcess] = ()
    threads_before: set[int] | None = None  # thread idents before in-process schedulers started


@dataclass
class Report:
    rows: list[Row]
    statuses: Counter[str]
    expected_occurrences: int
    reap_delays: list[float]  # seconds from an instance's death to its rows leaving `running`

    @property
    def skip_reasons(self) -> Counter[str]:
        return Counter(
            (r["error_details"] or {}).get("reason", "?")
            for r in self.rows
            if r["status"] == "skipped"
        )

    def __str__(self) -> str:
        worst = max(self.reap_delays, default=0.0)
        return (
            f"{len(self.rows)} rows {dict(self.statuses)} (skipped: {dict(self.skip_reasons)}); "
            f"{self.expected_occurrences} occurrences "
            f"accounted for; {len(self.reap_delays)} runs cut short, resolved at most "
            f"{worst:.2f} s after their instance ended"
        )


def check_invariants(case: CaseRecord) -> Report:
    """Wait (bounded) for what must vanish, then check everything; AssertionError listing
    every problem found."""
    problems: list[str] = []
    problems += _leftover_processes(case)
    problems += _leftover_threads(case)
    problems += _leftover_keys(case)
    rows = query(case.database_url, "SELECT * FROM job_executions ORDER BY scheduled_for, attempt")
    problems += _duplicates(case, rows)
    missing, expected = _missing(case, rows)
    problems += missing
    running, delays = _running(case, rows)
    problems += running
    problems += _results_logged_but_not_stored(case, rows)
    report = Report(rows, Counter(r["status"] for r in rows), expected, delays)
    assert not problems, f"{len(problems)} invariant violation(s) ({report}):\n" + "\n".join(
        problems[:60]
    )
    return report


# -- 1. nothing twice -------------------------------------------------------------------------


def _duplicates(case: CaseRecord, rows: list[Row]) -> list[str]:
    counts = Counter((r["schedule_id"], r["scheduled_for"], r["attempt"]) for r in rows)
    problems = [f"occurrence {key} has {n} rows" for key, n in counts.items() if n > 1]
    started: Counter[tuple[Any, ...]] = Counter()
    for daemon in case.daemons:
        for event in daemon.events():
            if event.get("event") == "run.started":
                key = (event.get("schedule_id"), event.get("scheduled_for"), event.get("attempt"))
                started[key] += 1
    problems += [
        f"occurrence {key} was started {n} times (logs)" for key, n in started.items() if n > 1
    ]
    return problems


# -- 2. nothing lost --------------------------------------------------------------------------


def _missing(case: CaseRecord, rows: list[Row]) -> tuple[list[str], int]:
    by_schedule: dict[Any, set[datetime]] = {}
    for row in rows:
        by_schedule.setdefault(row["schedule_id"], set()).add(row["scheduled_for"])
    edge = timedelta(seconds=case.edge)
    period = timedelta(seconds=case.period)
    problems: list[str] = []
    expected_total = 0
    for schedule in case.schedules:
        sid, anchor = schedule["schedule_id"], schedule["created_at"].replace(microsecond=0)
        got = by_schedule.get(sid, set())
        for start, end in case.healthy:
            expected = interval_occurrences(
                schedule["created_at"], case.period, start + edge, end - edge
            )
            expected_total += len(expected)
            problems += [
                f"{sid}: occurrence {m:%H:%M:%S} has no row (due in a healthy window)"
                for m in expected
                if m not in got
            ]
        problems += [
            f"{sid}: row for {m} is off the schedule's grid" for m in got if (m - anchor) % period
        ]
    return problems, expected_total


# -- 3. nothing stuck in `running` ------------------------------------------------------------


def _running(case: CaseRecord, rows: list[Row]) -> tuple[list[str], list[float]]:
    bound = case.lock_timeout + case.check_interval
    problems: list[str] = []
    delays: list[float] = []
    for row in rows:
        if row["status"] == "running":
            problems.append(
                f"row {row['execution_id']} of {row['instance_id']} ({row['scheduled_for']:%T}) "
                "is still running after every instance ended"
            )
            continue
        if row["status"] == "skipped" or row["completed_at"] is None:
            continue
        ends = [
            e.at
            for e in case.endings
            if e.instance_id == row["instance_id"] and e.at >= row["started_at"]
        ]
        if not ends or row["completed_at"] <= min(ends):
            continue  # finished while its instance lived
        delay = (row["completed_at"] - min(ends)).total_seconds()
        delays.append(delay)
        if delay > bound:
            problems.append(
                f"row {row['execution_id']} of {row['instance_id']} stayed running {delay:.1f} s "
                f"after its instance ended (bound LOCK_TIMEOUT + check interval = {bound:g} s)"
            )
    return problems, delays


# -- 4. finished results are stored -----------------------------------------------------------


def _results_logged_but_not_stored(case: CaseRecord, rows: list[Row]) -> list[str]:
    by_id = {str(r["execution_id"]): r for r in rows}
    problems: list[str] = []
    for daemon in case.daemons:
        events = daemon.events()
        killed = daemon.process is not None and daemon.process.returncode != 0
        if killed and any(e.get("event") == "store.write_deferred" for e in events):
            continue  # results waiting in memory die with a SIGKILLed process
        for event in events:
            if event.get("event") not in ("run.completed", "run.finished"):
                continue
            if not event.get("written"):
                continue
            row = by_id.get(str(event.get("execution_id")))
            if row is None or row["status"] != event.get("status"):
                problems.append(
                    f"{daemon.instance_id} logged {event.get('execution_id')} as "
                    f"{event.get('status')}, the database says "
                    f"{row and row['status']}"
                )
    return problems


# -- 5. keys ----------------------------------------------------------------------------------


def _leftover_keys(case: CaseRecord) -> list[str]:
    client = redis.Redis.from_url(case.redis_url, decode_responses=True, socket_timeout=5)
    problems: list[str] = []
    try:
        last_end = max((e.at for e in case.endings), default=db_now(case.database_url))
        since = (db_now(case.database_url) - last_end).total_seconds()
        for pattern, ttl in (
            ("lock:*", case.lock_timeout),
            ("scheduler:instance*", case.heartbeat_ttl),
        ):
            match = f"{case.redis_prefix}{pattern}"
            for key in client.scan_iter(match=match, count=1000):
                pttl = client.pttl(key)
                if pttl == -1 or pttl > ttl * 1000 + 50:
                    problems.append(f"key {key} has TTL {pttl} ms (at most {ttl:g} s expected)")
            deadline = time.monotonic() + max(0.0, ttl + 1.0 - since)
            while (left := list(client.scan_iter(match=match, count=1000))) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.1)
            problems += [f"key {key} outlived its TTL after shutdown" for key in left]
    finally:
        client.close()
    return problems


# -- 6. processes and threads -----------------------------------------------------------------


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _leftover_processes(case: CaseRecord) -> list[str]:
    problems = [
        f"daemon {d.instance_id} (pid {d.pid}) is still running"
        for d in case.daemons
        if d.process is not None and d.process.poll() is None
    ]
    # Every daemon of the case, and every command it started, carries the case's key prefix.
    marker = f"REDIS_KEY_PREFIX={case.redis_prefix}\0".encode()
    deadline = time.monotonic() + 5.0
    while (strays := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in strays:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        problems.append(f"stray process {pid}: {cmdline.strip()}")
    return problems


def _leftover_threads(case: CaseRecord) -> list[str]:
    if case.threads_before is None:
        return []
    before = case.threads_before
    deadline = time.monotonic() + 5.0
    while True:
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not extra or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return [f"thread {t.name!r} still alive after shutdown" for t in extra]
