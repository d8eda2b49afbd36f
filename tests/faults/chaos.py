"""The kill -9 loop shared by the chaos cases: a random instance killed every 10-20 s and
restarted at once or after up to 3 s down, the others kept under watch all along; and case 1's
whole run over it (200 schedules every second), which the sharded case repeats over shards."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.faults.common import (
    NOOP,
    Spawn,
    db_now,
    engine_env,
    keep_alive_for,
    lateness,
    percentile,
    start_all,
)
from tests.faults.invariants import CaseRecord, Ending, Report, check_invariants
from tests.support.daemon import DaemonProcess
from tests.support.schedules import insert_interval_schedules

SCHEDULES, PERIOD = 200, 1
# The chaos run at issue 21's settings: a killed instance's rows must be resolved within
# LOCK_TIMEOUT + SCHEDULE_CHECK_INTERVAL (5 + 2 s, engine_env's interval) + a 2 s margin.
CHAOS_LOCK_TIMEOUT, CHAOS_HEARTBEAT, SCHEDULE_CHECK_INTERVAL = 5.0, 0.5, 2.0
CHECK_INTERVAL = SCHEDULE_CHECK_INTERVAL + 2.0


@dataclass
class ChaosLog:
    """What the loop did: every process it ran (the first ones included), how each killed one
    ended, and (instance, seconds down) per kill."""

    every: list[DaemonProcess]
    endings: list[Ending] = field(default_factory=list)
    kills: list[tuple[str, float]] = field(default_factory=list)

    def stop(self, slots: dict[str, DaemonProcess], database_url: str) -> list[Ending]:
        """SIGTERM the survivors (each must exit 0); every ending, the kills' first."""
        for name, daemon in slots.items():
            assert daemon.terminate(timeout=40) == 0, daemon.tail()
            self.endings.append(Ending(name, db_now(database_url)))
        return self.endings


def kill_loop(
    slots: dict[str, DaemonProcess],
    restart: Callable[[str, int], DaemonProcess],
    *,
    duration: float,
    quiet_tail: float,
    rng: random.Random,
    database_url: str,
) -> ChaosLog:
    """Run the chaos for `duration` seconds over the started daemons in `slots` (replaced in
    place by their restarts). `restart(name, kill_number)` starts a new process for `name`. No
    kill falls in the last `quiet_tail` seconds, so the survivors can reap the last victim's
    runs before the case stops everything; there is always at least one kill."""
    log = ChaosLog(every=list(slots.values()))
    deadline = time.monotonic() + duration
    last_kill_at = deadline - quiet_tail
    next_kill = min(time.monotonic() + rng.uniform(10, 20), last_kill_at)
    while time.monotonic() < deadline:
        if next_kill <= time.monotonic() <= last_kill_at:
            name = rng.choice(sorted(slots))
            slots[name].kill()
            log.endings.append(Ending(name, db_now(database_url), "killed"))
            down = rng.choice([0.0, rng.uniform(0.5, 3.0)])
            log.kills.append((name, round(down, 2)))
            keep_alive_for(down, [d for n, d in slots.items() if n != name])
            slots[name] = restart(name, len(log.kills))
            log.every.append(slots[name])
            next_kill = time.monotonic() + rng.uniform(10, 20)
        keep_alive_for(min(0.5, max(0.0, deadline - time.monotonic())), list(slots.values()))
    return log


def kill_chaos_case(
    case: str,
    env: dict[str, str],
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    spawn: Spawn,
    *,
    duration: float,
    instances: int = 3,
    lock_timeout: float = CHAOS_LOCK_TIMEOUT,
    **settings: str,
) -> Report:
    """`instances` daemons (with `settings` on top of case 1's), 200 schedules every second,
    the kill loop for `duration` seconds; then every invariant, the whole run being one healthy
    window (the survivors cover the dead instance), killed runs resolved within `lock_timeout`
    + CHECK_INTERVAL. Prints the kills and the figures."""
    seed = int(os.environ.get("FAULTS_SEED") or time.time())
    rng = random.Random(seed)
    print(f"\nchaos seed {seed} (FAULTS_SEED={seed} replays the same choices)")
    schedules = insert_interval_schedules(
        database_url, SCHEDULES, seconds=PERIOD, job_type="python", payload=NOOP
    )
    environ = engine_env(
        env,
        LOCK_TIMEOUT=f"{lock_timeout:g}",
        HEARTBEAT_INTERVAL=f"{CHAOS_HEARTBEAT:g}",
        SCHEDULE_CHECK_INTERVAL=f"{SCHEDULE_CHECK_INTERVAL:g}",
        MAX_WORKERS="10",
        **settings,
    )
    slots = {f"inst-{n}": spawn(environ, f"inst-{n}") for n in range(instances)}
    start_all(slots.values())
    window_start = db_now(database_url)
    chaos = kill_loop(
        slots,
        lambda name, n: spawn(environ, name, log_name=f"{name}-{n}").start(timeout=60),
        duration=duration,
        # The last kill leaves time for the others to reap its runs before everything stops.
        quiet_tail=lock_timeout + CHECK_INTERVAL + 3,
        rng=rng,
        database_url=database_url,
    )
    window_end = db_now(database_url)

    report = check_invariants(
        CaseRecord(
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            lock_timeout=lock_timeout,
            check_interval=CHECK_INTERVAL,
            heartbeat_ttl=3 * CHAOS_HEARTBEAT,
            endings=chaos.stop(slots, database_url),
            schedules=schedules,
            period=PERIOD,
            healthy=[(window_start, window_end)],
            daemons=chaos.every,
        )
    )
    late = lateness(r for r in report.rows if r["trigger"] == "schedule")
    print(f"kills (instance, seconds down): {chaos.kills}")
    print(f"{case}: {report}")
    print(
        f"{case} lateness: p50 {percentile(late, 50):.3f} s, p99 {percentile(late, 99):.3f} s, "
        f"max {max(late):.3f} s over {len(late)} runs"
    )
    assert len(chaos.kills) >= max(1, int(duration // 20) - 1), chaos.kills
    assert report.expected_occurrences >= SCHEDULES * (duration - 5)
    return report
