"""Calling a run's handler: its JobContext from the occurrence, the claim and the payload."""

from __future__ import annotations

from services.engine.handlers import HandlerRegistry, JobContext, JobOutcome, UnknownJobType
from services.engine.runs import ActiveRun
from services.errors import DatabaseError, DatabaseUnavailable
from services.log import get_logger
from services.model.occurrence import Claim
from services.store.executions import ExecutionStore

log = get_logger("services.engine.runner")


def call_handler(
    handlers: HandlerRegistry,
    store: ExecutionStore,
    default_job_type: str,
    active: ActiveRun,
    claim: Claim,
    timeout: float,
) -> JobOutcome:
    """Build the handler's context and call it; a missing handler or profile is a failure."""
    occ = active.occurrence
    schedule = occ.loaded.schedule
    job_type = schedule.job_type or default_job_type
    try:
        handler = handlers.get(job_type)
        payload = dict(schedule.payload) if isinstance(schedule.payload, dict) else {}
        if schedule.profile_id is not None:
            payload = {**store.profile_settings(schedule.profile_id), **payload}
    except (UnknownJobType, DatabaseUnavailable, DatabaseError) as exc:
        return JobOutcome.failure(type(exc).__name__, str(exc), retryable=False)
    ctx = JobContext(
        execution_id=claim.execution_id,
        schedule_id=schedule.schedule_id,
        domain_config_id=schedule.domain_config_id,
        domain=schedule.domain,
        profile_id=schedule.profile_id,
        scheduled_for=occ.scheduled_for,
        attempt=occ.attempt,
        job_type=job_type,
        payload=payload,
        timeout=timeout,
        cancel_event=active.cancel_event,
        log=log.bind(schedule_id=str(schedule.schedule_id), execution_id=str(claim.execution_id)),
    )
    return handler.run(ctx)
