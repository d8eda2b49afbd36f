"""The shard leases' store: `scheduler_members` and `scheduler_shards` (migration 011).

Lease times are the database's own `now()`, never an instance's clock: instances whose clocks
disagree still agree on who is live.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from database.connection import DatabaseConnection
from database.queries import load_queries

__all__ = ["Lease", "Member", "ShardLeaseStore"]

_MEMBERS = load_queries("scheduler_members")
_SHARDS = load_queries("scheduler_shards")


@dataclass(frozen=True)
class Member:
    instance_id: str
    shards: int
    replicas: int


@dataclass(frozen=True)
class Lease:
    shard: int
    instance_id: str
    epoch: int
    loaded: bool


class ShardLeaseStore:
    def __init__(self, db: DatabaseConnection, instance_id: str, *, lease_seconds: float) -> None:
        self.db = db
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds

    def renew(self, shards: int, replicas: int) -> tuple[list[Member], dict[int, Lease]]:
        """One round's bookkeeping, in one transaction: renew our membership and leases, forget
        expired members and leases; the live members and the leases we still hold."""
        me = {"instance_id": self.instance_id, "lease": self.lease_seconds}
        with self.db.transaction() as tx:
            tx.execute(_MEMBERS["renew_member"], {**me, "shards": shards, "replicas": replicas})
            tx.execute(_MEMBERS["expire_members"])
            tx.execute(_SHARDS["expire_shard_leases"])
            members = [
                Member(r["instance_id"], r["shards"], r["replicas"])
                for r in tx.fetch_all(_MEMBERS["live_members"])
            ]
            held = tx.fetch_all(_SHARDS["renew_shard_leases"], me)
        return members, {r["shard"]: self._lease(r) for r in held}

    def take(self, shards: Iterable[int]) -> dict[int, Lease]:
        """New leases (not loaded) on `shards`; a lease we already hold is only renewed."""
        params = {"instance_id": self.instance_id, "lease": self.lease_seconds}
        rows = self.db.fetch_all(_SHARDS["take_shard_leases"], {**params, "shards": sorted(shards)})
        return {r["shard"]: self._lease(r) for r in rows}

    def mark_loaded(self, epochs: Mapping[int, int]) -> None:
        shards = sorted(epochs)
        params = {"shards": shards, "epochs": [epochs[k] for k in shards]}
        self.db.execute(_SHARDS["mark_shards_loaded"], {"instance_id": self.instance_id, **params})

    def forget_loaded(self) -> None:
        """At start-up: leases an earlier process of ours left are no longer loaded."""
        self.db.execute(_SHARDS["forget_loaded_shards"], {"instance_id": self.instance_id})

    def live_leases(self) -> list[Lease]:
        return [Lease(**row) for row in self.db.fetch_all(_SHARDS["live_shard_leases"])]

    def drop(self, shards: Iterable[int]) -> None:
        params = {"instance_id": self.instance_id, "shards": sorted(shards)}
        self.db.execute(_SHARDS["drop_shard_leases"], params)

    def leave(self) -> None:
        """A graceful stop: our membership and every lease go at once."""
        with self.db.transaction() as tx:
            tx.execute(_SHARDS["leave_shards"], {"instance_id": self.instance_id})
            tx.execute(_MEMBERS["leave_members"], {"instance_id": self.instance_id})

    def _lease(self, row: Mapping[str, object]) -> Lease:
        shard, epoch = row["shard"], row["epoch"]
        assert isinstance(shard, int) and isinstance(epoch, int)
        return Lease(shard, self.instance_id, epoch, bool(row["loaded"]))
