"""Occurrences due while PostgreSQL is unreachable wait here, unlocked, until it returns.

The runner parks them (no lock, no worker held); the result writer, once a second, writes the
results that waited for PostgreSQL and then releases the parked occurrences to the pipeline, where
each runs if still within its grace or is recorded `skipped`. With coalescing only the latest per
schedule runs. Beyond MAX_PARKED they are recorded skipped at once.
"""

from __future__ import annotations

import threading
from uuid import UUID

from services.engine.pipeline import RunPipeline
from services.engine.runner import JobRunner
from services.model.occurrence import Occurrence
from services.store.executions import ExecutionStore

MAX_PARKED = 10_000


class ParkingLot:
    def __init__(self, capacity: int = MAX_PARKED) -> None:
        self.capacity = capacity
        self._parked: list[Occurrence] = []
        self._lock = threading.Lock()

    def park(self, occ: Occurrence) -> bool:
        """False when full: the caller records the occurrence skipped instead."""
        with self._lock:
            if len(self._parked) >= self.capacity:
                return False
            self._parked.append(occ)
            return True

    def drain(self) -> list[Occurrence]:
        with self._lock:
            parked, self._parked = self._parked, []
        return parked

    def __len__(self) -> int:
        return len(self._parked)


class ResultWriter:
    """The 'result-writer' loop's body."""

    def __init__(
        self,
        store: ExecutionStore,
        lot: ParkingLot,
        runner: JobRunner,
        pipeline: RunPipeline,
        *,
        coalesce: bool,
    ) -> None:
        self.store = store
        self.lot = lot
        self.runner = runner
        self.pipeline = pipeline
        self.coalesce = coalesce

    def step(self) -> None:
        if self.store.pending_count:
            self.store.flush_pending()
        elif self.store.database_down:
            self.store.probe()
        if self.store.database_down or not len(self.lot):
            return
        ready = sorted(self.lot.drain(), key=lambda o: o.scheduled_for)
        if self.coalesce:
            latest: dict[tuple[UUID, int], Occurrence] = {}
            for occ in ready:
                key = (occ.loaded.schedule_id, occ.attempt)
                if key in latest:
                    self.runner.skip(
                        latest[key],
                        "coalesced with a later occurrence due while PostgreSQL was unreachable",
                        "coalesced",
                    )
                latest[key] = occ
            ready = list(latest.values())
        for occ in ready:
            self.pipeline.submit(occ)
