"""The REST API at 100,000 schedules (issue 14, acceptance 4): `python -m bench.bench_api`.

N varied schedules (100,000; 10,000 with BENCH_QUICK=1; `varied_schedules.py`) are inserted
once into a template database. Then:

- the daemon (`api_daemon.py`), on a copy of it: fire lateness of K=100 `once` schedules due
  at the same second (bench_engine's probe) on the quiet daemon, while 8 clients walk the list
  on the daemon's own HTTP port (sorted by created_at, then by next_run), and, as the control,
  while the same clients walk it on a separate `scheduler.py serve`; each condition in ROUNDS
  interleaved rounds, reported by its median batch; with the CPU of the daemon's process, of
  PostgreSQL and of the machine, and the wake-up delay of a sleeping thread in the daemon's
  process and in a process of its own (the GIL versus the cores);
- `scheduler.py serve` on the template itself, with a read token: GET /api/v1/schedules with
  limit=100, one request at a time on one keep-alive connection, p50 and p99 of SAMPLES
  requests, for each sort order, with a tag filter and a `q` filter, on the first page and on
  the page 3/4 of the way through (its cursor found by walking every page, 500 rows a page,
  which also checks that the walk returns each matching row exactly once); next to each, the
  same statement with the same parameters run directly through psycopg (the floor); then the
  store's page_schedules in this process, and /health over the same connection;
- list pages per second with 8 concurrent clients against `serve` (`http_load.py`: each on its
  own thread with its own keep-alive httpx.Client, in a process of their own), with the CPU of
  `serve` (/proc/<pid>/stat), of the database's backends, of the clients and of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.api_daemon import CLIENTS, LOADS, daemon_figures, load_figures
from bench.bench_execution_pages import RecordingDatabase
from bench.common import (
    Record,
    bench_database,
    clone_database,
    figure,
    ms,
    percentile,
    print_table,
    scale,
)
from bench.http_load import (
    LIST_PATH,
    WALK_PAGE,
    Walk,
    api_client,
    client_load,
    latencies,
    serving,
    still_serving,
    walk,
)
from bench.probes import backend_pids, cpu_window
from bench.varied_schedules import RARE_TAG, domain_of, insert_varied_schedules
from services.store.schedule_pages import ScheduleFilter, page_schedules
from tests.support.api import ServeProcess

N = scale(100_000, 10_000)
PAGE = 100
SAMPLES = scale(200, 30)  # per HTTP figure: p99 is then the second-slowest of 200
FLOOR_SAMPLES = scale(50, 10)
LOAD_SECONDS = scale(20.0, 4.0)
WARM_UP_SECONDS = 2.0
DEEP = 0.75  # how far through the matching rows the deep page starts


@dataclass(frozen=True)
class Case:
    label: str
    params: dict[str, Any]
    deep: bool = False
    where: ScheduleFilter = field(default_factory=ScheduleFilter)

    @property
    def sort(self) -> str:
        return str(self.params.get("sort", "created_at"))


def cases() -> list[Case]:
    common_tag = ScheduleFilter(tags=("team-07",))
    rare_tag = ScheduleFilter(tags=(RARE_TAG,))
    news = ScheduleFilter(q="news")
    one_site = domain_of(N // 2)
    out = []
    for sort in ("created_at", "domain", "next_run"):
        out += [
            Case(f"sort={sort}, first page", {"sort": sort}),
            Case(f"sort={sort}, deep page", {"sort": sort}, deep=True),
        ]
    return [
        *out,
        Case("tag=team-07 (5 %), first page", {"tag": "team-07"}, where=common_tag),
        Case("tag=team-07 (5 %), deep page", {"tag": "team-07"}, deep=True, where=common_tag),
        Case(f"tag={RARE_TAG} (0.5 %), first page", {"tag": RARE_TAG}, where=rare_tag),
        Case(
            f"tag={RARE_TAG} (0.5 %), sort=next_run",
            {"tag": RARE_TAG, "sort": "next_run"},
            where=rare_tag,
        ),
        Case("q=news (9 %), first page", {"q": "news"}, where=news),
        Case("q=news (9 %), deep page", {"q": "news"}, deep=True, where=news),
        Case("q=<one domain> (1 row)", {"q": one_site}, where=ScheduleFilter(q=one_site)),
    ]


def run() -> list[Record]:
    records: list[Record] = []
    with bench_database() as template:
        seconds = insert_varied_schedules(template, N)
        records.append(figure("varied schedules: COPY + VACUUM ANALYZE", round(seconds, 1), "s", N))
        # The daemon first: nothing is due within ~25 minutes of the insert.
        with clone_database(template) as url:
            records += daemon_figures(url, N)
        records += serve_figures(template)
    return records


def serve_figures(url: str) -> list[Record]:
    records: list[Record] = []
    with serving(url) as (server, token), api_client(server.url, token) as http:
        db = RecordingDatabase(url, min_size=1, max_size=1)
        walks: dict[str, Walk] = {}
        try:
            for case in cases():
                records += case_figures(case, http, db, url, walks)
            records += layer_figures(http, db)
        finally:
            db.close()
        records += [
            figure(
                f"walk of every page, {key} (limit {WALK_PAGE})",
                round(w.seconds, 2),
                "s",
                w.rows,
                target="each row once",
                ok=w.rows == w.distinct,
            )
            for key, w in walks.items()
        ]
        for name, params in LOADS.items():
            records += throughput(server, token, url, name, params)
    return records


def _timed(call: Callable[[], object], n: int) -> list[float]:
    call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def case_figures(
    case: Case, http: Any, db: RecordingDatabase, url: str, walks: dict[str, Walk]
) -> list[Record]:
    params: dict[str, Any] = {**case.params, "limit": PAGE}
    cursor = None
    if case.deep:
        key = ", ".join(f"{k}={v}" for k, v in case.params.items())
        if key not in walks:
            walks[key] = walk(http, case.params)
        cursor = walks[key].cursor_at(DEEP)
        if cursor is not None:
            params["cursor"] = cursor
    http_s = latencies(http, LIST_PATH, params, SAMPLES)
    # The statement the API ran, with its parameters, through psycopg alone: the floor.
    page_schedules(db, case.where, sort=case.sort, limit=PAGE, cursor=cursor)
    query, query_params = db.last_query, db.last_params
    assert query is not None
    with psycopg.connect(url, autocommit=True) as conn:  # unprepared, as the store runs it
        sql_s = _timed(
            lambda: conn.execute(query, query_params, prepare=False).fetchall(), FLOOR_SAMPLES
        )
    name = f"GET list limit={PAGE}, {case.label}"
    return [
        figure(f"{name}: p50", ms(percentile(http_s, 50)), "ms", N),
        figure(f"{name}: p99", ms(percentile(http_s, 99)), "ms", N),
        figure(f"  SQL alone ({case.label}): p50", ms(percentile(sql_s, 50)), "ms", N),
    ]


def layer_figures(http: Any, db: RecordingDatabase) -> list[Record]:
    """What each layer adds to the first page of the default sort."""
    store_s = _timed(lambda: page_schedules(db, ScheduleFilter(), limit=PAGE), FLOOR_SAMPLES)
    health_s = latencies(http, "/health", {}, SAMPLES)
    return [
        figure(
            f"store page_schedules in-process (SQL, rows, Schedule), limit={PAGE}: p50",
            ms(percentile(store_s, 50)),
            "ms",
            N,
        ),
        figure(
            "GET /health (trivial endpoint, same connection): p50",
            ms(percentile(health_s, 50)),
            "ms",
            SAMPLES,
        ),
        figure("GET /health: p99", ms(percentile(health_s, 99)), "ms", SAMPLES),
    ]


def throughput(
    server: ServeProcess, token: str, url: str, name: str, params: dict[str, Any]
) -> list[Record]:
    assert server.process is not None
    with ExitStack() as stack:
        stack.callback(still_serving, server)  # a failed load says first if serve is gone
        load = stack.enter_context(client_load(server.url, token, params, clients=CLIENTS))
        time.sleep(WARM_UP_SECONDS)
        groups = {
            "serve": [server.process.pid],
            "postgres": backend_pids(url),
            "clients": [load.pid],
        }
        with cpu_window(groups) as cpu:
            start = time.monotonic()
            time.sleep(LOAD_SECONDS)
            end = time.monotonic()
    assert load.result is not None
    served = load.result.window(start, end)
    return load_figures(f"{CLIENTS} clients, {name}, against serve", served, end - start, cpu, N)


if __name__ == "__main__":
    print_table(run())
