"""Instance heartbeats and the reaper that turns dead instances' `running` rows into `abandoned`.

Each instance keeps `scheduler:instance:<instance_id>` alive (TTL and period from
`liveness_timing.LivenessTiming`, derived from LOCK_TIMEOUT); its value is a per-process token and
a generation that changes whenever the key had to be created anew. A `running` row of another
instance is abandoned when, in one sweep: that instance's heartbeat is missing, the schedule's
lock no longer holds that run's token, and our own heartbeat is intact (same generation as our
last beat wrote) and has been steady (no failed or late beat) for a TTL before the sweep began.
The last condition stands in for "missing for a while": an emptied or failed-over Redis loses our
heartbeat too (or gives it a new generation), and a frozen Redis shows as a late beat of ours, so
in both cases nothing is reaped until every live peer has had time to beat again. Fencing stays
the last word: the abandon touches only rows still `running`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from services.engine.liveness_timing import LivenessTiming
from services.errors import DatabaseError, DatabaseUnavailable
from services.lock.keys import schedule_lock_key
from services.lock.sentinel import MasterFollower
from services.log import get_logger
from services.store.executions import ExecutionStore
from services.store.run_requests import RunRequestStore

log = get_logger(__name__)
HEARTBEAT_KEY_PREFIX = "scheduler:instance:"


INSTANCE_STATUS_KEY_PREFIX = "scheduler:instance_status:"


def heartbeat_key(instance_id: str, prefix: str = "") -> str:
    return f"{prefix}{HEARTBEAT_KEY_PREFIX}{instance_id}"


def instance_status_key(instance_id: str, prefix: str = "") -> str:
    return f"{prefix}{INSTANCE_STATUS_KEY_PREFIX}{instance_id}"


def live_instances(redis_client: redis.Redis, prefix: str = "") -> set[str]:
    """Instance ids whose heartbeat key exists now."""
    start = len(prefix) + len(HEARTBEAT_KEY_PREFIX)
    keys = redis_client.scan_iter(match=f"{prefix}{HEARTBEAT_KEY_PREFIX}*", count=500)
    return {str(key)[start:] for key in keys}


def no_live_peers(redis_client: redis.Redis, instance_id: str, prefix: str = "") -> bool:
    """Whether no other instance is running. Catch-up is for occurrences missed while *no*
    instance ran: with peers alive, a persisted next_run in the past is theirs to run (or about
    to be), not a missed one. Redis unreachable counts as alone (the locks still decide)."""
    try:
        peers = live_instances(redis_client, prefix) - {instance_id}
    except redis.RedisError as exc:
        log.warning("scheduler.peers_unknown", error=str(exc))
        return True
    if peers:
        log.info("scheduler.catchup_left_to_peers", peers=sorted(peers)[:20])
    return not peers


def instance_summaries(redis_client: redis.Redis, prefix: str = "") -> list[dict[str, Any]]:
    """Each live instance, ordered by id: `{"instance_id": ..., **the summary its heartbeat
    keeps beside it}` (only the id when it wrote none)."""
    summaries = []
    for instance_id in sorted(live_instances(redis_client, prefix)):
        raw = redis_client.get(instance_status_key(instance_id, prefix))
        summary = json.loads(raw) if raw else {}
        summaries.append({"instance_id": instance_id, **summary})
    return summaries


# Refresh our heartbeat if it still holds our token, else write it anew with a fresh generation.
# Returns the value now stored: a value other than the one our last beat saw means the key had
# gone (expired while we were frozen, Redis emptied or failed over) and was recreated.
_BEAT_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if stored and string.sub(stored, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return stored
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return ARGV[3]
"""


class Heartbeat:
    def __init__(
        self,
        redis_client: redis.Redis,
        instance_id: str,
        timing: LivenessTiming,
        prefix: str = "",
        describe: Callable[[], dict[str, Any]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis_client
        self.key = heartbeat_key(instance_id, prefix)
        # A JSON summary beside the heartbeat, so `scheduler.py status` can show every instance.
        self.status_key = instance_status_key(instance_id, prefix)
        self.describe = describe
        self.token = uuid.uuid4().hex
        self.timing = timing
        self.ttl_ms = timing.ttl_ms
        self.monotonic = monotonic
        self.healthy = False
        self._script = redis_client.register_script(_BEAT_SCRIPT)
        self._follower = MasterFollower(redis_client)
        self._state = threading.Lock()  # the beat thread writes what the reaper thread reads
        self._value: str | None = None  # what our last successful beat left in the key
        # When that beat's reply came. Gaps between replies show a stall of Redis or of us: a
        # beat stuck in a frozen Redis replies late, and the next one is on time again.
        self._last_ok: float | None = None
        self._steady_since: float | None = None  # start of the current run of steady beats

    @property
    def value(self) -> str | None:
        with self._state:
            return self._value

    def beat(self) -> None:
        fresh = f"{self.token}:{uuid.uuid4().hex[:12]}"
        try:
            self._follower.check()  # with Sentinel: this beat, and what follows, on the master
            with self.redis.pipeline(transaction=False) as pipe:
                self._script(keys=[self.key], args=[self.token, self.ttl_ms, fresh], client=pipe)
                if self.describe is not None:
                    pipe.set(
                        self.status_key, json.dumps(self.describe(), default=str), px=self.ttl_ms
                    )
                stored = str(pipe.execute()[0])
        except redis.RedisError as exc:
            with self._state:
                self._steady_since = None
            if self.healthy:
                log.warning("heartbeat.failed", key=self.key, error=str(exc))
            self.healthy = False
            return
        first, recreated, late = self._record(self.monotonic(), stored)
        if recreated and not first:
            log.warning("heartbeat.recreated", key=self.key)  # expired under us, or Redis lost it
        elif late and self.healthy:  # (after a failure, "heartbeat.ok" says enough)
            log.warning("heartbeat.late", key=self.key, max_gap=self.timing.max_gap)
        if not self.healthy:
            log.info("heartbeat.ok", key=self.key)
        self.healthy = True

    def _record(self, replied: float, stored: str) -> tuple[bool, bool, bool]:
        """Note a successful beat; (first, recreated, late). Either of the last two starts a
        new run of steady beats."""
        with self._state:
            first = self._value is None
            recreated = stored != self._value
            late = self._last_ok is None or replied - self._last_ok > self.timing.max_gap
            if recreated or late or self._steady_since is None:
                self._steady_since = replied
            self._value, self._last_ok = stored, replied
        return first, recreated, late

    def steady(self, *, since: float, now: float) -> bool:
        """Whether our beats have been steady from `settle` seconds before `since` until now
        (none failed, none late, the key never recreated) and the last one is not overdue."""
        with self._state:
            if self._steady_since is None or self._last_ok is None:
                return False
            settled = self._steady_since + self.timing.settle <= since
            return settled and now - self._last_ok <= self.timing.max_gap

    def remove(self) -> None:
        """Delete our heartbeat, only if it is still ours."""
        try:
            stored = self.redis.get(self.key)
            if stored is not None and str(stored).startswith(self.token):
                self.redis.delete(self.key, self.status_key)
        except redis.RedisError as exc:
            log.warning("heartbeat.remove_failed", key=self.key, error=str(exc))


@dataclass(frozen=True)
class _Candidate:
    instance_id: str
    row: dict[str, Any]


class Reaper:
    def __init__(
        self,
        store: ExecutionStore,
        redis_client: redis.Redis,
        heartbeat: Heartbeat,
        *,
        prefix: str = "",
        monotonic: Callable[[], float],
        on_abandoned: Callable[[int], None] = lambda _n: None,
        requests: RunRequestStore | None = None,
    ) -> None:
        self.store = store
        # Trigger requests a dead instance claimed and never resolved go back to every
        # instance, on the same evidence of death as its running rows.
        self.requests = requests
        self.redis = redis_client
        self.heartbeat = heartbeat
        self.prefix = prefix
        self.monotonic = monotonic
        self.on_abandoned = on_abandoned
        self._held_back = False  # "reaper.held_back" is logged once per stretch of it

    def sweep(self) -> int:
        """One pass; returns how many rows it abandoned."""
        began = self.monotonic()
        try:
            rows = self.store.running_rows_of_others()
            claimants = (
                self.requests.open_claimants(self.store.instance_id) if self.requests else set()
            )
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("reaper.database_unavailable", error=str(exc))
            return 0
        by_instance: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_instance.setdefault(row["instance_id"] or "", []).append(row)
        try:
            candidates = self._dead_runs(by_instance)
            dead_claimants = sorted(c for c in claimants if not self._beating(c))
            # Our own heartbeat is read after the others: had Redis lost its keys before we
            # looked at theirs, ours would be gone or of a new generation by now.
            if not (candidates or dead_claimants) or not self._own_heartbeat_intact(began):
                return 0
        except redis.RedisError as exc:
            log.warning("reaper.redis_unavailable", error=str(exc))
            return 0
        abandoned = sum(self._abandon(c) for c in candidates)
        if abandoned:
            self.on_abandoned(abandoned)
        if dead_claimants:
            self._release(dead_claimants)
        return abandoned

    def _beating(self, instance_id: str) -> bool:
        return bool(self.redis.exists(heartbeat_key(instance_id, self.prefix)))

    def _release(self, instance_ids: list[str]) -> None:
        assert self.requests is not None  # dead claimants are only looked for with requests
        try:
            released = self.requests.release_claims(instance_ids)
        except (DatabaseUnavailable, DatabaseError) as exc:
            log.warning("reaper.database_unavailable", error=str(exc))
            return
        if released:
            log.warning("reaper.requests_released", requests=released, instances=instance_ids)

    def _dead_runs(self, by_instance: dict[str, list[dict[str, Any]]]) -> list[_Candidate]:
        """Rows whose instance has no heartbeat and whose lock no longer holds their token."""
        candidates = []
        for instance_id, instance_rows in by_instance.items():
            if self._beating(instance_id):
                continue
            for row in instance_rows:
                if row["schedule_id"] is not None:
                    holder = self.redis.get(schedule_lock_key(row["schedule_id"], self.prefix))
                    if holder is not None and str(holder).startswith(
                        f"{instance_id}|{row['execution_id']}|"
                    ):
                        continue  # its lock still holds this run's token: not provably dead yet
                candidates.append(_Candidate(instance_id, row))
        return candidates

    def _own_heartbeat_intact(self, began: float) -> bool:
        stored = self.redis.get(self.heartbeat.key)
        intact = stored is not None and str(stored) == self.heartbeat.value
        steady = intact and self.heartbeat.steady(since=began, now=self.monotonic())
        if not steady:
            if not self._held_back:
                log.warning(
                    "reaper.held_back",
                    reason=(
                        "own heartbeat missing or recreated"
                        if not intact
                        else "own beats not steady for a TTL yet (late, failed, or just started)"
                    ),
                    settle_seconds=self.heartbeat.timing.settle,
                )
            self._held_back = True
            return False
        if self._held_back:
            log.info("reaper.resumed")
        self._held_back = False
        return True

    def _abandon(self, candidate: _Candidate) -> bool:
        row, instance_id = candidate.row, candidate.instance_id
        reason = (
            f"instance {instance_id} stopped heartbeating and its lock is gone; "
            "the run's outcome is unknown"
        )
        if not self.store.abandon(row["execution_id"], reason):
            return False
        log.warning(
            "reaper.abandoned",
            execution_id=str(row["execution_id"]),
            schedule_id=str(row["schedule_id"]),
            instance=instance_id,
        )
        return True
