"""Dispatch to Celery (issue 18): occurrences per second that the run pipeline hands to the
machine's RabbitMQ as Celery tasks (publisher confirms on), next to the bookkeeping floor.

`python -m bench.bench_celery` (`make bench-celery`); also part of `make bench`. Runs in a vhost
of its own, deleted afterwards, with no worker: the figure is the scheduler's side, up to the
broker's confirm.
- The bookkeeping floor and the no-op python job through the pipeline, as in bench_dispatch.
- The run pipeline with `celery` jobs, N occurrences due at once, MAX_WORKERS=10, timed until the
  last is recorded; the queue must then hold exactly N messages.
- The confirm floor: the same N `send_task` calls with confirms from 10 bare threads, through the
  same handler, with no scheduler at all.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from bench.bench_dispatch import _loaded, _python_side
from bench.bench_engine import WORKERS, Rate, _pipeline_path
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
from services.engine.handlers import CeleryHandler, register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from tests.support.celery_worker import rabbit_vhost
from tests.support.handler_funcs import make_context

RUNS = scale(3000, 300)
QUEUE, TASK = "bench-dispatch", "bench.tasks.noop"


def run() -> list[dict[str, object]]:
    register_python_handler(NOOP_HANDLER, lambda ctx: None)
    with rabbit_vhost() as broker:
        with bench_database() as url, redis_prefix() as prefix, scheduler_logs():
            insert_schedules(url, 2 * RUNS)
            with psycopg.connect(url, autocommit=True) as conn:
                # The second half becomes celery jobs (insert_schedules makes python no-ops).
                conn.execute(
                    "UPDATE schedules SET job_type = 'celery', payload = %s WHERE schedule_id IN "
                    "(SELECT schedule_id FROM schedules ORDER BY schedule_id LIMIT %s)",
                    (Jsonb({"task": TASK, "queue": QUEUE}), RUNS),
                )
            floor, noop = _python_side(url, prefix)
            # _pipeline_path counts the rows of the second it fired at: not the no-op batch's.
            time.sleep(1.0 - time.time() % 1.0)
            celery_rate = _celery_side(url, prefix, broker)
        queued = _queue_depth(broker)
        if queued != RUNS:
            raise RuntimeError(f"{queued} messages in {QUEUE} for {RUNS} celery runs")
        confirm_floor = _confirm_floor(broker)
    pipeline = f"run pipeline, MAX_WORKERS={WORKERS}, all due at once"
    return [
        figure(
            f"floor (SET NX PX, INSERT, UPDATE, DEL), {WORKERS} threads",
            round(floor.rate),
            "runs/s",
            RUNS,
        ),
        figure(f"{pipeline}: no-op python job", round(noop.rate), "runs/s", RUNS),
        figure(f"{pipeline}: celery job (broker confirm)", round(celery_rate.rate), "runs/s", RUNS),
        figure("celery dispatch / floor", round(100 * celery_rate.rate / floor.rate, 1), "%", RUNS),
        figure(
            f"send_task confirm floor, {WORKERS} threads, no scheduler",
            round(confirm_floor),
            "msgs/s",
            RUNS,
        ),
        figure(f"{pipeline}: celery job, client CPU per run", celery_rate.cpu_ms, "ms", RUNS),
    ]


def _celery_side(url: str, prefix: str, broker: str) -> Rate:
    settings = bench_settings(
        url, prefix, MAX_WORKERS=WORKERS, CELERY_BROKER_URL=broker, CELERY_TASK_ALLOWLIST="bench"
    )
    daemon = EnhancedScheduler(settings=settings)
    try:
        return _pipeline_path(daemon, _loaded(daemon, "celery"))
    finally:
        daemon.shutdown()


def _queue_depth(broker: str) -> int:
    vhost = urlsplit(broker).path.lstrip("/")
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in listing.splitlines():
        name, _, count = line.partition("\t")
        if name == QUEUE:
            return int(count)
    return 0


def _confirm_floor(broker: str) -> float:
    handler = CeleryHandler(
        broker_url=broker, result_backend=None, task_allowlist=["bench"], timeout=10.0
    )
    contexts = [
        make_context({"task": TASK, "queue": f"{QUEUE}-floor"}, job_type="celery")
        for _ in range(RUNS + 1)
    ]
    try:
        handler.run(contexts.pop())  # connect first: the figure is the sends
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(handler.run, contexts))
        elapsed = time.perf_counter() - started
    finally:
        handler.close()
    failed = [o for o in outcomes if o.status != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} floor sends failed: {failed[0].error_message}")
    return RUNS / elapsed


def main() -> None:
    records: list[Record] = [{"module": "bench_celery", **r} for r in run()]
    print_table(records)


if __name__ == "__main__":
    main()
