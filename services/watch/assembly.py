"""Builds the watch side: the loader over the catalog and job table, and the watcher over it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from services.clock import Clock
from services.metrics import Metrics
from services.model.catalog import Catalog
from services.model.occurrence import OccurrenceSink
from services.scheduling.jobs import JobTable
from services.store.listen import NotificationListener
from services.store.schedules import ScheduleRepository
from services.watch.loader import ScheduleLoader
from services.watch.watcher import ScheduleWatcher


def build_watch(
    *,
    catalog: Catalog,
    jobs: JobTable,
    schedules: ScheduleRepository,
    listener: NotificationListener,
    sink: OccurrenceSink,
    fire: Callable[..., Any],
    metrics: Metrics,
    clock: Clock,
    stop: threading.Event,
    default_grace: float,
    interval: float,
) -> tuple[ScheduleLoader, ScheduleWatcher]:
    loader = ScheduleLoader(
        catalog=catalog,
        jobs=jobs,
        marks=schedules,
        sink=sink,
        fire=fire,
        metrics=metrics,
        clock=clock,
        stop=stop,
        default_grace=default_grace,
    )
    watcher = ScheduleWatcher(
        schedules, loader, metrics, clock, listener=listener, interval=interval, stop=stop
    )
    return loader, watcher
