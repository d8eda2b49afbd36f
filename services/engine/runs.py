"""A run of this instance, from its claim to its result: the records the runner passes along."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from services.engine.handlers import JobOutcome
from services.lock.lock import DistributedLock
from services.model.occurrence import Claim, Occurrence
from services.model.vocabulary import ExecutionStatus


@dataclass
class ActiveRun:
    execution_id: UUID
    occurrence: Occurrence
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str | None = None
    lock: DistributedLock | None = None

    def describe(self) -> dict[str, Any]:
        """The run as `/status` lists it."""
        return {
            "execution_id": str(self.execution_id),
            "schedule_id": str(self.occurrence.loaded.schedule_id),
            "scheduled_for": self.occurrence.scheduled_for.isoformat(),
            "attempt": self.occurrence.attempt,
        }

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancel_event.set()

    def in_doubt(self) -> Occurrence:
        """The occurrence, after its claim was lost with PostgreSQL (committed or not, nobody
        can tell yet): it keeps the claim's execution id, so that its next claim (or skip)
        finds that row ours."""
        return replace(self.occurrence, claim_id=self.execution_id)


@dataclass(frozen=True, slots=True)
class Begun:
    """An occurrence this instance holds the lock of and has claimed: its handler may run."""

    active: ActiveRun
    claim: Claim
    lock: DistributedLock


@dataclass(frozen=True, slots=True)
class Ended:
    """A begun occurrence whose handler has returned; its result is not written yet."""

    begun: Begun
    outcome: JobOutcome
    duration: float


def final_status(
    active: ActiveRun, outcome: JobOutcome, lock: DistributedLock
) -> tuple[ExecutionStatus, str | None, dict[str, Any] | None]:
    """The row's status and error of a run whose handler returned: a lost lock or a cancel
    reason (shutdown, time-out) decides over what the handler said."""
    status = ExecutionStatus(outcome.status)
    message = outcome.error_message
    details = dict(outcome.error_details) if outcome.error_details else None
    if lock.lost.is_set():
        details = {**(details or {}), "lock_lost": True}
        if status is not ExecutionStatus.COMPLETED:
            status = ExecutionStatus.FAILED
            message = f"lock {lock.key} was lost while the run was going; the run was stopped"
    elif status is ExecutionStatus.CANCELLED:
        reason = active.cancel_reason
        if reason == "shutdown":
            status = ExecutionStatus.ABANDONED
            message = "the instance shut down before the run finished"
        elif reason == "timeout":
            status = ExecutionStatus.TIMED_OUT
            message = "the run did not finish within its time-out"
        elif reason is not None and reason.startswith("replaced by"):
            message = reason  # a newer occurrence took its place (engine/overlap.py)
        else:
            message = message or "cancelled on request"
    return status, message, details
