"""A private primary and its streaming hot standby, for failover tests: kill the primary,
promote the standby, see who follows.

Both are `PostgresServer` clusters on spare ports of 127.0.0.1. The standby is a
`pg_basebackup -R -X stream` of the primary and replicates **synchronously**
(`synchronous_standby_names = '*'`, `synchronous_commit = on` on the primary): a commit the
primary acknowledged is on the standby, so a promotion loses nothing that a client was told was
written. (With asynchronous replication the last transactions before a crash can vanish at
failover, a claim among them; that is a property of the deployment, not something a client can
repair.) The standby itself has no synchronous standby, so once promoted it commits alone.

    with PostgresPair() as pair:
        url = pair.create_database("app")        # multi-host, target_session_attrs=read-write
        pair.kill_primary(); pair.promote_standby()  # kill -9, then pg_ctl promote
"""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from tests.support.managed import Managed
from tests.support.postgres_server import OS_USER, PostgresServer

PRIMARY_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "4",
    "synchronous_commit": "on",
    "synchronous_standby_names": "*",
}
STANDBY_SETTINGS = {"hot_standby": "on", "synchronous_commit": "on"}


class PostgresPair(Managed):
    def __init__(self, *, stream_timeout: float = 30.0) -> None:
        self.primary = PostgresServer(settings=PRIMARY_SETTINGS)
        self.standby = PostgresServer(settings=STANDBY_SETTINGS)
        self.stream_timeout = stream_timeout
        self.promoted = False

    # -- addresses ----------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, standby_first: bool = False) -> str:
        """The libpq multi-host URL of both servers; libpq tries them in order and keeps the
        first that accepts writes."""
        servers = [self.primary, self.standby]
        if standby_first:
            servers.reverse()
        hosts = ",".join(f"{s.host}:{s.port}" for s in servers)
        return f"postgresql://{OS_USER}@{hosts}/{dbname}?target_session_attrs=read-write"

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.primary.start()
        self.standby.base_backup_from(self.primary)
        self.standby.start()
        self.wait_streaming()

    def wait_streaming(self) -> None:
        """Until the primary sees its standby streaming as its synchronous standby."""
        deadline = time.monotonic() + self.stream_timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.primary.url(), autocommit=True, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication"
                    " WHERE state = 'streaming' AND sync_state = 'sync'"
                ).fetchone()
            if row is not None and row[0] >= 1:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"standby on port {self.standby.port} not streaming after {self.stream_timeout}s:\n"
            f"{self.standby.log_tail()}"
        )

    def kill_primary(self) -> None:
        self.primary.kill()

    def promote_standby(self) -> None:
        self.standby.promote()
        self.promoted = True

    def close(self) -> None:
        try:
            self.standby.close()
        finally:
            self.primary.close()

    # -- databases ----------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create a database on the primary (it replicates) and return its multi-host URL."""
        with psycopg.connect(self.primary.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def current_primary(self) -> PostgresServer:
        return self.standby if self.promoted else self.primary
