"""The dashboard at 100,000 schedules and 1,000,000 runs (issue 15, acceptance 3):
`python -m bench.bench_dashboard`.

N varied schedules (100,000; 10,000 with BENCH_QUICK=1; `varied_schedules.py`), RUNS rows of
history over the last 60 days (1,000,000; 100,000 quick; `dashboard_data.py`: a few schedules
with thousands of runs, many with a few dozen, most with none) and AUDIT configuration changes.
Then `scheduler.py serve` on that database; a client logs in through the real form (GET /login
for its CSRF cookie and field, POST with an admin token) and times each page over HTTP, one
request at a time on one keep-alive connection: p50 and p99 of SAMPLES requests after one
untimed warm-up, each held to TARGET_MS.

Next, in this process, the store calls behind the pages, each the median of STORE_CALLS calls,
and EXPLAIN (ANALYZE, BUFFERS) of the statement each one ran, with its parameters: the plan's
execution time and shared buffers go in the figure's note, the whole plan to stdout.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg

from bench.bench_execution_pages import RecordingDatabase
from bench.common import (
    Record,
    bench_database,
    bench_environ,
    figure,
    median,
    ms,
    percentile,
    print_table,
    redis_prefix,
    scale,
)
from bench.dashboard_data import (
    counts,
    hot_schedule,
    idle_schedule,
    insert_audit,
    insert_history,
    vacuum_analyze,
)
from bench.http_load import still_serving
from bench.varied_schedules import insert_varied_schedules
from database.connection import DatabaseConnection
from services.store.history import JobHistory
from services.store.schedule_pages import MAX_PAGE, ScheduleFilter, page_schedules
from services.store.schedules import ScheduleRepository
from services.store.tokens import TokenStore
from services.web.dashboard.pages_main import NEXT_FIRES
from services.web.dashboard.pages_runs import FAILED, FAILURES
from services.web.dashboard.pages_schedules import HISTORY, PAGE_SIZE
from tests.support.api import ServeProcess

N = scale(100_000, 10_000)
RUNS = scale(1_000_000, 100_000)
AUDIT = 300
SAMPLES = 30
STORE_CALLS = 10
TARGET_MS = 300.0
DEEP = 0.75  # how far through the schedules the deep /schedules page starts
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Fixture:
    url: str
    hot_id: str
    hot_runs: int
    idle_id: str
    deep_cursor: str


def run() -> list[Record]:
    records: list[Record] = []
    with bench_database() as url:
        seconds = insert_varied_schedules(url, N)
        records.append(figure("varied schedules: COPY + VACUUM ANALYZE", round(seconds, 1), "s", N))
        seconds = insert_history(url, RUNS)
        insert_audit(url, AUDIT)
        vacuum_analyze(url)
        sizes = counts(url)
        records.append(
            figure(
                "history: INSERT + VACUUM ANALYZE",
                round(seconds, 1),
                "s",
                sizes["job_executions"],
                note=", ".join(f"{table}: {n:,} rows" for table, n in sizes.items()),
            )
        )
        fixture = _fixture(url)
        records += page_figures(fixture)
        records += store_figures(fixture)
    return records


def _fixture(url: str) -> Fixture:
    hot_id, hot_runs = hot_schedule(url)
    db = DatabaseConnection(url, min_size=1, max_size=1)
    try:  # the cursor of the page DEEP of the way through, by the store's own walk
        cursor = None
        for _ in range(int(N * DEEP) // MAX_PAGE):
            _, cursor = page_schedules(db, ScheduleFilter(), limit=MAX_PAGE, cursor=cursor)
    finally:
        db.close()
    assert cursor is not None
    return Fixture(url, hot_id, hot_runs, idle_schedule(url), cursor)


def pages(f: Fixture) -> list[tuple[str, str, dict[str, str]]]:
    """(label, path, query) of every page timed."""
    return [
        ("/ (overview)", "/", {}),
        ("/schedules", "/schedules", {}),
        ("/schedules?q=news", "/schedules", {"q": "news"}),
        ("/schedules?q=<no match>", "/schedules", {"q": "zzz-nothing"}),
        ("/schedules?tag=team-07", "/schedules", {"tag": "team-07"}),
        ("/schedules?status=failed", "/schedules", {"status": "failed"}),
        (f"/schedules?cursor=<{DEEP:.0%} deep>", "/schedules", {"cursor": f.deep_cursor}),
        (f"/schedules/<id> ({f.hot_runs:,} runs)", f"/schedules/{f.hot_id}", {}),
        ("/schedules/<id> (no runs)", f"/schedules/{f.idle_id}", {}),
        ("/runs", "/runs", {}),
        ("/audit", "/audit", {}),
    ]


@contextmanager
def serving_admin(url: str) -> Iterator[tuple[ServeProcess, str]]:
    """`scheduler.py serve` on `url`, and an admin token to log in with."""
    db = DatabaseConnection(url, min_size=1, max_size=1)
    try:
        _, token = TokenStore(db).create("bench-admin", "admin")
    finally:
        db.close()
    with redis_prefix() as prefix, tempfile.TemporaryDirectory(prefix="es_bench_") as tmp:
        env = {**bench_environ(url, prefix), "ENV_FILE": ""}
        server = ServeProcess(env, Path(tmp) / "serve.log").start()
        try:
            yield server, token
            still_serving(server)
        finally:
            server.stop()


def log_in(http: httpx.Client, token: str) -> None:
    """The login form as a browser uses it: its CSRF cookie and field, then the POST."""
    form = http.get("/login")
    found = CSRF.search(form.text)
    if form.status_code != 200 or found is None:
        raise RuntimeError(f"GET /login: {form.status_code}, no CSRF field")
    done = http.post("/login", data={"csrf_token": found.group(1), "token": token, "next": "/"})
    if done.status_code != 303 or "es_session" not in http.cookies:
        raise RuntimeError(f"POST /login: {done.status_code} {done.text[:200]}")


def timed_page(http: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = http.get(path, params=params)
    body = response.text
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or "<html" not in body:
        raise RuntimeError(f"GET {path} {params}: {response.status_code} {body[:300]}")
    return elapsed


def page_figures(f: Fixture) -> list[Record]:
    records: list[Record] = []
    target = f"< {TARGET_MS:g} ms"
    with serving_admin(f.url) as (server, token):
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            log_in(http, token)
            for label, path, params in pages(f):
                timed_page(http, path, params)  # warm-up
                times = [ms(timed_page(http, path, params)) for _ in range(SAMPLES)]
                for p in (50, 99):
                    value = percentile(times, p)
                    records.append(
                        figure(
                            f"GET {label}: p{p}",
                            value,
                            "ms",
                            SAMPLES,
                            target=target,
                            ok=value < TARGET_MS,
                        )
                    )
    return records


# -- the store calls behind the pages, and their plans --------------------------------------------


class PlanRecorder(RecordingDatabase):
    """RecordingDatabase that also remembers fetch_one's statement (execution_stats uses it)."""

    def fetch_one(
        self, query: str, params: Any = None, *, fast: bool = False, prepare: bool | None = None
    ) -> Any:
        self.last_query, self.last_params = query, params
        return super().fetch_one(query, params, fast=fast, prepare=prepare)


def store_calls(f: Fixture, db: PlanRecorder) -> list[tuple[str, Callable[[], object]]]:
    history = JobHistory(db)
    schedules = ScheduleRepository(db)
    hot = UUID(f.hot_id)
    return [
        ("overview: execution_stats(days=1)", lambda: history.execution_stats(days=1)),
        ("overview: failing(20)", lambda: schedules.failing(20)),
        (f"overview: next_due({NEXT_FIRES})", lambda: schedules.next_due(NEXT_FIRES)),
        (
            f"schedule page: page_executions(hot, limit={HISTORY})",
            lambda: history.page_executions(schedule_id=hot, limit=HISTORY),
        ),
        ("schedule page: daily_outcomes(hot, 35)", lambda: history.daily_outcomes(hot, 35)),
        (
            f"runs page: page_executions(failed, limit={FAILURES})",
            lambda: history.page_executions(statuses=FAILED, limit=FAILURES),
        ),
        ("runs page: get_running_executions()", history.get_running_executions),
        (
            "schedules: page(status=failed)",
            lambda: schedules.page(ScheduleFilter(last_status="failed"), limit=PAGE_SIZE),
        ),
        ("schedules: page(q=news)", lambda: schedules.page(ScheduleFilter(q="news"))),
        (
            "schedules: page(q=<no match>)",
            lambda: schedules.page(ScheduleFilter(q="zzz-nothing"), limit=PAGE_SIZE),
        ),
    ]


def _explain(url: str, query: str, params: Any) -> tuple[str, str]:
    """(a one-line summary, the whole plan) of EXPLAIN (ANALYZE, BUFFERS)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params, prepare=False)
        plan = "\n".join(str(row[0]) for row in rows.fetchall())
    top = next((line.strip() for line in plan.splitlines() if line.strip()), "")
    hits = re.search(r"Buffers: (shared [^\n]*)", plan)
    executed = re.search(r"Execution Time: ([\d.]+) ms", plan)
    summary = (
        f"{top.split('  (')[0][:70]}; {hits.group(1) if hits else 'no buffers'}; "
        f"executed in {executed.group(1) if executed else '?'} ms"
    )
    return summary, plan


def store_figures(f: Fixture) -> list[Record]:
    records: list[Record] = []
    db = PlanRecorder(f.url, min_size=1, max_size=1)
    try:
        for label, call in store_calls(f, db):
            call()
            times = []
            for _ in range(STORE_CALLS):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            assert db.last_query is not None
            summary, plan = _explain(f.url, db.last_query, db.last_params)
            print(f"\n-- {label}\n{plan}", flush=True)
            value = ms(median(times))
            records.append(figure(f"store {label}: median", value, "ms", RUNS, note=summary))
    finally:
        db.close()
    return records


if __name__ == "__main__":
    print_table(run())
