"""The API's cost to the daemon that serves it (bench_api, part 3): fire lateness of K `once`
schedules due at once, on a quiet daemon and while concurrent clients walk the list on the same
daemon's HTTP port.

The daemon runs in this process, as in bench_engine (its handler stamps how late it started);
the clients run in a process of their own (`http_load.py`), so their Python never takes the
daemon's GIL. Each batch is measured with:
- the CPU of the daemon's process, of the database's client backends, and of the whole machine;
- the wake-up delay of a thread that sleeps 1 ms at a time, in the daemon's process (waiting for
  the GIL and for a core) and in a process of its own (waiting for a core only);
- the garbage collections in the daemon's process (each stops every thread while it runs).
The machine is shared: each condition runs in ROUNDS interleaved rounds, and its figures are
those of its median batch.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.bench_engine import WORKERS, Lateness, LatenessProbe, lateness_figures
from bench.common import (
    NOOP_HANDLER,
    Record,
    bench_settings,
    figure,
    load_average,
    ms,
    percentile,
    redis_prefix,
    scale,
    scheduler_logs,
)
from bench.http_load import client_load, serving, still_serving
from bench.probes import CpuWindow, GcPauses, backend_pids, cpu_window, gc_pauses, wakeup_probe
from services.engine.handlers import register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from tests.support.api import make_token
from tests.support.redis_server import free_port

K = 100
CLIENTS = 8
ROUNDS = scale(3, 1)  # batches per condition, interleaved: the machine is shared
WARM_UP_SECONDS = 2.0
# What the concurrent clients do: walk the whole list, 100 rows a page, by following cursors.
LOADS: dict[str, dict[str, Any]] = {
    "sort=created_at walk": {"sort": "created_at", "limit": 100},
    "sort=next_run walk": {"sort": "next_run", "limit": 100},
}


def load_figures(
    label: str, served: list[float], seconds: float, cpu: CpuWindow, n: int
) -> list[Record]:
    """Pages per second and latency of the list requests answered in a window, and the CPU."""
    records = [
        figure(f"{label}: pages/s", round(len(served) / seconds, 1), "pages/s", len(served)),
        figure(f"{label}: latency p50", ms(percentile(served, 50)), "ms", len(served)),
        figure(f"{label}: latency p99", ms(percentile(served, 99)), "ms", len(served)),
    ]
    return records + cpu_figures(label, cpu, n)


def cpu_figures(label: str, cpu: CpuWindow, n: int) -> list[Record]:
    records = [
        figure(f"{label}: CPU of {_CPU_OF.get(name, name)}", cores, "cores", n)
        for name, cores in cpu.cores.items()
    ]
    records.append(figure(f"{label}: machine CPU busy (all processes)", cpu.machine, "share", n))
    return records


_CPU_OF = {
    "postgres": "PostgreSQL (client backends; parallel workers not counted)",
    "daemon": "the daemon's process (with its HTTP server)",
    "clients": "the 8 clients' process",
    "serve": "serve",
}


@dataclass(frozen=True)
class Batch:
    lateness: Lateness
    cpu: CpuWindow
    own_wakeup: list[float]  # 1 ms sleep overruns in the daemon's process
    alone_wakeup: list[float]  # the same in a process of its own
    served: list[float]  # latencies of the list requests answered during the batch
    seconds: float
    gc: GcPauses  # this process's garbage collections during the batch
    load: float  # the machine's load average when the batch was done

    @property
    def p99(self) -> float:
        return percentile(self.lateness.handler_s, 99)


@dataclass(frozen=True)
class Condition:
    label: str  # ", 8 clients ... on its port"; "" for the quiet daemon
    base_url: str
    token: str
    load: dict[str, Any] | None  # what the clients do; None: no clients


def fire_batch(probe: LatenessProbe, url: str, condition: Condition) -> Batch:
    """K schedules fired into the running daemon, under the condition's load."""
    with ExitStack() as stack:
        own = stack.enter_context(wakeup_probe())
        alone = stack.enter_context(wakeup_probe(separate=True))
        clients = None
        if condition.load is not None:
            clients = stack.enter_context(
                client_load(condition.base_url, condition.token, condition.load, clients=CLIENTS)
            )
        time.sleep(WARM_UP_SECONDS)
        groups = {"daemon": [os.getpid()], "postgres": backend_pids(url)}
        if clients is not None:
            groups["clients"] = [clients.pid]
        with cpu_window(groups) as cpu, gc_pauses() as collections:
            start = time.monotonic()
            result = probe.fire(url, K)
            end = time.monotonic()
    served = [] if clients is None or clients.result is None else clients.result.window(start, end)
    return Batch(
        result, cpu, own.delays, alone.delays, served, end - start, collections, load_average()
    )


def median_batch(batches: list[Batch]) -> Batch:
    """The batch whose lateness p99 is the median of the rounds': a neighbour's burst on the
    shared machine during one round moves the figures of none."""
    return sorted(batches, key=lambda b: b.p99)[(len(batches) - 1) // 2]


def batch_figures(label: str, batches: list[Batch], n: int) -> list[Record]:
    batch = median_batch(batches)
    spread = None
    if len(batches) > 1:
        each = ", ".join(f"{ms(b.p99, 0):g}" for b in batches)
        spread = f"median of {len(batches)} interleaved batches by p99 (each: {each} ms)"
    records = lateness_figures(batch.lateness, label, note=spread)
    if batch.served:
        records += load_figures(f"  batch{label}", batch.served, batch.seconds, batch.cpu, n)
    else:
        records += cpu_figures(f"  batch{label}", batch.cpu, n)
    for where, delays in (("daemon's", batch.own_wakeup), ("a separate", batch.alone_wakeup)):
        records.append(
            figure(
                f"  batch{label}: 1 ms sleep overrun in {where} process, p99",
                ms(percentile(delays, 99)),
                "ms",
                len(delays),
            )
        )
    pauses = batch.gc.pauses
    records += [
        figure(
            f"  batch{label}: garbage collections in the daemon's process",
            round(len(pauses) / batch.seconds, 1),
            "per s",
            len(pauses),
            note=f"{sum(s for _, s in pauses) * 1000:.0f} ms in all" if pauses else None,
        ),
        figure(
            f"  batch{label}: longest collection (every thread waits)",
            ms(batch.gc.longest()),
            "ms",
            len(pauses),
        ),
    ]
    for record in records:
        record["load"] = batch.load
    return records


def daemon_figures(url: str, n: int) -> list[Record]:
    """Start a daemon (with its HTTP port) on the `n` schedules of `url`, then fire K schedules
    in ROUNDS interleaved rounds: on the quiet daemon, under each of LOADS on its port, and (the
    control) under the first load sent to a separate `serve` process on the same database."""
    register_python_handler(NOOP_HANDLER, lambda ctx: None)
    port = free_port()
    records: list[Record] = []
    (first_name, first_load), *other_loads = LOADS.items()
    with redis_prefix() as prefix, scheduler_logs(), serving(url) as (server, serve_token):
        settings = bench_settings(url, prefix, MAX_WORKERS=WORKERS, HTTP_PORT=port)
        daemon = EnhancedScheduler(settings=settings)
        try:
            started = time.perf_counter()
            daemon.start()
            records.append(
                figure(
                    "daemon start-up (EnhancedScheduler.start(), HTTP port on)",
                    round(time.perf_counter() - started, 2),
                    "s",
                    n,
                )
            )
            for thread in threading.enumerate():  # background next_run writes, if any
                if thread.name == "next-run-writer":
                    thread.join(120)
            own = f"http://127.0.0.1:{port}"
            token = make_token(daemon.db, "bench-daemon-reader", "read")
            on_port = f", {CLIENTS} clients {{}} on its port"
            conditions = [
                Condition("", own, token, None),
                Condition(on_port.format(first_name), own, token, first_load),
                Condition(
                    f", {CLIENTS} clients {first_name} on a separate serve",
                    server.url,
                    serve_token,
                    first_load,
                ),
                *(Condition(on_port.format(name), own, token, load) for name, load in other_loads),
            ]
            probe = LatenessProbe()
            batches: dict[str, list[Batch]] = {c.label: [] for c in conditions}
            for _ in range(ROUNDS):
                for condition in conditions:
                    try:
                        batches[condition.label].append(fire_batch(probe, url, condition))
                    finally:
                        still_serving(server)
        finally:
            daemon.shutdown()
    for label, done in batches.items():
        records += batch_figures(label, done, n)
    quiet = median_batch(batches[""]).lateness.handler_s
    for label, done in list(batches.items())[1:]:
        loaded = median_batch(done).lateness.handler_s
        for p in (50, 99):
            delta = percentile(loaded, p) - percentile(quiet, p)
            records.append(figure(f"fire lateness K={K}: p{p} added{label}", ms(delta), "ms", K))
    others = _other_runs(url)
    if others:
        records.append(figure("runs of the other schedules (expected none)", others, "rows", n))
    return records


def _other_runs(url: str) -> int:
    """Runs of the n varied schedules, which are never due during the benchmark."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM job_executions AS e JOIN schedules AS s USING (schedule_id)"
            " WHERE s.frequency <> 'once'"
        ).fetchone()
    return int(row[0]) if row else 0
