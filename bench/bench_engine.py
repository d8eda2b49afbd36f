"""The execution engine (issue 5): no-op runs per second, and fire lateness of K due at once.

`python -m bench.bench_engine`.
- Throughput: `JobRunner.run(Occurrence(...))` (lock, claim INSERT, python no-op handler, fenced
  UPDATE, release) from 1 and from MAX_WORKERS=10 threads, each thread on its own schedule with
  distinct occurrences; and the same runs queued at once into the daemon's RunPipeline (how due
  occurrences really run: locks and claims per batch, results per batch); next to the floor of
  the same four round trips (Redis SET NX PX, INSERT job_executions, UPDATE job_executions,
  Redis DEL) done by a bare loop in the same run.
- Lateness: K `once` schedules due at the same second, fired by an in-process EnhancedScheduler
  (MAX_WORKERS=10); lateness = handler start (seen by the handler) minus the scheduled time, and
  `job_executions.started_at - scheduled_for` next to it; every schedule must have run once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from bench.common import (
    NOOP_HANDLER,
    REDIS_URL,
    Record,
    bench_database,
    bench_settings,
    figure,
    insert_schedules,
    ms,
    percentile,
    print_table,
    redis_prefix,
    scale,
    scheduler_logs,
)
from services.engine.handlers import register_python_handler
from services.enhanced_scheduler import EnhancedScheduler
from services.lock.client import create_redis_client
from services.model.occurrence import LoadedSchedule, Occurrence
from services.model.records import Schedule

WORKERS = 10
RUNS = scale(3000, 300)
WARM_UP = 10  # runs per thread before measuring: connections, prepared statements, scripts
LATENESS_K = (100, 1000)
STAMP_HANDLER = "bench-stamp"
LEAD_SECONDS = 6.0  # from inserting the K schedules to their common fire time


def run() -> list[dict[str, object]]:
    register_python_handler(NOOP_HANDLER, lambda ctx: None)
    records: list[Record] = []
    with bench_database() as url, redis_prefix() as prefix, scheduler_logs():
        records += throughput(url, prefix)
    for k in LATENESS_K:
        with bench_database() as url, redis_prefix() as prefix, scheduler_logs():
            records += lateness(url, prefix, k)
    return records


# -- throughput ---------------------------------------------------------------------------------


def throughput(url: str, prefix: str) -> list[Record]:
    insert_schedules(url, RUNS)
    daemon = EnhancedScheduler(settings=bench_settings(url, prefix, MAX_WORKERS=WORKERS))
    few = RUNS // 3
    try:
        loaded = [
            daemon.loader.parse(Schedule.from_row(row))
            for row in daemon.db.fetch_all("SELECT * FROM schedules ORDER BY schedule_id")
        ]
        floor_1 = bookkeeping_floor(url, prefix, [item.schedule for item in loaded[:1]], few)
        floor_n = bookkeeping_floor(url, prefix, [item.schedule for item in loaded[:WORKERS]], RUNS)
        full_1 = _full_path(daemon, loaded[:1], few)
        full_n = _full_path(daemon, loaded[:WORKERS], RUNS)
        piped = _pipeline_path(daemon, loaded)
    finally:
        daemon.shutdown()
    floor = "floor (SET NX PX, INSERT, UPDATE, DEL)"
    full = "single-occurrence path (JobRunner.run, no-op python handler)"
    pipeline = "full path through the daemon's run pipeline (all due at once)"
    return [
        figure(f"{floor}, 1 thread", round(floor_1.rate), "runs/s", few),
        figure(f"{floor}, {WORKERS} threads", round(floor_n.rate), "runs/s", RUNS),
        figure(f"{full}, 1 thread", round(full_1.rate), "runs/s", few),
        figure(f"{full}, {WORKERS} threads", round(full_n.rate), "runs/s", RUNS),
        figure(f"{pipeline}, MAX_WORKERS={WORKERS}", round(piped.rate), "runs/s", RUNS),
        # JobRunner.run() alone is the single-occurrence path (manual triggers, rechecks); due
        # occurrences take the pipeline, whose ratio is the figure.
        figure(
            f"single-occurrence path / floor, {WORKERS} threads",
            round(100 * full_n.rate / floor_n.rate, 1),
            "%",
            RUNS,
        ),
        figure(
            f"run pipeline / floor, MAX_WORKERS={WORKERS}",
            round(100 * piped.rate / floor_n.rate, 1),
            "%",
            RUNS,
            target=">= 50 %",
            ok=piped.rate / floor_n.rate >= 0.5,
        ),
        figure(
            "single-occurrence path / floor, 1 thread",
            round(100 * full_1.rate / floor_1.rate, 1),
            "%",
            few,
        ),
        # CPU of this (client) process per run, PostgreSQL and Redis not included: with the GIL,
        # this bounds runs/s whatever the number of workers, and it barely depends on the load.
        figure(f"{floor}: client CPU per run", floor_n.cpu_ms, "ms", RUNS),
        figure(f"{full}: client CPU per run", full_n.cpu_ms, "ms", RUNS),
        figure(f"{pipeline}: client CPU per run", piped.cpu_ms, "ms", RUNS),
    ]


@dataclass(frozen=True)
class Rate:
    rate: float  # runs per second (wall)
    cpu_ms: float  # CPU time of this process per run


def _in_threads(count: int, work: Callable[[int], None]) -> tuple[float, float]:
    """Run work(i) on `count` threads at once; (wall, process CPU) seconds from the common
    start to the end of the last."""
    barrier = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), name=f"bench-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if errors:
        raise errors[0]
    return elapsed, cpu


def bookkeeping_floor(url: str, prefix: str, schedules: list[Schedule], runs: int) -> Rate:
    """Runs per second of the bare four round trips, one connection and one schedule a thread."""
    per_thread = runs // len(schedules)
    base = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=len(schedules))
    client = create_redis_client(REDIS_URL, max_connections=len(schedules) + 2)
    conns = [psycopg.connect(url, autocommit=True) for _ in schedules]

    def one(conn: psycopg.Connection[Any], schedule: Schedule, key: str, moment: datetime) -> None:
        execution_id = uuid4()
        if not client.set(key, str(execution_id), nx=True, px=60_000):
            raise RuntimeError(f"floor lock {key} taken")
        conn.execute(
            "INSERT INTO job_executions (execution_id, schedule_id, job_id, domain,"
            " domain_config_id, status, started_at, scheduled_for, instance_id, fencing_token,"
            " trigger) VALUES (%s, %s, %s, %s, %s, 'running', now(), %s, 'bench',"
            " nextval('job_fencing_seq'), 'schedule')",
            (
                execution_id,
                schedule.schedule_id,
                str(schedule.schedule_id),
                schedule.domain,
                schedule.domain_config_id,
                moment,
            ),
        )
        conn.execute(
            "UPDATE job_executions SET status = 'completed', completed_at = now(),"
            " duration_seconds = 0 WHERE execution_id = %s",
            (execution_id,),
        )
        client.delete(key)

    def work(i: int, count: int, offset: int) -> None:
        schedule = schedules[i]
        key = f"{prefix}floor:{schedule.schedule_id}"
        for k in range(count):
            one(conns[i], schedule, key, base + timedelta(seconds=offset + k))

    try:
        _in_threads(len(schedules), lambda i: work(i, WARM_UP, 0))
        elapsed, cpu = _in_threads(len(schedules), lambda i: work(i, per_thread, WARM_UP))
    finally:
        for conn in conns:
            conn.close()
        client.close()
    done = per_thread * len(schedules)
    return Rate(done / elapsed, round(cpu / done * 1000, 3))


def _full_path(daemon: EnhancedScheduler, loaded: list[LoadedSchedule], runs: int) -> Rate:
    per_thread = runs // len(loaded)
    base = datetime(2011, 1, 1, tzinfo=UTC) + timedelta(days=len(loaded))
    failures: list[str] = []

    def work(i: int, count: int, offset: int) -> None:
        for k in range(count):
            moment = base + timedelta(seconds=offset + k)
            occ = Occurrence(
                loaded[i], moment, datetime.now(UTC), job_id=str(loaded[i].schedule_id)
            )
            report = daemon.runner.run(occ)
            if report.status != "completed":
                failures.append(f"{report.status}: {report.detail}")

    _in_threads(len(loaded), lambda i: work(i, WARM_UP, 0))
    elapsed, cpu = _in_threads(len(loaded), lambda i: work(i, per_thread, WARM_UP))
    if failures:
        raise RuntimeError(f"{len(failures)} runs did not complete, e.g. {failures[0]}")
    done = per_thread * len(loaded)
    return Rate(done / elapsed, round(cpu / done * 1000, 3))


def _pipeline_path(daemon: EnhancedScheduler, loaded: list[LoadedSchedule]) -> Rate:
    """One occurrence of each schedule, all queued at once into the daemon's RunPipeline (as
    APScheduler's executor does when they are due together); timed until the last is recorded."""
    daemon.jobs.start(paused=True)  # the worker pool
    daemon.pipeline.start()
    moment = datetime.now(UTC).replace(microsecond=0)
    left = len(loaded)
    all_done = threading.Event()
    count_lock = threading.Lock()

    def done() -> None:
        nonlocal left
        with count_lock:
            left -= 1
            if left == 0:
                all_done.set()

    started, cpu = time.perf_counter(), time.process_time()
    for item in loaded:
        occ = Occurrence(item, moment, datetime.now(UTC), job_id=str(item.schedule_id))
        daemon.pipeline.submit(occ, done)
    if not all_done.wait(120):
        raise RuntimeError(f"{left} of {len(loaded)} occurrences not done after 120 s")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    completed = int(
        daemon.db.fetch_value(
            "SELECT count(*) FROM job_executions WHERE status = 'completed' AND scheduled_for = %s",
            (moment,),
        )
    )
    if completed != len(loaded):
        raise RuntimeError(f"{completed} of {len(loaded)} pipeline runs completed")
    return Rate(len(loaded) / elapsed, round(cpu / len(loaded) * 1000, 3))


# -- fire lateness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lateness:
    """One batch of K `once` schedules due at the same second, as it ran."""

    k: int
    handler_s: list[float]  # handler start (seen by the handler) - scheduled, one per run
    db_s: list[float]  # job_executions.started_at - scheduled_for, one per finished run
    missed: int  # schedules of the batch that did not complete
    other_statuses: list[str]  # statuses other than completed among the batch's rows
    ready_late_s: float | None = None  # the daemon was ready only this long after fire time


class LatenessProbe:
    """K `once` schedules whose python handler notes how late it started; one probe can fire
    several batches into the same daemon (each due at its own second)."""

    def __init__(self) -> None:
        self._seen: dict[UUID, float] = {}
        self._lock = threading.Lock()
        register_python_handler(STAMP_HANDLER, self._stamp)

    def _stamp(self, ctx: Any) -> None:
        late = (datetime.now(UTC) - ctx.scheduled_for).total_seconds()
        with self._lock:
            self._seen[ctx.schedule_id] = late

    def insert(self, url: str, k: int, fire_at: datetime) -> list[UUID]:
        """K enabled `once` schedules due at `fire_at`; their ids."""
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "INSERT INTO schedules (domain_config_id, domain, frequency, time_config,"
                " job_type, payload) SELECT gen_random_uuid(), 'late-' || i || '.example.com',"
                " 'once', %s, 'python', %s FROM generate_series(1, %s) AS i"
                " RETURNING schedule_id",
                (Jsonb({"run_at": fire_at.isoformat()}), Jsonb({"callable": STAMP_HANDLER}), k),
            ).fetchall()
        return [row[0] for row in rows]

    def collect(
        self, url: str, ids: list[UUID], fire_at: datetime, *, ready: datetime | None = None
    ) -> Lateness:
        """Wait (up to a minute after fire time) until every schedule of the batch ran."""
        rows = wait_for_runs(url, ids, fire_at + timedelta(seconds=60))
        done = [r for r in rows if r["status"] == "completed"]
        with self._lock:
            handler = [self._seen[i] for i in ids if i in self._seen]
        late = None if ready is None or ready <= fire_at else (ready - fire_at).total_seconds()
        return Lateness(
            k=len(ids),
            handler_s=handler,
            db_s=[(r["started_at"] - r["scheduled_for"]).total_seconds() for r in done],
            missed=len(ids) - len({r["schedule_id"] for r in done}),
            other_statuses=sorted({r["status"] for r in rows} - {"completed"}),
            ready_late_s=late,
        )

    def fire(self, url: str, k: int, *, lead: float = LEAD_SECONDS) -> Lateness:
        """A batch into a daemon that is already running: K schedules inserted now, due
        `lead` seconds later (the watcher loads them on their NOTIFY meanwhile)."""
        fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        return self.collect(url, self.insert(url, k, fire_at), fire_at)


def lateness(url: str, prefix: str, k: int) -> list[Record]:
    """K schedules in the table before the daemon starts, due LEAD_SECONDS after the insert."""
    probe = LatenessProbe()
    fire_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD_SECONDS)
    ids = probe.insert(url, k, fire_at)
    daemon = EnhancedScheduler(settings=bench_settings(url, prefix, MAX_WORKERS=WORKERS))
    try:
        daemon.start()
        result = probe.collect(url, ids, fire_at, ready=datetime.now(UTC))
    finally:
        daemon.shutdown()
    return lateness_figures(result)


def lateness_figures(result: Lateness, label: str = "", *, note: str | None = None) -> list[Record]:
    """The figures of a batch; `label` says under what conditions it ran (", under load"),
    `note` goes with its p99."""
    k = result.k
    name = f"fire lateness K={k}{label}"
    p99 = percentile(result.handler_s, 99)
    limit = 0.1 if k <= 100 else 1.0
    late_note = note
    if result.ready_late_s is not None:
        late = f"the scheduler was ready only {result.ready_late_s:.2f}s late"
        late_note = f"{late}; {note}" if note else late
    other = result.other_statuses
    return [
        figure(
            f"{name}: p50 (handler start - scheduled)",
            ms(percentile(result.handler_s, 50), 1),
            "ms",
            k,
        ),
        figure(
            f"{name}: p99 (handler start - scheduled)",
            ms(p99, 1),
            "ms",
            k,
            target=f"< {limit * 1000:g} ms",
            ok=p99 < limit,
            note=late_note,
        ),
        figure(f"{name}: max", ms(max(result.handler_s, default=float("nan")), 1), "ms", k),
        figure(
            f"{name}: p99 of started_at - scheduled_for",
            ms(percentile(result.db_s, 99), 1),
            "ms",
            k,
        ),
        figure(
            f"{name}: schedules that did not run",
            result.missed,
            "runs",
            k,
            target="0",
            ok=result.missed == 0,
            note=f"other statuses seen: {other}" if other else None,
        ),
    ]


def wait_for_runs(url: str, ids: list[UUID], deadline: datetime) -> list[dict[str, Any]]:
    """Poll job_executions until every schedule of `ids` has a finished row, or the deadline."""
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        while True:
            rows = conn.execute(
                "SELECT schedule_id, status, started_at, completed_at, scheduled_for"
                " FROM job_executions WHERE status <> 'running' AND schedule_id = ANY(%s)",
                (ids,),
            ).fetchall()
            if len({r["schedule_id"] for r in rows}) >= len(ids) or datetime.now(UTC) > deadline:
                return rows
            time.sleep(0.2)


if __name__ == "__main__":
    print_table(run())
