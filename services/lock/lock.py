"""Renewable Redis locks: one holder per key, and a holder that learns at once when it lost it.

Built on redis-py's ``Lock``: its per-acquisition token, ``SET NX PX`` acquire and its Lua scripts
that extend and delete the key only while it still holds our token. This module adds a renewal
thread per held lock, loss detection, typed errors and the process-wide client.

Timing rule: a Redis call can block for up to ``socket_timeout * (retries + 1)`` when Redis hangs,
and a renewal cannot notice the deadline while blocked. Keep that product well below
``ttl / 3``, or loss of a lock on a hung Redis is reported late (``get_redis_client`` derives its
socket timeout from LOCK_TIMEOUT for this reason).

Failover (Redis Sentinel, services/lock/sentinel.py): replication is asynchronous, so a key
written just before the master died may be missing on the promoted replica. The next extension
then finds no token (LockNotOwnedError): the lock is lost, ``on_lost`` stops the run, and the
occurrence's unique key in PostgreSQL keeps anyone else from running it again. There is no
``WAIT 1 <ms>`` after acquiring, on purpose: measured on a local master and replica it costs
little while the replica keeps up (a 20-lock batch, p50 0.27 -> 0.31 ms), but every batch
waits the whole time-out while the replica lags or is down (100 ms with ``WAIT 1 50``), which
is when fires are already late; and it guarantees nothing, since Sentinel may still promote a
replica that did not acknowledge. Exactly once rests on the unique key and fencing; WAIT would
only narrow the window (about a millisecond) in which a lock taken before the crash is lost.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType

import redis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock

from services.clock import Clock
from services.errors import LockNotAcquired, LockUnavailable
from services.ops.timer import TimerHandle, TimerThread, shared_timer

__all__ = [
    "DistributedLock",
    "LockNotAcquired",
    "acquire_many",
    "holders_many",
    "release_many",
]

log = structlog.get_logger(__name__)

_ACQUIRE_POLL_S = 0.05  # between attempts of a bounded wait
_RETRY_FIRST_S = 0.05  # first pause after a failed extension; doubles up to _RETRY_MAX_S
_RETRY_MAX_S = 0.5


def _as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _TokenLock(Lock):
    """redis-py's Lock, except that a client-side retry of SET NX cannot report our own lock as
    taken: when the first reply is lost, the retry finds our token in the key."""

    def do_acquire(self, token: str) -> bool:
        if super().do_acquire(token):
            return True
        stored = self.redis.get(self.name)
        return stored is not None and _as_text(stored) == _as_text(token)


class DistributedLock:
    """One acquisition of ``key``, renewed every ``renew_interval`` (ttl/3) while held.

    The lock is lost when an extension finds the key gone or holding another token, or when Redis
    stays unreachable until the TTL of the last successful extension would run out. Then ``lost``
    is set, ``on_lost(lock)`` is called from the timer thread, and renewal stops. An object is
    acquired at most once: its token names one acquisition.
    """

    def __init__(
        self,
        redis: redis.Redis,
        key: str,
        ttl: float,
        instance_id: str,
        *,
        token: str | None = None,
        on_lost: Callable[[DistributedLock], None] | None = None,
        renew: bool = True,
        renew_interval: float | None = None,
        timer: TimerThread | None = None,
        clock: Clock | None = None,
    ):
        if ttl <= 0:
            raise ValueError(f"lock ttl must be positive, got {ttl}")
        interval = ttl / 3 if renew_interval is None else renew_interval
        if renew and not 0 < interval < ttl:
            raise ValueError(f"renew_interval must be in (0, ttl={ttl}), got {interval}")
        self.key = key
        self.ttl = float(ttl)
        self.instance_id = instance_id
        self.token = token if token is not None else f"{instance_id}|{uuid.uuid4().hex}"
        self.lost = threading.Event()
        self._redis = redis
        self._on_lost = on_lost
        self._renew = renew
        self._renew_interval = interval
        # thread_local=False: the timer thread extends with the token the caller's thread set.
        self._lock = _TokenLock(redis, key, timeout=self.ttl, blocking=False, thread_local=False)
        self._state = threading.Lock()  # guards the acquired/released/lost transitions
        self._acquired = False
        self._released = False
        self._valid_until = 0.0  # monotonic: when the key expires at the latest, per our last write
        self._stop = threading.Event()
        self._renewal: TimerHandle | None = None
        self._timer = timer or shared_timer()  # the daemon passes its own; standalone use shares
        # Renewal due times go to the timer, so the lock reads the timer's clock unless told.
        self._clock: Clock = clock or self._timer.clock
        self._failures = 0

    def __repr__(self) -> str:
        return f"DistributedLock(key={self.key!r}, token={self.token!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Acquired, not released, not lost, and its TTL has not run out."""
        with self._state:
            live = self._acquired and not self._released and not self.lost.is_set()
            return live and self._clock.monotonic() < self._valid_until

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock: True if held now, False if someone else holds it after ``wait`` seconds.

        Raises LockUnavailable when Redis cannot be asked; the caller must not run unlocked.
        """
        with self._state:
            if self._acquired:
                raise RuntimeError(f"lock {self.key} was already acquired by this object")
        give_up_at = self._clock.monotonic() + max(wait, 0.0)
        while True:
            # TTL counts from before the request: the server's expiry can only be later.
            attempt_at = self._clock.monotonic()
            try:
                taken = self._lock.acquire(blocking=False, token=self.token)
            except RedisError as exc:
                raise LockUnavailable(
                    f"cannot take lock {self.key}: Redis unreachable ({type(exc).__name__}: {exc})"
                ) from exc
            if taken:
                break
            remaining = give_up_at - self._clock.monotonic()
            if remaining <= 0:
                return False
            self._clock.sleep(min(_ACQUIRE_POLL_S, remaining))
        self._mark_taken(attempt_at)
        return True

    def _mark_taken(self, attempt_at: float) -> None:
        with self._state:
            if self._acquired:
                raise RuntimeError(f"lock {self.key} was already acquired by this object")
            self._acquired = True
            self._valid_until = attempt_at + self.ttl
        log.debug("lock.acquired", key=self.key, token=self.token, ttl=self.ttl)
        if self._renew:
            self._schedule_renewal(attempt_at + self._renew_interval)

    def holder(self) -> str | None:
        """The token now stored in the key (who holds it), or None when it is free."""
        try:
            value = self._redis.get(self.key)
        except RedisError as exc:
            raise LockUnavailable(
                f"cannot read lock {self.key}: Redis unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        return None if value is None else _as_text(value)

    def release(self) -> bool:
        """Stop renewing and delete the key if it still holds our token.

        False (never an exception) when not held, already lost, or Redis cannot be reached; in
        the last case the key expires after its TTL.
        """
        if not self._stop_holding():
            return False
        return self._delete_if_ours()

    def _delete_if_ours(self) -> bool:
        try:
            self._lock.release()
        except LockNotOwnedError:
            # Expired or taken over before a renewal noticed (or renew=False).
            log.warning("lock.release_not_owned", key=self.key, token=self.token)
            return False
        except (LockError, RedisError) as exc:
            log.warning(
                "lock.release_failed", key=self.key, token=self.token, error=repr(exc), ttl=self.ttl
            )
            return False
        log.debug("lock.released", key=self.key, token=self.token)
        return True

    def _stop_holding(self) -> bool:
        """Mark released and stop renewing; True when the key may still hold our token."""
        with self._state:
            if not self._acquired or self._released:
                return False
            self._released = True
            was_lost = self.lost.is_set()
        self._stop.set()
        if self._renewal is not None:
            self._renewal.cancel()
        return not was_lost

    def __enter__(self) -> DistributedLock:
        if not self.acquire():
            try:
                holder = self.holder()
            except LockUnavailable:
                holder = None
            raise LockNotAcquired(self.key, holder)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # Renewal runs as steps on the shared timer thread (a thread per lock cost more than a short
    # run itself); each step extends once and schedules the next.

    def _schedule_renewal(self, at: float) -> None:
        self._renewal = self._timer.call_at(at, self._renew_step_safely, owner=self)

    def _renew_step_safely(self) -> None:
        try:
            next_at = self._renew_step()
        except Exception as exc:  # a renewal that stops silently means a lock that expires
            log.exception("lock.renew_crashed", key=self.key, token=self.token)
            self._mark_lost(f"renewal crashed: {exc!r}")
            return
        if next_at is not None and not self._stop.is_set():
            self._schedule_renewal(next_at)

    def _renew_step(self) -> float | None:
        """Extend once; the time of the next step, or None when renewal is over."""
        if self._stop.is_set():
            return None
        attempt_at = self._clock.monotonic()
        if attempt_at >= self._valid_until:
            self._mark_lost(
                f"not renewed within its ttl of {self.ttl}s ({self._failures} failures)"
            )
            return None
        try:
            self._lock.extend(self.ttl, replace_ttl=True)
        except LockNotOwnedError:
            self._mark_lost("key expired or taken by another token")
            return None
        except Exception as exc:  # outage or any other failure: retry until the TTL runs out
            if self._stop.is_set():
                return None
            if self._failures == 0:
                log.warning("lock.renew_failed", key=self.key, token=self.token, error=repr(exc))
            delay: float = min(_RETRY_FIRST_S * 2**self._failures, _RETRY_MAX_S)
            self._failures += 1
            return min(self._clock.monotonic() + delay, self._valid_until)
        with self._state:
            self._valid_until = attempt_at + self.ttl
        if self._failures:
            log.info(
                "lock.renew_recovered", key=self.key, token=self.token, failures=self._failures
            )
            self._failures = 0
        return attempt_at + self._renew_interval

    def _mark_lost(self, reason: str) -> None:
        with self._state:
            if self._released or self.lost.is_set():
                return  # a released lock is not lost, and a loss is reported once
            self.lost.set()
        log.warning("lock.lost", key=self.key, token=self.token, reason=reason)
        if self._on_lost is None:
            return
        try:
            self._on_lost(self)
        except Exception:  # the callback's bug must not hide the loss or kill this thread
            log.exception("lock.on_lost_failed", key=self.key, token=self.token)


# -- many locks in one round trip (occurrences due at the same moment) -------------------------


def acquire_many(locks: Sequence[DistributedLock]) -> list[bool | LockUnavailable]:
    """Try every lock once, in one pipeline: True held (renewal started), False held by
    someone else, LockUnavailable when Redis could not be asked about it. Locks of one client."""
    if len(locks) <= 1 or len({id(lock._redis) for lock in locks}) > 1:
        return [_acquire_one(lock) for lock in locks]
    attempt_at = locks[0]._clock.monotonic()
    pipe = locks[0]._redis.pipeline(transaction=False)
    for lock in locks:
        pipe.set(lock.key, lock.token, nx=True, px=int(lock.ttl * 1000))
    try:
        replies = pipe.execute(raise_on_error=False)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # Redis down or hung (its client already retried): an answer for all, at once; each
        # lock alone would pay the retries and time-outs once per lock. Keys a lost reply may
        # have set expire with their TTL, and their occurrences are recorded skipped.
        reason = f"Redis unreachable ({type(exc).__name__}: {exc})"
        return [LockUnavailable(f"cannot take lock {lock.key}: {reason}") for lock in locks]
    except RedisError:
        # The batch may have half-happened: each lock alone, whose retry knows its own token.
        return [_acquire_one(lock) for lock in locks]
    answers: list[bool | LockUnavailable] = []
    for lock, reply in zip(locks, replies, strict=True):
        if isinstance(reply, Exception):
            answers.append(_acquire_one(lock))
        elif reply:
            # redis-py's Lock keeps the token it holds: extend and release need it.
            lock._lock.local.token = lock.token.encode()
            lock._mark_taken(attempt_at)
            answers.append(True)
        else:
            answers.append(False)
    return answers


def _acquire_one(lock: DistributedLock) -> bool | LockUnavailable:
    try:
        return lock.acquire()
    except LockUnavailable as exc:
        return exc


def holders_many(locks: Sequence[DistributedLock]) -> list[str | LockUnavailable | None]:
    """Who holds each key now (its token), in one pipeline; None when free."""
    if not locks:
        return []
    pipe = locks[0]._redis.pipeline(transaction=False)
    for lock in locks:
        pipe.get(lock.key)
    try:
        replies = pipe.execute()
    except RedisError as exc:
        error = LockUnavailable(
            f"cannot read locks: Redis unreachable ({type(exc).__name__}: {exc})"
        )
        return [error] * len(locks)
    return [None if reply is None else _as_text(reply) for reply in replies]


def release_many(locks: Sequence[DistributedLock]) -> None:
    """Release every lock still ours, in one pipeline (each only if the key holds its token);
    never raises: a key we could not delete expires after its TTL."""
    ours = [lock for lock in locks if lock._stop_holding()]
    if len(ours) <= 1:
        for lock in ours:
            lock._delete_if_ours()
        return
    release_script = ours[0]._lock.lua_release  # registered by redis-py's Lock on first use
    assert release_script is not None
    pipe = ours[0]._redis.pipeline(transaction=False)
    for lock in ours:
        release_script(keys=[lock.key], args=[lock.token], client=pipe)
    try:
        replies = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        log.warning("lock.release_failed", keys=len(ours), error=repr(exc))
        return
    for lock, reply in zip(ours, replies, strict=True):
        if isinstance(reply, Exception) or not reply:
            lock._delete_if_ours()  # say why, one by one (rare)
        else:
            log.debug("lock.released", key=lock.key, token=lock.token)
