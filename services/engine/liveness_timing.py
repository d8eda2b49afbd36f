"""The heartbeat and reaper periods, derived so that a dead instance's `running` rows are
abandoned within LOCK_TIMEOUT + SCHEDULE_CHECK_INTERVAL of its death, whatever the settings.

The bound: a dead instance's heartbeat key is gone at most `ttl` after its last beat and its
locks at most LOCK_TIMEOUT after their last renewal; the reaper then needs at most one `sweep`
period to see both. So `ttl <= LOCK_TIMEOUT` and `sweep <= SCHEDULE_CHECK_INTERVAL` give the bound
(plus the sweep's own duration). The other side, a live instance never taken for dead: it
rewrites its heartbeat every `beat` = ttl/4 at most, so a pause (SIGSTOP, GC, a frozen Redis)
must last 3/4 of the TTL before its heartbeat lapses; its locks, renewed every LOCK_TIMEOUT/3,
are the second witness, and both must be gone before anything is abandoned.
"""

from __future__ import annotations

from dataclasses import dataclass

BEATS_PER_TTL = 4  # a heartbeat survives ttl*(1 - 1/4) of silence: 3.75 s at LOCK_TIMEOUT=5
HEARTBEATS_PER_TTL = 3  # HEARTBEAT_INTERVAL's documented meaning: the TTL is three of them


@dataclass(frozen=True)
class LivenessTiming:
    ttl: float  # the heartbeat key's TTL
    beat: float  # seconds between heartbeats
    sweep: float  # seconds between reaper passes
    # The reaper's own-health rule (see Reaper.sweep): our beats count as steady while no two
    # successful ones are more than `max_gap` apart, and reaping needs `settle` seconds of them.
    max_gap: float
    settle: float

    @classmethod
    def derive(
        cls, *, lock_timeout: float, heartbeat_interval: float, check_interval: float
    ) -> LivenessTiming:
        ttl = min(HEARTBEATS_PER_TTL * heartbeat_interval, lock_timeout)
        beat = min(heartbeat_interval, ttl / BEATS_PER_TTL)
        # Half the TTL of silence: a peer that went through the same stall may be near its
        # TTL (its beat in flight plus a period), so our own stall that long disqualifies us.
        max_gap = ttl / 2
        # After a stall, wait a TTL before judging others: every live peer beats within `beat`
        # of the end of the stall, and a peer dead all along still goes within the next TTL.
        return cls(ttl=ttl, beat=beat, sweep=min(beat, check_interval), max_gap=max_gap, settle=ttl)

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))
