"""Dispatch to JetStream (issue 18, acceptance 4): occurrences per second that the run pipeline
hands to NATS JetStream, next to the bookkeeping floor.

`python -m bench.bench_dispatch` (`make bench-dispatch`); also part of `make bench`.
- The bookkeeping floor: the four round trips of a run (Redis SET NX PX, INSERT, UPDATE, Redis
  DEL) by a bare loop on MAX_WORKERS=10 threads (bench_engine's floor, measured in this run).
- The run pipeline with a no-op python handler, and with `nats` jobs publishing to a stream of a
  private nats-server (-js, its own port and store), each N occurrences due at once, timed until
  the last is recorded; every message must be in the stream once.
- The JetStream ack floor: the same N publishes from one asyncio client, 10 in flight at a time,
  with no scheduler at all.
"""

from __future__ import annotations

import asyncio
import time

import nats
import psycopg
from psycopg.types.json import Jsonb

from bench.bench_engine import WORKERS, Rate, _pipeline_path, bookkeeping_floor
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
from services.model.occurrence import LoadedSchedule
from services.model.records import Schedule
from tests.support.nats_server import NatsServer

RUNS = scale(3000, 300)
STREAM, SUBJECT = "BENCH", "bench.dispatch"


def run() -> list[dict[str, object]]:
    register_python_handler(NOOP_HANDLER, lambda ctx: None)
    with NatsServer() as server:
        server.add_stream(STREAM, [f"{SUBJECT}.>", SUBJECT])
        with bench_database() as url, redis_prefix() as prefix, scheduler_logs():
            insert_schedules(url, 2 * RUNS)
            with psycopg.connect(url, autocommit=True) as conn:
                # The second half becomes nats jobs (insert_schedules makes python no-ops).
                conn.execute(
                    "UPDATE schedules SET job_type = 'nats', payload = %s WHERE schedule_id IN "
                    "(SELECT schedule_id FROM schedules ORDER BY schedule_id LIMIT %s)",
                    (Jsonb({"subject": SUBJECT}), RUNS),
                )
            floor, noop = _python_side(url, prefix)
            # _pipeline_path fires every occurrence at the current second and counts its rows
            # by it: the nats batch must not share the no-op batch's second.
            time.sleep(1.0 - time.time() % 1.0)
            nats_rate = _nats_side(url, prefix, server)
        sent = len(server.stream_messages(STREAM))
        if sent != RUNS:
            raise RuntimeError(f"{sent} messages in the stream for {RUNS} nats runs")
        server.run(lambda nc: nc.jetstream().purge_stream(STREAM))
        ack_floor = _ack_floor(server)
    floor_label = "floor (SET NX PX, INSERT, UPDATE, DEL)"
    pipeline = f"run pipeline, MAX_WORKERS={WORKERS}, all due at once"
    return [
        figure(f"{floor_label}, {WORKERS} threads", round(floor.rate), "runs/s", RUNS),
        figure(f"{pipeline}: no-op python job", round(noop.rate), "runs/s", RUNS),
        figure(f"{pipeline}: nats job (JetStream ack)", round(nats_rate.rate), "runs/s", RUNS),
        figure(
            "nats dispatch / floor",
            round(100 * nats_rate.rate / floor.rate, 1),
            "%",
            RUNS,
        ),
        figure(
            "nats dispatch / no-op python job",
            round(100 * nats_rate.rate / noop.rate, 1),
            "%",
            RUNS,
        ),
        figure("JetStream ack floor, 1 client, 10 in flight", round(ack_floor), "msgs/s", RUNS),
        figure(f"{pipeline}: nats job, client CPU per run", nats_rate.cpu_ms, "ms", RUNS),
        figure(f"{pipeline}: no-op python job, client CPU per run", noop.cpu_ms, "ms", RUNS),
    ]


def _loaded(daemon: EnhancedScheduler, job_type: str) -> list[LoadedSchedule]:
    rows = daemon.db.fetch_all(
        "SELECT * FROM schedules WHERE job_type = %s ORDER BY schedule_id", (job_type,)
    )
    return [daemon.loader.parse(Schedule.from_row(row)) for row in rows]


def _python_side(url: str, prefix: str) -> tuple[Rate, Rate]:
    daemon = EnhancedScheduler(settings=bench_settings(url, prefix, MAX_WORKERS=WORKERS))
    try:
        loaded = _loaded(daemon, "python")
        floor = bookkeeping_floor(url, prefix, [item.schedule for item in loaded[:WORKERS]], RUNS)
        noop = _pipeline_path(daemon, loaded)
    finally:
        daemon.shutdown()
    return floor, noop


def _nats_side(url: str, prefix: str, server: NatsServer) -> Rate:
    settings = bench_settings(
        url,
        prefix,
        MAX_WORKERS=WORKERS,
        NATS_URL=server.url,
        NATS_SUBJECT_ALLOWLIST=SUBJECT,
    )
    daemon = EnhancedScheduler(settings=settings)
    try:
        return _pipeline_path(daemon, _loaded(daemon, "nats"))
    finally:
        daemon.shutdown()


def _ack_floor(server: NatsServer) -> float:
    async def main() -> float:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        gate = asyncio.Semaphore(10)

        async def one(i: int) -> None:
            async with gate:
                await js.publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": f"floor-{i}"})

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(RUNS)))
        elapsed = time.perf_counter() - started
        await nc.close()
        return RUNS / elapsed

    return asyncio.run(main())


def main() -> None:
    records: list[Record] = [{"module": "bench_dispatch", **r} for r in run()]
    print_table(records)


if __name__ == "__main__":
    main()
