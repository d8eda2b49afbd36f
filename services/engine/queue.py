"""The queue loop: starts `queued` occurrences (overlap policies, backfill) when their turn comes.

Every instance runs it, several times a second and at once after one of its runs ends. A pass
reads the heads of the queue (per schedule, its first waiting row; live occurrences before a
backfill's), takes the lock of each head it has a free slot for, in one Redis round trip, and
turns each row it holds the lock of `running` (`QueueStore.start`: only a still-`queued` row,
so one instance wins), then hands it to a worker. A head whose lock is held (the earlier run is
still going, or another instance is starting it) simply waits for a later pass. Nothing of a
queued row lives in an instance's memory: when the instance that queued it dies, any other
starts it, once.

Backfill runs: one at a time per schedule, since they take the schedule's lock like any run;
under allow_all (a lock per occurrence) up to BACKFILL_CONCURRENCY at once.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from services.clock import Clock
from services.engine.admission import Candidate
from services.engine.pipeline import RunPipeline
from services.engine.runner import JobRunner
from services.engine.runs import ActiveRun
from services.errors import DatabaseError, DatabaseUnavailable
from services.lock.lock import release_many
from services.log import get_logger
from services.model.occurrence import Occurrence, ScheduleCatalog
from services.model.overlap import OverlapPolicy
from services.model.records import Schedule
from services.model.vocabulary import RunTrigger
from services.store.queue import QueuedRow, QueueStore

log = get_logger(__name__)
POLL_SECONDS = 0.2


class QueueStarter:
    def __init__(
        self,
        queue: QueueStore,
        runner: JobRunner,
        pipeline: RunPipeline,
        *,
        catalog: ScheduleCatalog,
        read_schedule: Callable[[UUID | str], Schedule | None],
        backfill_concurrency: int,
        clock: Clock,
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.pipeline = pipeline
        self.catalog = catalog
        self.read_schedule = read_schedule
        self.backfill_concurrency = backfill_concurrency
        self.clock = clock

    def step(self) -> int:
        """One pass; returns how many queued occurrences this instance started."""
        if self.runner.pause_reason() is not None or self.runner.store.database_down:
            return 0  # paused: queued rows wait (they are not due now); down: nothing claims
        try:
            heads = self.queue.heads(heads=max(1, self.backfill_concurrency))
        except (DatabaseError, DatabaseUnavailable) as exc:
            log.warning("queue.read_failed", error=str(exc))
            return 0
        candidates = self._candidates(heads)
        if not candidates:
            return 0
        slots = self.pipeline.reserve(len(candidates))
        try:
            started = self._start(candidates[:slots])
        finally:
            self.pipeline.release(slots - started)
        return started

    def _candidates(self, heads: list[QueuedRow]) -> list[Candidate]:
        candidates: list[Candidate] = []
        for row in heads:
            occ = self._occurrence(row)
            if occ is None or not self._turn(row, occ.loaded.spec.overlap_policy):
                continue
            active = ActiveRun(row.execution_id, occ)
            candidates.append((len(candidates), active, self.runner.gate.lock_for(active)))
        return candidates

    def _turn(self, row: QueuedRow, policy: OverlapPolicy) -> bool:
        if row.trigger != RunTrigger.BACKFILL:
            return row.place == 1
        width = self.backfill_concurrency if policy is OverlapPolicy.ALLOW_ALL else 1
        return row.backfill_running + row.place - 1 < width

    def _occurrence(self, row: QueuedRow) -> Occurrence | None:
        try:
            loaded = self.catalog.get(row.schedule_id)
            if loaded is None:
                schedule = self.read_schedule(row.schedule_id)
                # A backfill was asked for explicitly: it runs even while the schedule is off.
                wanted = schedule is not None and (
                    schedule.enabled or row.trigger == RunTrigger.BACKFILL
                )
                if schedule is None or not wanted:
                    self.queue.drop(row.execution_id, "the schedule was disabled or deleted")
                    return None
                loaded = self.catalog.parse(schedule)
        except Exception as exc:  # an invalid row, or PostgreSQL gone: wait for a later pass
            log.warning("queue.head_unreadable", schedule_id=str(row.schedule_id), error=str(exc))
            return None
        return Occurrence(
            loaded,
            row.scheduled_for,
            self.clock.now(),  # waiting is no misfire: its grace starts now
            attempt=row.attempt,
            trigger=RunTrigger(row.trigger),
            job_id=row.job_id,
        )

    def _start(self, candidates: list[Candidate]) -> int:
        if not candidates:
            return 0
        verdict = self.runner.gate.acquire_all(candidates)
        started = 0
        for _, active, lock in verdict.held:
            try:
                claim = self.queue.start(active.execution_id)
            except (DatabaseError, DatabaseUnavailable) as exc:
                log.warning(
                    "queue.start_failed", execution_id=str(active.execution_id), error=str(exc)
                )
                claim = None
            if claim is None:  # another instance started it, then ended it, meanwhile
                release_many([lock])
                continue
            log.info(
                "run.dequeued",
                schedule_id=str(active.occurrence.loaded.schedule_id),
                execution_id=str(active.execution_id),
                scheduled_for=active.occurrence.scheduled_for.isoformat(),
                trigger=active.occurrence.trigger.value,
            )
            self.pipeline.run_begun(self.runner.adopt(active, claim, lock))
            started += 1
        return started
