"""ScheduleWatcher at scale (issue 6): start-up, passes, a 1,000-row change, NOTIFY latency.

`python -m bench.bench_watcher`. N schedules (100,000; 10,000 with BENCH_QUICK=1) of mixed
frequencies, none due during the run, are inserted once into a template database; each part then
works on its own copy of it:
- start-up: `python scheduler.py run` as a subprocess, from spawn to its `scheduler.started` log
  line, and its RSS then (VmRSS);
- in-process: `EnhancedScheduler.start()` split into phases; incremental and full passes with no
  change; a pass after 1,000 rows changed in one UPDATE; then, with the watcher's threads running,
  edit-to-applied latency of single-row UPDATEs through LISTEN/NOTIFY;
- startup_edit: `python scheduler.py run` again, with an edit committed during its start-up,
  once right after /health first answers and once inside the window between the load's
  snapshot and LISTEN (the start-up edit race of e98fffa): how long after the load finished
  (scheduler.started) the edit was applied.

BENCH_CASES=startup_edit (names, comma-separated: subprocess_start, in_process, startup_edit)
runs only those cases; unset, every case runs.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
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
    clone_database,
    count_executions,
    cpu_seconds,
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
from tests.support.daemon import DaemonProcess
from tests.support.redis_server import free_port

N = scale(100_000, 10_000)
CHANGED = 1_000
EDITS = scale(200, 50)
IDLE_PASSES = scale(20, 5)
START_TIMEOUT = 300.0
EDIT_TIMEOUT = 5.0


def run() -> list[dict[str, object]]:
    register_python_handler("noop", lambda ctx: None)
    cases = selected_cases()
    records: list[Record] = []
    with bench_database() as template:
        inserted = insert_schedules(template, N)
        records.append(figure("bulk insert of schedules (COPY + VACUUM ANALYZE)", inserted, "s", N))
        for name in cases:
            for part in CASES[name]:
                with clone_database(template) as url:  # each part starts from the same rows
                    records += part(url)
    return records


def selected_cases() -> list[str]:
    """The cases BENCH_CASES names (comma-separated), in CASES order; every case if unset."""
    wanted = {c.strip() for c in os.environ.get("BENCH_CASES", "").split(",") if c.strip()}
    unknown = wanted - set(CASES)
    if unknown:
        raise ValueError(f"BENCH_CASES: no case {sorted(unknown)}; cases are {list(CASES)}")
    return [name for name in CASES if not wanted or name in wanted]


# -- start-up from an empty process -------------------------------------------------------------


class Spawned(NamedTuple):
    proc: subprocess.Popen[bytes]
    started_after: float  # seconds from spawn to the scheduler.started line
    started: dict[str, Any]  # that line


@contextmanager
def daemon_subprocess(
    url: str, timeout: float, *, prefix: str | None = None, **overrides: object
) -> Iterator[Spawned]:
    """`scheduler.py run` on `url` (its own Redis prefix unless `prefix`; settings `overrides`),
    spawned and waited for until its `scheduler.started` line; stopped with SIGTERM afterwards."""
    with ExitStack() as stack:
        if prefix is None:
            prefix = stack.enter_context(redis_prefix())
        spawned = time.perf_counter()
        proc = spawn_scheduler(url, prefix, **overrides)
        try:
            started = _wait_for_event(proc, "scheduler.started", timeout)
            yield Spawned(proc, time.perf_counter() - spawned, started)
        finally:
            stop_scheduler(proc)


def spawn_scheduler(url: str, prefix: str, **overrides: object) -> subprocess.Popen[bytes]:
    """`scheduler.py run` on `url` with Redis prefix `prefix`, its JSON log on a stderr pipe
    (its reader must keep up: see _wait_for_event); stop it with stop_scheduler."""
    env = {**os.environ, **bench_environ(url, prefix, **overrides), "ENV_FILE": ""}
    return subprocess.Popen(
        [sys.executable, "scheduler.py", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_scheduler(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` s; reaps it either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def subprocess_start(url: str) -> list[Record]:
    with daemon_subprocess(url, START_TIMEOUT) as daemon:
        elapsed = daemon.started_after
        rss_mb = _rss_mb(daemon.proc.pid)
        cpu = cpu_seconds(daemon.proc.pid)
        jobs = int(daemon.started.get("jobs_loaded", -1))
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


# -- start-up edit: an edit committed while the daemon starts ----------------------------------

# The start-up load's statement (the pool's connections are named enhanced-scheduler): once a
# backend shows it, the load's snapshot is taken, or about to be within microseconds.
LOAD_STATEMENT_SEEN = """
SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'enhanced-scheduler'
  AND query LIKE '%%time_config::text AS time_config_json%%'
"""


def edit_after_health(url: str) -> list[Record]:
    """The edit is committed as soon as /health first answers."""
    return _startup_edit(url, "after /health", _health_answers)


def edit_after_snapshot(url: str) -> list[Record]:
    """The edit is committed as soon as the load's statement shows in pg_stat_activity: after
    the load's snapshot, before LISTEN holds, the window of the start-up edit race."""
    return _startup_edit(url, "inside the load", _load_begun)


def _health_answers(port: int, conn: psycopg.Connection[Any]) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:  # not listening yet
        return False


def _load_begun(port: int, conn: psycopg.Connection[Any]) -> bool:
    return conn.execute(LOAD_STATEMENT_SEEN).fetchone() is not None


def _startup_edit(
    url: str, placement: str, ready_to_edit: Callable[[int, psycopg.Connection[Any]], bool]
) -> list[Record]:
    """Spawn `scheduler.py run` on the N rows, commit one edit (a daily row moved to another
    UTC time) when `ready_to_edit`, and read from its log when the load finished
    (scheduler.started) and when the edit was applied. The row is the daily one with the
    highest id, the last the load's background next_run writes reach: whether those writes
    (computed from the old configuration) overwrite the edit's next_run is checked too."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT schedule_id, time_config FROM schedules WHERE frequency = 'daily' "
            "ORDER BY schedule_id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    target, old_config = row
    hour = next(h for h in QuietTimes(datetime.now(UTC)).hours if h != old_config.get("hour"))
    new_config = {"hour": hour, "minute": 41, "timezone": "UTC"}
    port = free_port()
    label = f"startup_edit, edit {placement}"
    with redis_prefix() as prefix, tempfile.TemporaryDirectory(prefix="es_bench_") as tmp:
        env = {**bench_environ(url, prefix, HTTP_PORT=port), "ENV_FILE": ""}
        daemon = DaemonProcess(env, Path(tmp) / "daemon.log", instance_id=env["INSTANCE_ID"])
        spawned = time.monotonic()
        daemon.start(wait_ready=False)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + START_TIMEOUT
                while not ready_to_edit(port, conn):
                    daemon._fail_if_exited(f"the moment to edit ({placement})")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{label}: not ready to edit in {START_TIMEOUT:g}s")
                    time.sleep(0.002)
                conn.execute(
                    "UPDATE schedules SET time_config = %s WHERE schedule_id = %s",
                    (Jsonb(new_config), target),
                )
                committed = datetime.now(UTC)
            started = daemon.wait_for_event("scheduler.started", START_TIMEOUT)
            started_after = time.monotonic() - spawned
            loaded = daemon.wait_for_event("watcher.pass", 5, kind="initial")
            try:  # by a pass: it came after the load's snapshot
                applied: dict[str, Any] | None = daemon.wait_for_event(
                    "schedule.updated", EDIT_TIMEOUT * 2, schedule_id=str(target)
                )
            except AssertionError:  # none: in the load itself, or never (the race)
                applied = None
            next_run = _next_run_after_the_loads_writes(url, target)
        finally:
            daemon.terminate(60)
    expected = _next_daily_utc(committed, hour, 41)
    started_at = _log_time(started)
    in_load = applied is None and next_run == expected
    if applied is not None:
        lag_ms = (_log_time(applied) - started_at).total_seconds() * 1000
        where = "after the load's snapshot, applied by the watcher's first pass"
    elif in_load:
        lag_ms = (_log_time(loaded) - started_at).total_seconds() * 1000
        where = "before the load's snapshot: the load itself applied it (value <= 0)"
    else:
        lag_ms = float("nan")
        where = f"NOT applied within {EDIT_TIMEOUT * 2:g} s of scheduler.started"
    stale = applied is not None and next_run != expected
    return [
        figure(
            f"{label}: edit applied after the load finished (scheduler.started)",
            round(lag_ms, 1),
            "ms",
            N,
            target="< 1000 ms",
            ok=(applied is not None or in_load) and lag_ms < 1000,
            note=where,
        ),
        figure(
            f"{label}: edit committed before scheduler.started",
            round((started_at - committed).total_seconds() * 1000, 1),
            "ms",
            N,
            target="> 0 (during start-up)",
            ok=committed < started_at,
        ),
        figure(f"{label}: spawn to scheduler.started", round(started_after, 2), "s", N),
        figure(
            f"{label}: edited row's next_run left stale by the load's next_run writes",
            int(stale),
            "rows",
            1,
            target="0",
            ok=not stale,
            note=(
                f"next_run {next_run}; the pass applying the edit wrote "
                f"{applied['next_run'] if applied else None}, the edit's {expected}"
            )
            if stale
            else None,
        ),
    ]


def _next_run_after_the_loads_writes(url: str, schedule_id: UUID) -> datetime | None:
    """The row's next_run once the start-up load's background next_run writes are done (every
    row has one then: all N are valid and enabled)."""
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT 1 FROM schedules WHERE next_run IS NULL LIMIT 1").fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError("the load's next_run writes did not finish within 120 s")
            time.sleep(0.05)
        row = conn.execute(
            "SELECT next_run FROM schedules WHERE schedule_id = %s", (schedule_id,)
        ).fetchone()
    return row[0] if row else None


def _next_daily_utc(after: datetime, hour: int, minute: int) -> datetime:
    candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > after else candidate + timedelta(days=1)


def _log_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


# BENCH_CASES names: each part runs on its own copy of the template.
CASES: dict[str, tuple[Callable[[str], list[Record]], ...]] = {
    "subprocess_start": (subprocess_start,),
    "in_process": (in_process,),
    "startup_edit": (edit_after_health, edit_after_snapshot),
}


if __name__ == "__main__":
    from bench.common import print_table

    print_table(run())
