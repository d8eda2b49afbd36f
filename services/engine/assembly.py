"""Builds the engine: the job table, the runner and what feeds it (the pause switch included),
wired to one another.

The runner, the rechecks and the pipeline form the one loop of the engine (a recheck runs an
occurrence again through the runner); this is the one place that closes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import redis

from services.clock import Clock
from services.config import Settings
from services.engine.firing import FiringPolicy
from services.engine.handlers import HandlerRegistry, NatsOptions, build_handler_registry
from services.engine.overlap import OverlapDoor
from services.engine.parking import ParkingLot
from services.engine.pause import PauseSwitch
from services.engine.pipeline import RunPipeline
from services.engine.queue import QueueStarter
from services.engine.recheck import Rechecks
from services.engine.retries import RetryScheduler
from services.engine.runner import JobRunner
from services.metrics import Metrics
from services.model.catalog import Catalog, job_payload_check
from services.model.records import Schedule, SchedulerPause
from services.model.retry import RetryPolicy
from services.ops.timer import TimerThread
from services.scheduling.jobs import JobTable
from services.store.executions import ExecutionStore
from services.store.queue import QueueStore
from services.store.run_requests import RunRequestStore


@dataclass(frozen=True)
class Engine:
    catalog: Catalog
    jobs: JobTable
    retries: RetryScheduler
    parking: ParkingLot
    runner: JobRunner
    pipeline: RunPipeline
    firing: FiringPolicy
    handlers: HandlerRegistry
    pause: PauseSwitch
    queue: QueueStarter


def build_engine(
    s: Settings,
    *,
    max_workers: int,
    store: ExecutionStore,
    read_schedule: Callable[[UUID | str], Schedule | None],
    read_pause: Callable[[], SchedulerPause],
    redis_client: redis.Redis,
    metrics: Metrics,
    clock: Clock,
    timer: TimerThread,
    stop: threading.Event,
) -> Engine:
    handlers = build_handler_registry(
        http_allowed_hosts=s.http_allowed_hosts,
        job_webhook_url=s.job_webhook_url,
        command_allowlist=s.command_allowlist,
        python_handler_allowlist=s.python_handler_allowlist,
        request_timeout=s.request_timeout,
        nats_options=NatsOptions(
            url=s.nats_url,
            timeout=s.nats_timeout,
            creds_file=s.nats_creds_file,
            tls_ca=s.nats_tls_ca,
        ),
        nats_subject_allowlist=s.nats_subject_allowlist,
        celery_broker_url=s.celery_broker_url,
        celery_result_backend=s.celery_result_backend,
        celery_task_allowlist=s.celery_task_allowlist,
        celery_timeout=s.celery_timeout,
        clock=clock,
    )
    catalog = Catalog(
        s.scheduler_timezone,
        payload_problems=job_payload_check(
            s.default_job_type, s.nats_subject_allowlist, s.celery_task_allowlist
        ),
    )
    jobs = JobTable(max_workers=max_workers, max_instances=s.job_max_instances)
    retries = RetryScheduler(jobs, catalog, read_schedule)
    parking = ParkingLot()
    pause = PauseSwitch(read_pause)
    retry_policy = RetryPolicy(
        s.retry_initial_delay, s.retry_backoff_base, s.retry_max_delay, s.retry_max_attempts
    )
    runner = JobRunner(
        store=store,
        redis_client=redis_client,
        handlers=handlers,
        metrics=metrics,
        clock=clock,
        timer=timer,
        retry_policy=retry_policy,
        instance_id=s.instance_id,
        lock_ttl=s.lock_timeout,
        default_grace=s.job_misfire_grace_time,
        default_timeout=s.job_timeout,
        default_job_type=s.default_job_type,
        key_prefix=s.redis_key_prefix,
        schedule_retry=retries.schedule,
        park=parking.park,
        pause_reason=pause.skip_reason,
    )
    queue_store = QueueStore(store.db, s.instance_id)
    runner.overlap = OverlapDoor(
        queue_store,
        instance_id=s.instance_id,
        metrics=metrics,
        skip=runner.skip,
        cancel_local=runner.cancel,
        request_cancel=RunRequestStore(store.db).request_cancel,
    )
    rechecks = Rechecks(store, runner, jobs, timer, stop)
    runner.recheck = rechecks.later  # the one loop: a recheck runs through it
    pipeline = RunPipeline(runner, max_workers, clock=clock)
    firing = FiringPolicy(
        catalog=catalog,
        read_schedule=read_schedule,
        runner=runner,
        pipeline=pipeline,
        clock=clock,
        coalesce=s.job_coalesce,
        max_instances=s.job_max_instances,
    )
    jobs.route(dispatch=firing.dispatch, on_overlap=firing.on_overlap)
    queue = QueueStarter(
        queue_store,
        runner,
        pipeline,
        catalog=catalog,
        read_schedule=read_schedule,
        backfill_concurrency=s.backfill_concurrency,
        clock=clock,
    )
    return Engine(catalog, jobs, retries, parking, runner, pipeline, firing, handlers, pause, queue)
