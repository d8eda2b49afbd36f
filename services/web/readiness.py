"""Is this process ready, and how fast do its dependencies answer? Checks with deadlines.

Each check runs on a small pool of its own, and at most one check of each kind is in flight: a
probe against a hung PostgreSQL waits for that one check up to the deadline and reports "no answer
within 2s"; it never piles up threads behind the hung server or waits on the scheduler's pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from prometheus_client import CollectorRegistry

from services.clock import Clock
from services.lock.client import create_redis_client
from services.lock.sentinel import MasterFollower, endpoint
from services.lock.target import RedisTarget
from services.log import mask_secrets

READY_CHECK_TIMEOUT = 2.0


class OpsView(Protocol):
    """What the operations endpoints ask of the process they serve (a daemon, or `serve`)."""

    @property
    def metrics_registry(self) -> CollectorRegistry: ...

    @property
    def redis_target(self) -> RedisTarget: ...

    def readiness_problem(self) -> str | None:
        """Why the process itself is not ready ("not started", "stopping"), or None."""
        ...

    def check_database(self) -> None:
        """Raise, with the reason, when PostgreSQL does not answer."""
        ...

    def status(self) -> dict[str, Any]: ...


def _problem(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return mask_secrets(text)


@dataclass(frozen=True, slots=True)
class CheckResult:
    problem: str | None
    latency_ms: float | None  # None: no answer within the deadline
    details: dict[str, Any] = field(default_factory=dict)  # what the check saw (Redis: master)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": self.problem is None,
            "latency_ms": self.latency_ms,
            **self.details,
        }
        if self.problem is not None:
            body["error"] = self.problem
        return body


class Readiness:
    def __init__(self, ops: OpsView, *, clock: Clock, timeout: float = READY_CHECK_TIMEOUT):
        self.ops = ops
        self.clock = clock
        self.timeout = timeout
        # A client of our own with short time-outs: a probe never waits on the scheduler's pool.
        self._redis: redis.Redis = create_redis_client(
            ops.redis_target,
            max_connections=2,
            socket_timeout=timeout / 2,
            connect_timeout=timeout / 2,
        )
        self._follower = MasterFollower(self._redis)
        self._checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-ready-check")
        self._in_flight: dict[str, Future[CheckResult]] = {}
        self._checkers: dict[str, Callable[[], dict[str, Any] | None]] = {
            "database": ops.check_database,
            "redis": self._ping_redis,
        }

    def close(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)
        self._redis.close()

    async def check_all(self) -> dict[str, CheckResult]:
        """Every dependency's result, all within one deadline; the event loop never blocks."""
        pending = {name: asyncio.wrap_future(self._start(name)) for name in self._checkers}
        await asyncio.wait(pending.values(), timeout=self.timeout)
        results: dict[str, CheckResult] = {}
        for name, future in pending.items():
            if future.done():
                results[name] = future.result()
            else:  # the check goes on; the next probe shares it instead of starting another
                results[name] = CheckResult(f"no answer within {self.timeout:g}s", None)
        return results

    async def readiness(self) -> tuple[bool, list[str], dict[str, Any]]:
        """(ready, reasons, redis): every check that fails, named by what failed, and where
        the Redis probe found its server (with Sentinel: the master now in use)."""
        results = await self.check_all()
        reasons = [f"{n}: {r.problem}" for n, r in results.items() if r.problem]
        problem = self.ops.readiness_problem()
        if problem:
            reasons.append(f"scheduler: {problem}")
        return not reasons, reasons, results["redis"].details

    def _start(self, name: str) -> Future[CheckResult]:
        # Called on the event loop's thread only, so the in-flight table needs no lock.
        future = self._in_flight.get(name)
        if future is None or future.done():
            future = self._checks.submit(self._timed, self._checkers[name])
            self._in_flight[name] = future
        return future

    def _timed(self, check: Callable[[], dict[str, Any] | None]) -> CheckResult:
        started = self.clock.monotonic()
        details: dict[str, Any] | None = None
        try:
            details = check()
        except Exception as exc:
            problem: str | None = _problem(exc)
        else:
            problem = None
        latency = round((self.clock.monotonic() - started) * 1000, 2)
        return CheckResult(problem, latency, details or {})

    def _ping_redis(self) -> dict[str, Any]:
        self._follower.check()  # a probe names the master the sentinels name now
        self._redis.ping()
        # After the ping the pool knows the master it reached (Sentinel asks on each connect).
        where = endpoint(self._redis)
        return {"mode": where["mode"], "master": where["master"]}
