"""Which shard a schedule belongs to, and which instances own a shard (DESIGN.md "Beyond one
machine"). Pure functions: migration 011's `scheduler_shard_key`/`scheduler_shard` compute the
same values in SQL.

A shard is a range of one 32-bit key (the first 32 bits of md5 of the id's text): shard k holds
the keys in [ceil(k * 2^32 / S), ceil((k + 1) * 2^32 / S)), which is floor(key * S / 2^32) = k.
So one index on the key serves every shard count, and owning a set of shards is reading a few
ranges of it. Owners are chosen by rendezvous (highest-random-weight) hashing: each instance
scores each shard; the R highest scores own it. An instance joining or leaving moves only the
shards it gains or held, about R/N of them, and every instance computes the same answer from the
same member list, with nothing to coordinate but that list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

KEY_BITS = 32
KEY_SPACE = 1 << KEY_BITS


def shard_key(schedule_id: UUID) -> int:
    """The first 32 bits of md5(str(schedule_id)), unsigned (SQL: scheduler_shard_key)."""
    return int.from_bytes(hashlib.md5(str(schedule_id).encode()).digest()[:4], "big")


def shard_of(schedule_id: UUID, shards: int) -> int:
    """The shard of a schedule among `shards` (SQL: scheduler_shard)."""
    return (shard_key(schedule_id) * shards) >> KEY_BITS


def shard_bounds(shard: int, shards: int) -> tuple[int, int]:
    """The key range [lo, hi) of one shard."""
    return -(-shard * KEY_SPACE // shards), -(-(shard + 1) * KEY_SPACE // shards)


def _score(shard: int, instance_id: str) -> bytes:
    return hashlib.blake2b(f"{shard}:{instance_id}".encode(), digest_size=8).digest()


def owners(shard: int, instances: Iterable[str], replicas: int) -> list[str]:
    """The `replicas` instances (fewer when fewer live) that own `shard`, best first, by plain
    rendezvous (no bound on how many shards one instance gets)."""
    return _ranked(shard, instances)[:replicas]


def _ranked(shard: int, instances: Iterable[str]) -> list[str]:
    return sorted(instances, key=lambda instance: (_score(shard, instance), instance), reverse=True)


def assign(shards: int, instances: Iterable[str], replicas: int) -> dict[int, list[str]]:
    """The owners of every shard: rendezvous with bounded loads. Each shard goes to its best
    ranked instances that still have room (ceil(shards * replicas / instances)); then, while one
    instance holds two shards more than another, one of its shards moves to the less loaded one
    (the shard that one ranks best). So every instance holds the fair count or one more: with 8
    shards, 2 replicas and 3 instances, plain rendezvous gives one instance 7 shards about one
    time in five; bounded and levelled, each holds 5 or 6. A member joining or leaving still
    moves few shards, and every instance computes the same answer from the same member list."""
    members = sorted(set(instances))
    if not members:
        return {k: [] for k in range(shards)}
    per_shard = min(replicas, len(members))
    room = -(-shards * per_shard // len(members))
    load = dict.fromkeys(members, 0)
    owned: dict[int, list[str]] = {}
    for k in range(shards):
        ranked = _ranked(k, members)
        chosen = [m for m in ranked if load[m] < room][:per_shard]
        # The last shards may find fewer members with room than replicas: the best ranked of
        # the rest make up the number (a shard never has fewer owners than it should).
        chosen += [m for m in ranked if m not in chosen][: per_shard - len(chosen)]
        for member in chosen:
            load[member] += 1
        owned[k] = chosen
    _level(owned, load)
    return owned


def _level(owned: dict[int, list[str]], load: dict[str, int]) -> None:
    """Move shards from the most to the least loaded member until no two differ by more than
    one. Each move lowers the sum of squared loads, so this ends."""
    while True:
        most = max(load, key=lambda m: (load[m], m))
        least = min(load, key=lambda m: (load[m], m))
        if load[most] - load[least] <= 1:
            return
        movable = [k for k, chosen in owned.items() if most in chosen and least not in chosen]
        k = max(movable, key=lambda shard: (_score(shard, least), shard))
        owned[k] = [least if m == most else m for m in owned[k]]
        load[most] -= 1
        load[least] += 1


@dataclass(frozen=True)
class ShardSet:
    """The shards an instance handles; `shards == 1` is every schedule (no sharding)."""

    shards: int
    owned: frozenset[int]

    @classmethod
    def everything(cls) -> ShardSet:
        return cls(1, frozenset({0}))

    @property
    def sharded(self) -> bool:
        return self.shards > 1

    def holds(self, schedule_id: UUID) -> bool:
        return not self.sharded or shard_of(schedule_id, self.shards) in self.owned

    def bounds(self, only: Iterable[int] | None = None) -> tuple[list[int], list[int]]:
        """The key ranges of `only` (default: every owned shard) as two lists, lows and highs,
        for a query's `unnest(lo, hi)`."""
        ranges = [
            shard_bounds(k, self.shards) for k in sorted(self.owned if only is None else only)
        ]
        return [lo for lo, _ in ranges], [hi for _, hi in ranges]


def owned_label(described: object) -> str:
    """An instance's shards as its status shows them ('all', or '0,3,5 of 8 (+1 loading)'), from
    the `shards` entry of its heartbeat summary (missing: an instance of an older version)."""
    if not isinstance(described, dict) or int(described.get("count", 1)) <= 1:
        return "all"
    owned = ",".join(str(k) for k in described.get("owned", []))
    loading = len(described.get("loading", []))
    label = f"{owned or 'none'} of {described['count']}"
    return f"{label} (+{loading} loading)" if loading else label
