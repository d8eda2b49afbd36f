"""Who may run an occurrence: its schedule's lock, taken for many occurrences at once.

One Redis round trip takes the locks of all occurrences due together; for those found taken, one
more asks who holds them. A holder running this very occurrence (another instance) is a quiet
conflict; a holder running an earlier occurrence is an overlap, which the schedule's overlap
policy settles (`engine/overlap.py`); Redis down means skipped: a run never starts without its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from services.clock import Clock
from services.engine.runs import ActiveRun
from services.errors import LockUnavailable, SkipOccurrence
from services.lock.keys import occurrence_lock_key, schedule_lock_key
from services.lock.lock import DistributedLock, acquire_many, holders_many
from services.log import get_logger
from services.metrics import Metrics
from services.model.occurrence import Occurrence, lock_token, token_occurrence
from services.model.overlap import OverlapPolicy
from services.ops.timer import TimerThread

log = get_logger(__name__)

# (index of the occurrence in its batch, its run, its lock)
Candidate = tuple[int, ActiveRun, DistributedLock]


@dataclass
class LockVerdict:
    held: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[Candidate, str, str]] = field(default_factory=list)  # reason, kind
    elsewhere: list[Candidate] = field(default_factory=list)  # this occurrence, another holder
    # an earlier run of the schedule holds its lock: (candidate, the holder's token)
    overlapped: list[tuple[Candidate, str]] = field(default_factory=list)


class _Overlap(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class LockGate:
    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        instance_id: str,
        ttl: float,
        prefix: str,
        metrics: Metrics,
        timer: TimerThread,
        clock: Clock,
    ) -> None:
        self.timer = timer
        self.clock = clock
        self.redis = redis_client
        self.instance_id = instance_id
        self.ttl = ttl
        self.prefix = prefix
        self.metrics = metrics

    def lock_for(self, active: ActiveRun) -> DistributedLock:
        occ = active.occurrence
        if occ.loaded.spec.overlap_policy is OverlapPolicy.ALLOW_ALL:  # runs may overlap
            key = occurrence_lock_key(occ.loaded.schedule_id, occ.scheduled_for, self.prefix)
        else:
            key = schedule_lock_key(occ.loaded.schedule_id, self.prefix)
        active.lock = DistributedLock(
            self.redis,
            key,
            self.ttl,
            self.instance_id,
            token=lock_token(self.instance_id, active.execution_id, occ),
            on_lost=lambda _lock: active.cancel("lock_lost"),
            timer=self.timer,
            clock=self.clock,
        )
        return active.lock

    def acquire_all(self, candidates: list[Candidate]) -> LockVerdict:
        verdict = LockVerdict()
        if not candidates:
            return verdict
        taken = acquire_many([lock for _, _, lock in candidates])
        busy: list[Candidate] = []
        for candidate, got in zip(candidates, taken, strict=True):
            if got is True:
                verdict.held.append(candidate)
            elif got is False:
                busy.append(candidate)
            else:
                verdict.skipped.append((candidate, *redis_skip(got)))
        holders = holders_many([lock for _, _, lock in busy]) if busy else []
        for candidate, holder in zip(busy, holders, strict=True):
            _, active, lock = candidate
            try:
                if self._settle_busy(lock, active.occurrence, holder):
                    verdict.held.append(candidate)
                else:
                    verdict.elsewhere.append(candidate)
            except SkipOccurrence as skip:
                verdict.skipped.append((candidate, skip.reason, skip.kind))
            except _Overlap as overlap:
                verdict.overlapped.append((candidate, overlap.holder))
        return verdict

    def _settle_busy(
        self, lock: DistributedLock, occ: Occurrence, holder: str | LockUnavailable | None
    ) -> bool:
        """A lock found taken, and its holder. True: taken by us after all (the holder released
        it in between; two more tries). False: held for this very occurrence, by another
        instance (quiet). SkipOccurrence: it cannot run now (Redis down). _Overlap: an earlier
        run of the schedule still holds the lock."""
        tries = 2
        while True:
            if isinstance(holder, LockUnavailable):
                raise SkipOccurrence(*redis_skip(holder))
            if holder is not None:
                self.metrics.lock_conflicts.inc()
                if _same_occurrence(holder, lock, occ):
                    return False
                raise _Overlap(holder)  # the schedule's overlap policy decides (engine/overlap.py)
            if tries == 0:
                return False
            tries -= 1
            try:
                if lock.acquire():
                    return True
                holder = lock.holder()
            except LockUnavailable as exc:
                holder = exc


def _same_occurrence(holder: str, lock: DistributedLock, occ: Occurrence) -> bool:
    parsed, mine = token_occurrence(holder), token_occurrence(lock.token)
    same = parsed is not None and mine is not None and parsed[2:] == mine[2:]
    if same:
        log.debug("run.lock_conflict", schedule_id=str(occ.loaded.schedule_id), holder=holder)
    return same


def redis_skip(error: LockUnavailable) -> tuple[str, str]:
    """(reason, kind) of an occurrence not run because Redis could not be asked for its lock."""
    return f"Redis unreachable, not run without its lock: {error}", "redis"
