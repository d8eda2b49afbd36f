"""RequestProcessor over a fake RunRequestStore: what a daemon does with the CLI's requests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from services.engine.run_requests import RequestProcessor
from services.errors import DatabaseUnavailable, ScheduleNotFound
from services.model.occurrence import RunReport
from services.model.shards import ShardSet
from services.store.run_requests import RunRequest


class FakeStore:
    def __init__(self, triggers: list[RunRequest], cancels: list[RunRequest]) -> None:
        self.triggers = triggers
        self.cancels = cancels
        self.completed: list[tuple[UUID, str, str, UUID | None]] = []
        self.down = False

    def claim_trigger(self, instance_id: str, shards: ShardSet | None = None) -> RunRequest | None:
        if self.down:
            raise DatabaseUnavailable("PostgreSQL is unreachable")
        return self.triggers.pop(0) if self.triggers else None

    def open_cancels_for(self, execution_ids: list[UUID]) -> list[RunRequest]:
        return [c for c in self.cancels if c.execution_id in execution_ids]

    def complete(
        self, request_id: UUID, result: str, *, instance_id: str, execution_id: UUID | None = None
    ) -> None:
        self.completed.append((request_id, result, instance_id, execution_id))


@dataclass
class FakeRun:
    execution_id: UUID


class FakeRunner:
    def __init__(self, running: list[UUID]) -> None:
        self.running = running
        self.cancelled: list[UUID] = []

    def active_runs(self) -> list[FakeRun]:
        return [FakeRun(e) for e in self.running]

    def cancel(self, execution_id: UUID, reason: str) -> bool:
        self.cancelled.append(execution_id)
        return execution_id in self.running


def processor(
    store: FakeStore, runner: FakeRunner, trigger: Callable[[UUID, datetime | None], RunReport]
) -> RequestProcessor:
    def submit(work: Callable[[], None]) -> None:
        work()

    fake_store: Any = store
    fake_runner: Any = runner
    return RequestProcessor(fake_store, fake_runner, "i1", trigger=trigger, submit=submit)


def test_trigger_requests_run_their_own_occurrence_and_record_their_execution() -> None:
    schedule_id, execution_id = uuid.uuid4(), uuid.uuid4()
    asked_at = datetime(2026, 12, 3, 14, 0, 0, 123456, tzinfo=UTC)
    ok = RunRequest(uuid.uuid4(), "trigger", schedule_id=schedule_id, requested_at=asked_at)
    unknown = RunRequest(uuid.uuid4(), "trigger", schedule_id=uuid.uuid4())
    occurrences: list[datetime | None] = []

    def trigger(sid: UUID, at: datetime | None) -> RunReport:
        if sid != schedule_id:
            raise ScheduleNotFound(sid)
        occurrences.append(at)
        return RunReport(execution_id, "completed")

    store = FakeStore([ok, unknown], [])
    processor(store, FakeRunner([]), trigger).process()
    # The request's own moment is its occurrence: claimed again after its claimant died, it
    # would name the same one, and job_executions' unique key keeps it to one row.
    assert occurrences == [asked_at]
    assert store.completed[0] == (ok.request_id, "completed", "i1", execution_id)
    request_id, result, instance, started = store.completed[1]
    assert (request_id, instance, started) == (unknown.request_id, "i1", None)
    assert result.startswith("failed: ")


def test_cancels_reach_only_our_runs_and_a_database_outage_is_survived() -> None:
    ours = uuid.uuid4()
    cancel = RunRequest(uuid.uuid4(), "cancel", execution_id=ours)
    elsewhere = RunRequest(uuid.uuid4(), "cancel", execution_id=uuid.uuid4())
    store = FakeStore([], [cancel, elsewhere])
    store.down = True  # claiming triggers fails after the cancels were handled
    runner = FakeRunner([ours])
    processor(store, runner, lambda _sid, _at: RunReport(None, "skipped")).process()
    assert runner.cancelled == [ours]
    assert store.completed == [(cancel.request_id, "cancel signalled", "i1", None)]
