"""Overlap policies (issue 16): the cost per occurrence of queueing and starting under
buffer_all, next to skip. `python -m bench.bench_overlap`.

1,000 schedules, each with an "earlier run" holding its lock (a foreign token set in Redis).
One occurrence of each goes through `JobRunner.begin` at once, as the starter thread does:
- skip: the verdict is a `skipped` row per occurrence (the path before this issue);
- buffer_all: a `queued` row per occurrence (advisory lock, count, insert: one transaction each).
Then the locks are freed and the queue loop (`QueueStarter.step`, as the `overlap-queue` thread
calls it) starts every queued occurrence: heads read, locks taken in one round trip, each row
turned `running`, the no-op handler run, the result written; timed until all are completed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from uuid import uuid4

import psycopg
from psycopg.types.json import Jsonb

from bench.common import (
    NOOP_HANDLER,
    Record,
    bench_database,
    bench_settings,
    figure,
    insert_schedules,
    print_table,
    redis_prefix,
    scale,
    scheduler_logs,
)
from services.engine.handlers import register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from services.lock.keys import schedule_lock_key
from services.model.occurrence import Occurrence
from services.model.records import Schedule

N = scale(1000, 200)


def run() -> list[dict[str, object]]:
    register_python_handler(NOOP_HANDLER, lambda ctx: None)
    records: list[Record] = []
    for policy in ("skip", "buffer_all"):
        with bench_database() as url, redis_prefix() as prefix, scheduler_logs():
            records += _policy(url, prefix, policy)
    return records


def _policy(url: str, prefix: str, policy: str) -> list[Record]:
    insert_schedules(url, N)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE schedules SET time_config = time_config || %s",
            (Jsonb({"overlap_policy": policy, "max_buffered": 10}),),
        )
    daemon = EnhancedScheduler(settings=bench_settings(url, prefix, MAX_WORKERS=10))
    try:
        loaded = [
            daemon.loader.parse(Schedule.from_row(row))
            for row in daemon.db.fetch_all("SELECT * FROM schedules ORDER BY schedule_id")
        ]
        for item in loaded:
            daemon.engine.catalog.put(item)
        moment = datetime.now(UTC).replace(microsecond=0)
        holder = f"elsewhere|{uuid4()}|19700101T000000.000000Z|1"
        keys = [schedule_lock_key(item.schedule_id, prefix) for item in loaded]
        daemon.redis.mset(dict.fromkeys(keys, holder))
        occurrences = [Occurrence(i, moment, moment, job_id=str(i.schedule_id)) for i in loaded]
        started = time.perf_counter()
        daemon.runner.begin(occurrences)
        decided = time.perf_counter() - started
        status = "skipped" if policy == "skip" else "queued"
        count = daemon.db.fetch_value(
            "SELECT count(*) FROM job_executions WHERE status = %s", (status,)
        )
        if count != N:
            raise RuntimeError(f"{count} of {N} occurrences {status}")
        records = [
            figure(
                f"{policy}: decision per overlapping occurrence",
                round(decided / N * 1000, 3),
                "ms",
                N,
            )
        ]
        if policy == "skip":
            return records
        daemon.redis.delete(*keys)
        daemon.jobs.start(paused=True)
        daemon.pipeline.start()
        started = time.perf_counter()
        while True:
            daemon.engine.queue.step()
            done = daemon.db.fetch_value(
                "SELECT count(*) FROM job_executions WHERE status = 'completed'"
            )
            if done == N:
                break
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{done} of {N} queued occurrences completed after 120 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        records.append(
            figure(
                "buffer_all: start per queued occurrence (to completed)",
                round(elapsed / N * 1000, 3),
                "ms",
                N,
            )
        )
        records.append(
            figure("buffer_all: queued occurrences started", round(N / elapsed), "runs/s", N)
        )
        return records
    finally:
        daemon.shutdown()


if __name__ == "__main__":
    print_table(run())
