"""The `notification_channels` table's store: where notifications go."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from database.queries import load_queries
from services.errors import ChannelExists, ChannelNotFound, DatabaseError
from services.model.records import Channel

__all__ = ["ChannelStore"]

_SQL = load_queries("notification_channels")


class ChannelStore:
    def __init__(self, db: DatabaseConnection) -> None:
        self.db = db

    def create(self, name: str, kind: str, target: dict[str, Any], enabled: bool = True) -> Channel:
        """Insert a channel whose name, kind and target the caller has checked (notify.targets)."""
        params = {"name": name, "kind": kind, "target": Jsonb(target), "enabled": enabled}
        try:
            row = self.db.fetch_one(_SQL["insert_channel"], params)
        except DatabaseError as exc:
            if exc.constraint == "notification_channels_pkey":
                raise ChannelExists(name) from None
            raise
        assert row is not None
        return Channel.from_row(row)

    def list(self) -> builtins.list[Channel]:
        return [Channel.from_row(row) for row in self.db.fetch_all(_SQL["list_channels"])]

    def get(self, name: str) -> Channel:
        row = self.db.fetch_one(_SQL["get_channel"], {"name": name})
        if row is None:
            raise ChannelNotFound(name)
        return Channel.from_row(row)

    def named(self, names: Sequence[str]) -> dict[str, Channel]:
        rows = self.db.fetch_all(_SQL["channels_named"], {"names": builtins.list(names)})
        return {row["name"]: Channel.from_row(row) for row in rows}

    def remove(self, name: str) -> None:
        if self.db.fetch_one(_SQL["delete_channel"], {"name": name}) is None:
            raise ChannelNotFound(name)
