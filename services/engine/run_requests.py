"""Requests from the CLI to live daemons, through the `run_requests` table.

`trigger`: any live instance (with shards, an owner of the schedule's shard) claims it (SKIP
LOCKED: exactly one) and runs the schedule now, with trigger='manual', under the same lock and
history as a scheduled run. Its occurrence is the
request's `requested_at`, so a request runs at most once whoever claims it: a request whose
claimant died before resolving it is handed back by the reaper, and the instance that claims it
again finds the first run's row, if there is one, through job_executions' unique key.
`cancel`: only the instance running that execution acts, by setting the run's cancel event. A
NOTIFY on insert wakes the daemons at once; a poll every POLL_SECONDS is the fallback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from services.engine.runner import JobRunner
from services.errors import DatabaseError, DatabaseUnavailable, SchedulerError
from services.log import get_logger
from services.model.occurrence import RunReport
from services.model.shards import ShardSet
from services.store.run_requests import RunRequest, RunRequestStore

log = get_logger(__name__)
POLL_SECONDS = 0.5
CHANNEL = "scheduler_requests"


class RequestProcessor:
    def __init__(
        self,
        requests: RunRequestStore,
        runner: JobRunner,
        instance_id: str,
        *,
        trigger: Callable[[UUID, datetime | None], RunReport],
        submit: Callable[[Callable[[], None]], None],
        shards: Callable[[], ShardSet] = ShardSet.everything,
    ) -> None:
        self.requests = requests
        self.runner = runner
        self.instance_id = instance_id
        self.trigger = trigger
        self.submit = submit
        self.shards = shards  # the shards we own now: a trigger goes to an owner (see claim)

    def release_own_claims(self) -> None:
        """At start-up: requests an earlier process under our INSTANCE_ID claimed and never
        resolved (it died) go back to every instance."""
        try:
            released = self.requests.release_claims([self.instance_id])
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("requests.release_failed", error=str(exc))
            return
        if released:
            log.warning("requests.released_leftovers", requests=released)

    def process(self) -> None:
        """One poll: claim every open trigger request, act on cancels for our runs."""
        try:
            self._cancels()
            while (
                request := self.requests.claim_trigger(self.instance_id, self.shards())
            ) is not None:
                self.submit(functools.partial(self._run_trigger, request))
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("requests.poll_failed", error=str(exc))

    def _cancels(self) -> None:
        active = [run.execution_id for run in self.runner.active_runs()]
        if not active:
            return
        for request in self.requests.open_cancels_for(active):
            assert request.execution_id is not None  # a cancel always names its run
            found = self.runner.cancel(request.execution_id, request.reason or "cancel_requested")
            log.info("requests.cancel", execution_id=str(request.execution_id), found=found)
            self._complete(request.request_id, "cancel signalled" if found else "not running")

    def _run_trigger(self, request: RunRequest) -> None:
        schedule_id = request.schedule_id
        assert schedule_id is not None  # a trigger always names its schedule
        log.info(
            "requests.trigger", schedule_id=str(schedule_id), request_id=str(request.request_id)
        )
        try:
            report = self.trigger(schedule_id, request.requested_at)
        except SchedulerError as exc:  # unknown or invalid schedule
            self._complete(request.request_id, f"failed: {exc}")
            return
        self._complete(
            request.request_id,
            f"{report.status}: {report.detail}".rstrip(": "),
            report.execution_id,
        )

    def _complete(self, request_id: UUID, result: str, execution_id: UUID | None = None) -> None:
        try:
            self.requests.complete(
                request_id, result, instance_id=self.instance_id, execution_id=execution_id
            )
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("requests.complete_failed", request_id=str(request_id), error=str(exc))

    def prune(self) -> None:
        self.requests.prune()
