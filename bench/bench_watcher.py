"""ScheduleWatcher at scale (issue 6): start-up, passes, a 1,000-row change, NOTIFY latency.

`python -m bench.bench_watcher`. N schedules (100,000; 10,000 with BENCH_QUICK=1) of mixed
frequencies, none due during the run, are inserted once into a template database; each part then
works on its own copy of it:
- start-up: `python scheduler.py run` as a subprocess, from spawn to its `scheduler.started` log
  line, and its RSS then (VmRSS);
- in-process: `EnhancedScheduler.start()` split into phases; incremental and full passes with no
  change; a pass after 1,000 rows changed in one UPDATE; then, with the watcher's threads running,
  edit-to-applied latency of single-row UPDATEs through LISTEN/NOTIFY.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from bench.common import (
    ROOT,
    QuietTimes,
    Record,
    bench_database,
    bench_environ,
    bench_settings,
    count_executions,
    figure,
    insert_schedules,
    median,
    percentile,
    redis_prefix,
    scale,
    scheduler_logs,
)
from services.engine.handlers import register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from services.model.records import Schedule

N = scale(100_000, 10_000)
CHANGED = 1_000
EDITS = scale(200, 50)
IDLE_PASSES = scale(20, 5)
START_TIMEOUT = 300.0
EDIT_TIMEOUT = 5.0


def run() -> list[dict[str, object]]:
    register_python_handler("noop", lambda ctx: None)
    records: list[Record] = []
    with bench_database() as template:
        inserted = insert_schedules(template, N)
        records.append(figure("bulk insert of schedules (COPY + VACUUM ANALYZE)", inserted, "s", N))
        with clone(template) as url:
            records += subprocess_start(url)
        with clone(template) as url:
            records += in_process(url)
    return records


@contextmanager
def clone(template_url: str) -> Iterator[str]:
    """A copy of the template database (CREATE DATABASE ... TEMPLATE), dropped on exit."""
    template = template_url.rsplit("/", 1)[1]
    with bench_database(template=template) as url:
        yield url


# -- start-up from an empty process -------------------------------------------------------------


def subprocess_start(url: str) -> list[Record]:
    with redis_prefix() as prefix:
        env = {**os.environ, **bench_environ(url, prefix), "ENV_FILE": ""}
        spawned = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "scheduler.py", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            started = _wait_for_event(proc, "scheduler.started", START_TIMEOUT)
            elapsed = time.perf_counter() - spawned
            rss_mb = _rss_mb(proc.pid)
            cpu = _cpu_seconds(proc.pid)
            jobs = int(started.get("jobs_loaded", -1))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    return [
        figure(
            "start-up: spawn of `scheduler.py run` to scheduler.started (subprocess)",
            round(elapsed, 2),
            "s",
            N,
            target="< 10 s (aim 5 s)",
            ok=elapsed < 10 and jobs == N,
            note=None if jobs == N else f"jobs_loaded={jobs}, expected {N}",
        ),
        figure("start-up: CPU (user+sys) of the daemon until then", round(cpu, 2), "s", N),
        figure(
            "start-up: RSS of the daemon after loading (VmRSS)",
            round(rss_mb, 1),
            "MB",
            N,
            target="< 400 MB",
            ok=rss_mb < 400,
        ),
    ]


def _wait_for_event(proc: subprocess.Popen[bytes], event: str, timeout: float) -> dict[str, Any]:
    """Read the daemon's JSON log lines until `event`; fail on exit or time-out."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    buffer = b""
    tail: list[bytes] = []
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            continue
        chunk = os.read(proc.stderr.fileno(), 1 << 20)
        if not chunk:
            raise RuntimeError(f"daemon exited ({proc.wait()}): {b''.join(tail[-5:])!r}")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if event.encode() in line:
                parsed: dict[str, Any] = json.loads(line)
                if parsed.get("event") == event:
                    _drain(proc)
                    return parsed
            tail = [*tail[-4:], line]
    raise RuntimeError(f"no {event} within {timeout:g}s")


def _drain(proc: subprocess.Popen[bytes]) -> None:
    """Keep reading the daemon's stderr in the background so that it never blocks on a pipe."""
    assert proc.stderr is not None
    stream = proc.stderr
    threading.Thread(target=lambda: stream.read(), daemon=True).start()


def _cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- in-process: phases, passes, NOTIFY ---------------------------------------------------------


class PhaseTimer:
    """Accumulates wall time spent inside wrapped callables, by phase name."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, phase: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - started

        return timed


class _TimedLog:
    """Stands in for a module's structlog logger; time spent logging goes to phase 'logging'."""

    def __init__(self, inner: Any, timer: PhaseTimer) -> None:
        self._inner = inner
        self._timer = timer

    def __getattr__(self, name: str) -> Any:
        return self._timer.wrap("logging", getattr(self._inner, name))


def timed_start(daemon: EnhancedScheduler) -> tuple[float, float, PhaseTimer]:
    """daemon.start() with the initial load's phases timed: (wall s, CPU s, phases). The
    wrappers cost about a microsecond a call, well under 1% of the load."""
    import services.watch.loader as loader_module

    timer = PhaseTimer()
    from_row = Schedule.from_row.__func__  # type: ignore[attr-defined]
    patches: list[tuple[object, str, str, Any]] = [
        (daemon.watcher, "initial_load", "initial_load", None),
        (daemon.db, "fetch_all", "fetch rows", None),
        (
            Schedule,
            "from_row",
            "row -> Schedule",
            classmethod(timer.wrap("row -> Schedule", from_row)),
        ),
        (daemon.loader, "parse", "parse time_config", None),
        (loader_module, "next_fire_time", "next fire time", None),
        (daemon.jobs.store, "put_job", "job store put", None),
        (loader_module, "log", "logging", _TimedLog(loader_module.log, timer)),
    ]
    with ExitStack() as stack:
        for owner, name, phase, replacement in patches:
            new = timer.wrap(phase, getattr(owner, name)) if replacement is None else replacement
            stack.enter_context(mock.patch.object(owner, name, new))
        started, cpu = time.perf_counter(), time.process_time()
        daemon.start()
        return time.perf_counter() - started, time.process_time() - cpu, timer


def in_process(url: str) -> list[Record]:
    records: list[Record] = []
    with redis_prefix() as prefix, scheduler_logs():
        daemon = EnhancedScheduler(settings=bench_settings(url, prefix))
        # Passes are measured alone first: the watcher's own threads (LISTEN and the interval
        # loop) start only for the NOTIFY part, so that no background pass races a measured one.
        watcher_start = daemon.watcher.start
        daemon.watcher.start = lambda: None  # type: ignore[method-assign]
        try:
            total, cpu, timer = timed_start(daemon)
            records += start_figures(daemon, total, cpu, timer)
            # Passes are steady-state figures: let the start-up's background next_run writes
            # (100,000 rows in chunks) finish first instead of competing with the passes.
            for thread in threading.enumerate():
                if thread.name == "next-run-writer":
                    thread.join(120)
            records += pass_figures(daemon, url)
            watcher_start()
            records += notify_figures(daemon, url)
        finally:
            daemon.shutdown()
        fired = count_executions(url)
        if fired:
            records.append(
                figure("job runs during the watcher benchmark (expected none)", fired, "rows", N)
            )
    return records


def start_figures(
    daemon: EnhancedScheduler, total: float, cpu: float, timer: PhaseTimer
) -> list[Record]:
    loaded = daemon.loader.count
    records = [
        figure(
            "start-up in-process: EnhancedScheduler.start()",
            round(total, 2),
            "s",
            N,
            target="< 10 s",
            ok=total < 10 and loaded == N,
            note=None if loaded == N else f"{loaded} jobs loaded, expected {N}",
        ),
        figure("start-up in-process: CPU time of start()", round(cpu, 2), "s", N),
    ]
    load = timer.seconds.pop("initial_load", 0.0)
    records.append(
        figure(
            "  phase: before the load (wait, migrations, recovery)", round(total - load, 3), "s", N
        )
    )
    records.append(figure("  phase: initial_load", round(load, 2), "s", N))
    for phase, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        records.append(figure(f"    initial_load: {phase}", round(seconds, 2), "s", N))
    rest = load - sum(timer.seconds.values())
    records.append(figure("    initial_load: everything else", round(rest, 2), "s", N))
    records.append(
        figure("RSS of the bench process after start()", round(_rss_mb(os.getpid()), 1), "MB", N)
    )
    return records


def pass_figures(daemon: EnhancedScheduler, url: str) -> list[Record]:
    watcher = daemon.watcher
    idle = _timed_passes(watcher.incremental_pass, IDLE_PASSES)
    full = _timed_passes(watcher.full_pass, scale(3, 2))
    records = [
        figure(
            "incremental pass, no change (median)",
            round(median(idle) * 1000, 2),
            "ms",
            N,
            target="< 50 ms",
            ok=median(idle) < 0.05,
        ),
        figure(
            "incremental pass, no change (max)",
            round(max(idle) * 1000, 2),
            "ms",
            N,
            target="< 50 ms",
            ok=max(idle) < 0.05,
        ),
        figure("full (safety) pass, no change (median)", round(median(full) * 1000, 1), "ms", N),
    ]
    passes = (("incremental", watcher.incremental_pass), ("full", watcher.full_pass))
    for batch, (kind, run_pass) in enumerate(passes):
        ids, hashes = _change_rows(url, CHANGED, batch)
        started = time.perf_counter()
        outcomes = run_pass()
        seconds = time.perf_counter() - started
        applied = sum(
            1
            for sid, h in hashes.items()
            if (ls := daemon.loader.get(sid)) and ls.schedule.config_hash == h
        )
        records.append(
            figure(
                f"{kind} pass after {CHANGED:,} rows changed in one UPDATE",
                round(seconds * 1000, 1),
                "ms",
                N,
                target="< 1 s" if kind == "incremental" else None,
                ok=seconds < 1 and applied == len(ids) if kind == "incremental" else None,
                note=None
                if applied == len(ids)
                else f"only {applied}/{len(ids)} applied ({dict(outcomes)})",
            )
        )
    return records


def _timed_passes(run_pass: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        run_pass()
        times.append(time.perf_counter() - started)
    return times


def _change_rows(url: str, count: int, batch: int) -> tuple[list[UUID], dict[UUID, str]]:
    """Move the fire time of `count` daily schedules (the batch-th lot of them) in one UPDATE;
    (ids, their new config hashes)."""
    hour = QuietTimes(datetime.now(UTC)).hours[batch]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """
            UPDATE schedules SET time_config = %s
            WHERE schedule_id IN (
                SELECT schedule_id FROM schedules WHERE frequency = 'daily'
                ORDER BY schedule_id OFFSET %s LIMIT %s)
            RETURNING schedule_id, config_hash
            """,
            (Jsonb({"hour": hour, "minute": 7 + batch}), batch * count, count),
        ).fetchall()
    return [r[0] for r in rows], {r[0]: r[1] for r in rows}


def notify_figures(daemon: EnhancedScheduler, url: str) -> list[Record]:
    deadline = time.monotonic() + 10
    while not daemon.watcher.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    quiet = QuietTimes(datetime.now(UTC))
    latencies: list[float] = []
    missed = 0
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT schedule_id FROM schedules WHERE frequency = 'cron' "
                "ORDER BY schedule_id LIMIT %s",
                (EDITS,),
            ).fetchall()
        ]
        for i, sid in enumerate(ids):
            expression = f"{i % 60} {quiet.hours[i % len(quiet.hours)]} * * 0"
            started = time.perf_counter()
            row = conn.execute(
                "UPDATE schedules SET time_config = %s WHERE schedule_id = %s "
                "RETURNING config_hash",
                (Jsonb({"expression": expression}), sid),
            ).fetchone()
            assert row is not None
            new_hash = row[0]
            while time.perf_counter() - started < EDIT_TIMEOUT:
                loaded = daemon.loader.get(sid)
                if loaded is not None and loaded.schedule.config_hash == new_hash:
                    latencies.append(time.perf_counter() - started)
                    break
                time.sleep(0.001)
            else:
                missed += 1
            time.sleep(0.02)  # edits apart, so that each is its own notification
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    note = f"{missed} edits not applied within {EDIT_TIMEOUT:g} s" if missed else None
    return [
        figure(
            "NOTIFY edit-to-applied latency p50",
            round(p50, 1),
            "ms",
            EDITS,
            target="< 100 ms",
            ok=p50 < 100 and not missed,
            note=note,
        ),
        figure(
            "NOTIFY edit-to-applied latency p99",
            round(p99, 1),
            "ms",
            EDITS,
            target="< 500 ms",
            ok=p99 < 500 and not missed,
        ),
        figure(
            "NOTIFY edit-to-applied latency min",
            round(min(latencies, default=float("nan")) * 1000, 1),
            "ms",
            EDITS,
        ),
        figure(
            "NOTIFY edit-to-applied latency max",
            round(max(latencies, default=float("nan")) * 1000, 1),
            "ms",
            EDITS,
        ),
    ]


if __name__ == "__main__":
    from bench.common import print_table

    print_table(run())
