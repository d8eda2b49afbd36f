"""Pages and statistics of job_executions at 200,000 rows: `python -m bench.bench_execution_pages`.

200,000 rows (20,000 with BENCH_QUICK=1) of 500 schedules over 30 days, in runs of 20 that share
one started_at (a batch that one claim statement started), with statuses, triggers and instances
mixed as a busy install's would be. Each figure is the median of 20 calls through `JobHistory`:
the first page of 50 and the page 150,000 rows deep (by its cursor), the same for one schedule,
a status filter, and `execution_stats` over 7 and 30 days. The plan of each paging query (EXPLAIN
of the same statement with the same parameters) must read an index in key order and sort at
most the rows that share a started_at: no sequential scan and no full sort (`ok` says so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from bench.common import Record, bench_database, figure, median, scale
from database.connection import DatabaseConnection
from database.queries import load_queries
from services.store.history import JobHistory

ROWS = scale(200_000, 20_000)
CALLS = 20

POPULATE = """
INSERT INTO schedules (domain_config_id, domain, frequency, time_config)
SELECT gen_random_uuid(), 'd' || g || '.example.com', 'interval', '{"seconds": 60}'
FROM generate_series(1, 500) AS g;

INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id, status, started_at,
    completed_at, duration_seconds, scheduled_for, instance_id, trigger, metadata)
SELECT s.schedule_id, 'job', 'example.com', gen_random_uuid(),
    CASE WHEN q.g > {rows} - 10 THEN 'running'
         WHEN q.r < 0.85 THEN 'completed' WHEN q.r < 0.93 THEN 'failed'
         WHEN q.r < 0.97 THEN 'skipped' WHEN q.r < 0.98 THEN 'timed_out'
         WHEN q.r < 0.99 THEN 'abandoned' ELSE 'cancelled' END,
    q.at, q.at + interval '2 seconds', random() * 10, q.at + q.g * interval '1 microsecond',
    'instance-' || (q.g % 4),
    CASE WHEN q.r2 < 0.90 THEN 'schedule' WHEN q.r2 < 0.95 THEN 'retry'
         WHEN q.r2 < 0.98 THEN 'manual' ELSE 'catchup' END,
    jsonb_build_object('returncode', 0, 'stdout_tail', repeat('x', 150), 'stderr_tail', '')
FROM (SELECT g, random() AS r, random() AS r2,
             now() - interval '30 days' + (g / 20) * (interval '30 days' / ({rows} / 20)) AS at
      FROM generate_series(1, {rows}) AS g) AS q
JOIN (SELECT row_number() OVER () AS n, schedule_id FROM schedules) AS s ON s.n = 1 + q.g % 500
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _plan(url: str, params: dict[str, Any]) -> tuple[bool, str]:
    """Whether the paging statement's plan reads an index in order, and its node types."""
    statement = load_queries("job_history")["page_executions"]
    with psycopg.connect(url, autocommit=True) as conn:
        (row,) = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}", params).fetchall()
    plan = (row[0] if isinstance(row[0], list) else json.loads(row[0]))[0]["Plan"]
    nodes = list(_nodes(plan))
    kinds = [" on ".join(filter(None, (n["Node Type"], n.get("Index Name")))) for n in nodes]
    indexed = any(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in nodes)
    full_sort = any(n["Node Type"] in ("Seq Scan", "Sort") for n in nodes)
    return indexed and not full_sort, " > ".join(kinds)


def _timed(call: Callable[[], object]) -> float:
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


class RecordingDatabase(DatabaseConnection):
    """The real pool, remembering the statement and parameters of the last fetch_all (to
    EXPLAIN it, or to run it again without the store)."""

    last_query: str | None = None
    last_params: dict[str, Any] | None = None

    def fetch_all(
        self, query: str, params: Any = None, *, fast: bool = False, prepare: bool | None = None
    ) -> list[Any]:
        self.last_query, self.last_params = query, params
        return super().fetch_all(query, params, fast=fast, prepare=prepare)


def run() -> list[Record]:
    records: list[Record] = []
    with bench_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POPULATE.replace("{rows}", str(ROWS)).encode())
            conn.execute("VACUUM ANALYZE job_executions")  # as autovacuum would have by now
            (sid,) = conn.execute("SELECT schedule_id FROM schedules LIMIT 1").fetchone() or ()
        db = RecordingDatabase(url, min_size=1, max_size=1)  # one connection: prepared plans
        history = JobHistory(db)
        deep_at = ROWS * 3 // 4
        deep = None
        for _ in range(deep_at // 500):
            _, deep = history.page_executions(limit=500, cursor=deep)
        _, deep_one = history.page_executions(schedule_id=sid, limit=ROWS // 500 * 3 // 4)
        cases: list[tuple[str, dict[str, Any], bool]] = [
            ("first page", {}, True),
            (f"page {deep_at:,} rows deep", {"cursor": deep}, True),
            ("one schedule, first page", {"schedule_id": sid}, True),
            ("one schedule, deep page", {"schedule_id": sid, "cursor": deep_one}, True),
            ("status failed, deep page", {"statuses": ["failed"], "cursor": deep}, False),
        ]
        for name, arguments, must_index in cases:
            ms = _timed(lambda a=arguments: history.page_executions(limit=50, **a))  # type: ignore[misc]
            indexed, nodes = _plan(url, db.last_params or {})
            records.append(
                figure(
                    f"execution page of 50: {name}",
                    round(ms, 2),
                    "ms",
                    ROWS,
                    target="index in key order" if must_index else None,
                    ok=indexed if must_index else None,
                    note=nodes,
                )
            )
        for days in (7, 30):
            ms = _timed(lambda d=days: history.execution_stats(days=d))  # type: ignore[misc]
            records.append(figure(f"execution_stats, {days} days", round(ms, 2), "ms", ROWS))
        db.close()
    return records


if __name__ == "__main__":
    from bench.common import print_table

    print_table(run())
