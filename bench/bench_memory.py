"""What a loaded schedule costs (issue 19): start-up, RSS and next_run on the varied load mix.

`python -m bench.bench_memory`. The mix of `load_mix.py` (configurations that differ row by
row), N = 100,000 (10,000 with BENCH_QUICK=1; 1,000,000 too with BENCH_MILLION=1):
- floor: `scheduler.py run` on an empty table, its RSS once started (what no schedule costs);
- start-up: `scheduler.py run` as a subprocess, spawn to `scheduler.started`, RSS then (VmRSS)
  and its peak so far (VmHWM), the time until every row's next_run is written, and bytes per
  schedule: RSS / N and (RSS - floor) / N;
- breakdown: the same load in-process under tracemalloc: the allocation sites (by file) and the
  object types (gc census, shallow sizes) that hold the most, per schedule.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from typing import Any

import psycopg

from bench.bench_watcher import daemon_subprocess
from bench.common import (
    ROOT,
    Record,
    bench_database,
    bench_settings,
    figure,
    redis_prefix,
    scale,
    scheduler_logs,
)
from bench.load_mix import insert_load_mix
from services.enhanced_scheduler import EnhancedScheduler

N = scale(100_000, 10_000)
MILLION = os.environ.get("BENCH_MILLION", "").strip().lower() in {"1", "true", "yes", "on"}
START_TIMEOUT = 900.0
TOP = 8


def run() -> list[Record]:
    records: list[Record] = []
    with bench_database() as empty:
        floor = subprocess_load(empty, 0)
    floor_mb = floor["rss_mb"]
    records.append(figure("floor: RSS of a started daemon with no schedule", floor_mb, "MB", 0))
    sizes = [N, 1_000_000] if MILLION else [N]
    for n in sizes:
        with bench_database() as url:
            inserted = insert_load_mix(url, n)
            records.append(figure("load mix: COPY + VACUUM ANALYZE", round(inserted, 1), "s", n))
            records += load_figures(subprocess_load(url, n), floor_mb, n)
            if n == N:
                records += breakdown(url, n)
    return records


def subprocess_load(url: str, n: int) -> dict[str, float]:
    """Spawn `scheduler.py run`; its start-up time, RSS, peak RSS and next_run completion."""
    with daemon_subprocess(url, START_TIMEOUT) as daemon:
        spawned = time.perf_counter() - daemon.started_after
        memory = memory_mb(daemon.proc.pid)
        complete = wait_next_run_complete(url, spawned)
        after = memory_mb(daemon.proc.pid)
    return {
        "loaded_s": daemon.started_after,
        "jobs": float(daemon.started.get("jobs_loaded", -1)),
        "rss_mb": memory["VmRSS"],
        "peak_mb": after["VmHWM"],
        "rss_after_writes_mb": after["VmRSS"],
        "next_run_s": complete,
    }


def load_figures(m: dict[str, float], floor_mb: float, n: int) -> list[Record]:
    million = n >= 1_000_000
    start_target, rss_target = (30.0, 1536.0) if million else (3.0, 200.0)
    per_row = m["rss_mb"] * 2**20 / n
    above_floor = (m["rss_mb"] - floor_mb) * 2**20 / n
    jobs_ok = int(m["jobs"]) == n
    return [
        figure(
            "mix start-up: spawn to scheduler.started (subprocess)",
            round(m["loaded_s"], 2),
            "s",
            n,
            target=f"<= {start_target:g} s",
            ok=m["loaded_s"] <= start_target and jobs_ok,
            note=None if jobs_ok else f"jobs_loaded={int(m['jobs'])}",
        ),
        figure(
            "mix: RSS after load (VmRSS)",
            round(m["rss_mb"], 1),
            "MB",
            n,
            target=f"<= {rss_target:g} MiB",
            ok=m["rss_mb"] <= rss_target,
        ),
        figure("mix: peak RSS (VmHWM, load and next_run writes)", round(m["peak_mb"], 1), "MB", n),
        figure("mix: RSS once next_run is written", round(m["rss_after_writes_mb"], 1), "MB", n),
        figure(
            "mix: next_run complete, from spawn",
            round(m["next_run_s"], 2),
            "s",
            n,
            target=None if million else "<= 5 s",
            ok=None if million else m["next_run_s"] <= 5.0,
        ),
        figure("mix: bytes per schedule (RSS / N)", round(per_row), "B", n),
        figure("mix: bytes per schedule above the floor", round(above_floor), "B", n),
    ]


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def wait_next_run_complete(url: str, spawned: float) -> float:
    """Seconds from spawn until no enabled row lacks a next_run (polled every 0.1 s)."""
    deadline = time.monotonic() + START_TIMEOUT
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM schedules WHERE enabled AND next_run IS NULL"
            ).fetchone()
            if row is not None and row[0] == 0:
                return time.perf_counter() - spawned
            time.sleep(0.1)
    return float("nan")


def breakdown(url: str, n: int) -> list[Record]:
    """The load in-process under tracemalloc: who allocated what is still held, per schedule."""
    records: list[Record] = []
    with redis_prefix() as prefix, scheduler_logs():
        daemon = EnhancedScheduler(settings=bench_settings(url, prefix))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        try:
            daemon.start()
            for thread in threading.enumerate():
                if thread.name == "next-run-writer":
                    thread.join(300)
            gc.collect()
            after = tracemalloc.take_snapshot()
            gc.unfreeze()  # the load freezes what it made (see the watcher); count it too
            census = _type_census()
        finally:
            tracemalloc.stop()
            daemon.shutdown()
    stats = after.compare_to(before, "filename")
    held = sum(s.size_diff for s in stats)
    records.append(figure("tracemalloc: held after load, per schedule", round(held / n), "B", n))
    for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:TOP]:
        where = _short(stat.traceback[0].filename)
        records.append(figure(f"tracemalloc by file: {where}", round(stat.size_diff / n), "B", n))
    for name, size in census.most_common(TOP):
        records.append(figure(f"objects by type (shallow): {name}", round(size / n), "B", n))
    return records


def _type_census() -> Counter[str]:
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind: Any = type(obj)
        sizes[f"{kind.__module__}.{kind.__qualname__}"] += sys.getsizeof(obj)
    return sizes


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


if __name__ == "__main__":
    from bench.common import print_table, quiet_logging

    quiet_logging()
    print_table(run())
