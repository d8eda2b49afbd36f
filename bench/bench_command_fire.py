"""K `command` runs of `true` due in one second (issue 19): `python -m bench.bench_command_fire`.

A real daemon (`scheduler.py run`, MAX_WORKERS=10) is started on an empty table ("small
daemon"), then on one holding N other schedules of the varied load mix, due far later ("N
loaded"). Once it is up, K `once` command schedules are inserted, due LEAD seconds later (the
NOTIFY path loads them); figures from their `job_executions` rows:
- lateness of `started_at - scheduled_for` (p50, p99, max) and how many never ran;
- throughput: K / (last `completed_at` - fire time);
- the floor, measured in the same run: spawning `true` from 10 threads with a bare
  `subprocess.run` (bench_spawn), and the bookkeeping of a run (lock, claim INSERT, UPDATE,
  unlock from 10 threads, bench_engine); in series they allow 1 / (1/spawn + 1/bookkeeping)
  runs/s, the figure our throughput is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bench.bench_engine import WORKERS, bookkeeping_floor, wait_for_runs
from bench.bench_memory import wait_next_run_complete
from bench.bench_spawn import bare_run, spawn_rate
from bench.bench_watcher import daemon_subprocess
from bench.common import (
    Record,
    bench_database,
    figure,
    insert_schedules,
    ms,
    percentile,
    print_table,
    redis_prefix,
    scale,
)
from bench.load_mix import insert_load_mix
from services.model.records import Schedule

K = scale(1000, 200)
N = scale(100_000, 10_000)
LEAD = 8.0  # seconds from the insert to the common fire time: the NOTIFY load of K rows
START_TIMEOUT = 300.0
FLOOR_RUNS = scale(2000, 300)


@dataclass(frozen=True)
class Burst:
    late_s: list[float]
    missed: int
    statuses: dict[str, int]
    rate: float  # runs per second from the fire time to the last completion


def run() -> list[Record]:
    spawn = spawn_rate(bare_run, FLOOR_RUNS)
    with bench_database() as url, redis_prefix() as prefix:
        insert_schedules(url, WORKERS)
        with psycopg.connect(url, row_factory=dict_row) as conn:
            rows = conn.execute("SELECT * FROM schedules LIMIT %s", (WORKERS,)).fetchall()
        book = bookkeeping_floor(url, prefix, [Schedule.from_row(r) for r in rows], FLOOR_RUNS)
    floor = 1 / (1 / spawn + 1 / book.rate)
    records = [
        figure("floor: spawn `true` (bare subprocess.run), 10 threads", round(spawn), "runs/s", K),
        figure(
            "floor: bookkeeping (SET NX PX, INSERT, UPDATE, DEL), 10 threads",
            round(book.rate),
            "runs/s",
            FLOOR_RUNS,
        ),
        figure("floor: spawn and bookkeeping in series", round(floor), "runs/s", FLOOR_RUNS),
    ]
    small = _burst(n_other=0)
    loaded = _burst(n_other=N)
    for burst, label in ((small, "small daemon"), (loaded, f"{N:,} other schedules loaded")):
        p99 = percentile(burst.late_s, 99)
        name = f"{K} `true` due at once, MAX_WORKERS={WORKERS}, {label}"
        records += [
            figure(f"{name}: lateness p50", ms(percentile(burst.late_s, 50), 1), "ms", K),
            figure(f"{name}: lateness p99", ms(p99, 1), "ms", K, target="<= 1000 ms", ok=p99 <= 1),
            figure(
                f"{name}: lateness max", ms(max(burst.late_s, default=float("nan")), 1), "ms", K
            ),
            figure(
                f"{name}: never ran",
                burst.missed,
                "runs",
                K,
                target="0",
                ok=burst.missed == 0,
                note=f"statuses {burst.statuses}",
            ),
            figure(f"{name}: throughput", round(burst.rate), "runs/s", K),
            figure(
                f"{name}: throughput / floor",
                round(100 * burst.rate / floor, 1),
                "%",
                K,
                target=">= 50 %",
                ok=burst.rate / floor >= 0.5,
            ),
        ]
    ratio = percentile(loaded.late_s, 99) / max(percentile(small.late_s, 99), 1e-9)
    records.append(
        figure(
            f"lateness p99 with {N:,} loaded / small daemon",
            round(ratio, 2),
            "x",
            K,
            target="<= 1.2 x",
            ok=ratio <= 1.2,
        )
    )
    return records


def _burst(*, n_other: int) -> Burst:
    with bench_database() as url:
        if n_other:
            insert_load_mix(url, n_other)
        with daemon_subprocess(
            url, START_TIMEOUT, MAX_WORKERS=WORKERS, COMMAND_ALLOWLIST="true"
        ) as daemon:
            wait_next_run_complete(url, time.perf_counter() - daemon.started_after)
            fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD)
            with psycopg.connect(url, autocommit=True) as conn:
                ids = [
                    row[0]
                    for row in conn.execute(
                        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config,"
                        " job_type, payload) SELECT gen_random_uuid(), 'cmd-' || i || '.example',"
                        " 'once', %s, 'command', %s FROM generate_series(1, %s) AS i"
                        " RETURNING schedule_id",
                        (Jsonb({"run_at": fire_at.isoformat()}), Jsonb({"argv": ["true"]}), K),
                    ).fetchall()
                ]
            rows = wait_for_runs(url, ids, fire_at + timedelta(seconds=120))
    done = [r for r in rows if r["status"] == "completed"]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    last = max((r["completed_at"] for r in done), default=fire_at)
    return Burst(
        late_s=[(r["started_at"] - r["scheduled_for"]).total_seconds() for r in done],
        missed=len(ids) - len({r["schedule_id"] for r in done}),
        statuses=statuses,
        rate=len(done) / max((last - fire_at).total_seconds(), 1e-3),
    )


if __name__ == "__main__":
    print_table(run())
