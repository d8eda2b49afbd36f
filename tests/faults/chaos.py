"""The kill -9 loop shared by the chaos cases: a random instance killed every 10-20 s and
restarted at once or after up to 3 s down, the others kept under watch all along."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.faults.common import db_now, keep_alive_for
from tests.faults.invariants import Ending
from tests.support.daemon import DaemonProcess


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
