"""The one boundary over PostgreSQL: a psycopg_pool pool, rows as dicts, our own exceptions.

psycopg exceptions become ours here, by `database/errors.py`'s rules: connection problems become
`DatabaseUnavailable` (naming host, port and database, never the password) and statement errors
become `DatabaseError` keeping the violated constraint's name.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from database.errors import READ_ONLY_SQLSTATE as READ_ONLY_SQLSTATE
from database.errors import TRANSIENT_ATTEMPTS as TRANSIENT_ATTEMPTS
from database.errors import TRANSIENT_SQLSTATES as TRANSIENT_SQLSTATES
from database.errors import describe_target as describe_target
from database.errors import first_line
from database.errors import retry_transient as retry_transient
from database.errors import translate_error as translate_error
from services.errors import DatabaseError, DatabaseUnavailable
from services.process_wide import ProcessWide


class UnreadableJson:
    """Stands in for a json/jsonb value too deeply nested for Python's parser, so that one
    hostile row becomes an invalid row instead of an error that fails a whole query."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable JSON: {self.reason}>"


def load_json(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except RecursionError:
        return UnreadableJson("nested too deeply")


set_json_loads(load_json)

Params = Mapping[str, Any] | Sequence[Any] | None
FAST_CHECKOUT = 1.0  # seconds a job run's write waits for a pooled connection before checking
Row = dict[str, Any]
# In autocommit each statement is its own transaction: read-only on a standby, or where
# default_transaction_read_only is on.
_READ_ONLY_PROBE = "SELECT current_setting('transaction_read_only') = 'on'"


class Session:
    """Statements on one connection (inside a transaction, or autocommit)."""

    def __init__(self, conn: psycopg.Connection[Row], target: str) -> None:
        self.conn = conn
        self._target = target

    def execute(self, query: str, params: Params = None) -> int:
        """Run a statement; return the number of rows it affected."""
        with self._cursor(query, params) as cur:
            return cur.rowcount

    def fetch_one(
        self, query: str, params: Params = None, *, prepare: bool | None = None
    ) -> Row | None:
        with self._cursor(query, params, prepare) as cur:
            return cur.fetchone()

    def fetch_all(
        self, query: str, params: Params = None, *, prepare: bool | None = None
    ) -> list[Row]:
        with self._cursor(query, params, prepare) as cur:
            return cur.fetchall()

    def fetch_batches(self, query: str, params: Params = None, *, size: int) -> Iterator[list[Row]]:
        """The rows in lists of at most `size`, converted to dicts one list at a time, so a
        large result never exists as Python objects all at once (the start-up load)."""
        with self._cursor(query, params) as cur:
            while batch := cur.fetchmany(size):
                yield batch

    def fetch_value(self, query: str, params: Params = None) -> Any:
        row = self.fetch_one(query, params)
        return None if row is None else next(iter(row.values()))

    @contextmanager
    def _cursor(
        self, query: str, params: Params, prepare: bool | None = None
    ) -> Iterator[psycopg.Cursor[Row]]:
        """`prepare`: psycopg's, None (the default) prepares a statement on a connection once it
        ran there 5 times; False never does, so PostgreSQL plans every call with its parameters.
        A prepared statement soon gets a generic plan, which cannot tell `x IS NULL OR col = x`
        with x NULL from x set, and so cannot choose the index an optional filter needs."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(query, params, prepare=prepare)
                yield cur
        except psycopg.Error as exc:
            if exc.sqlstate == READ_ONLY_SQLSTATE:
                # Closed, the pool discards it: the next connection goes to whichever host
                # accepts writes (target_session_attrs=read-write), not back to this one.
                self.conn.close()
            raise translate_error(exc, self._target) from exc


class Listener:
    """A dedicated autocommit connection, outside the pool, that LISTENs on channels."""

    def __init__(self, conn: psycopg.Connection[Any], target: str) -> None:
        self.conn = conn
        self._target = target

    def listen(self, channels: Iterable[str]) -> None:
        """LISTEN on each channel (a name quoted as an identifier, never pasted into SQL)."""
        try:
            for channel in channels:
                self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            raise translate_error(exc, self._target) from exc

    def check_writable(self) -> None:
        """DatabaseUnavailable when this connection's server answers no more, or takes no
        writes any more: an old primary that a failover fenced read-only instead of stopping
        keeps its LISTEN connections, but nobody writes there, so they would hear nothing."""
        try:
            row = self.conn.execute(_READ_ONLY_PROBE).fetchone()
        except psycopg.Error as exc:
            raise translate_error(exc, self._target) from exc
        if row is not None and row[0]:
            raise DatabaseUnavailable(
                f"PostgreSQL at {self._target} accepts no writes (a standby, or a primary made "
                "read-only): listening elsewhere"
            )

    def notifications(self, timeout: float) -> Iterator[tuple[str, str]]:
        """(channel, payload) of each notification as it arrives, for `timeout` seconds."""
        try:
            for note in self.conn.notifies(timeout=timeout):
                yield note.channel, note.payload
        except psycopg.Error as exc:
            raise translate_error(exc, self._target) from exc


class DatabaseConnection:
    """A bounded pool of connections to one database (min/max size from settings)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 10.0,
        name: str = "scheduler",
    ) -> None:
        self.url = url
        self.target = describe_target(url)
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            timeout=pool_timeout,
            reconnect_timeout=0,  # keep retrying in the background across long outages
            # No `check` on checkout: it would turn a dead server's instant "connection refused"
            # into a wait for the pool time-out. A statement on a dead connection fails at once
            # instead (DatabaseUnavailable), callers defer or retry, and the pool drops it.
            connection_class=psycopg.Connection[Row],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": max(1, round(connect_timeout)),
                "application_name": "enhanced-scheduler",
            },
        )
        self._open_lock = threading.Lock()
        self._opened = False

    def _ensure_open(self) -> None:
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self._pool.open(wait=False)
                    self._opened = True

    def check(self) -> None:
        """Connect once outside the pool; raise DatabaseUnavailable with the server's reason."""
        try:
            with psycopg.connect(
                self.url, connect_timeout=max(1, round(self._connect_timeout))
            ) as c:
                c.execute("SELECT 1")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.target}: {first_line(exc)}"
            ) from None

    def ping(self) -> bool:
        """True when a pooled connection answers `SELECT 1`."""
        try:
            return bool(self.fetch_value("SELECT 1") == 1)
        except (DatabaseUnavailable, DatabaseError):
            return False

    @contextmanager
    def session(self, *, fast: bool = False) -> Iterator[Session]:
        """A pooled connection in autocommit mode.

        fast: for a job run's own writes, which must not hang on a dead server (they can wait in
        memory instead). No connection within a second and the server refuses a new one:
        DatabaseUnavailable at once; a server that answers only means a busy pool: keep waiting.
        """
        self._ensure_open()
        try:
            with ExitStack() as stack:
                timeout = FAST_CHECKOUT if fast else self._pool_timeout
                try:
                    conn = stack.enter_context(self._pool.connection(timeout=timeout))
                except PoolTimeout:
                    if not fast or not self._server_answers():
                        raise
                    conn = stack.enter_context(self._pool.connection(timeout=self._pool_timeout))
                yield Session(conn, self.target)
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate_error(exc, self.target) from exc

    def _server_answers(self) -> bool:
        try:
            self.check()
        except DatabaseUnavailable:
            return False
        return True

    @contextmanager
    def listening(self, channels: Iterable[str]) -> Iterator[Listener]:
        """A new connection LISTENing on `channels` (with keepalives), closed on exit.
        DatabaseUnavailable when it cannot connect or is lost."""
        try:
            # It idles for hours: TCP keepalives notice a server that vanished without closing
            # it (a cut cable, a frozen VM) within about a minute, instead of never.
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=5,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise translate_error(exc, self.target) from exc
        with conn:
            listener = Listener(conn, self.target)
            listener.listen(channels)
            yield listener

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A pooled connection inside one transaction: committed on success, else rolled back."""
        with self.session() as session:
            try:
                with session.conn.transaction():
                    yield session
            except psycopg.Error as exc:
                raise translate_error(exc, self.target) from exc

    # The one-statement helpers below run in autocommit: a statement PostgreSQL aborted as a
    # deadlock victim changed nothing, so it is sent again (retry_transient) instead of failing
    # a run's bookkeeping over a lock-order race with an API transaction.

    def execute(self, query: str, params: Params = None) -> int:
        def run() -> int:
            with self.session() as session:
                return session.execute(query, params)

        return retry_transient(run)

    def fetch_one(
        self,
        query: str,
        params: Params = None,
        *,
        fast: bool = False,
        prepare: bool | None = None,
    ) -> Row | None:
        def run() -> Row | None:
            with self.session(fast=fast) as session:
                return session.fetch_one(query, params, prepare=prepare)

        return retry_transient(run)

    def fetch_all(
        self,
        query: str,
        params: Params = None,
        *,
        fast: bool = False,
        prepare: bool | None = None,
    ) -> list[Row]:
        """Rows as dicts; `prepare=False` for statements with optional filters (Session._cursor)."""

        def run() -> list[Row]:
            with self.session(fast=fast) as session:
                return session.fetch_all(query, params, prepare=prepare)

        return retry_transient(run)

    def fetch_value(self, query: str, params: Params = None) -> Any:
        def run() -> Any:
            with self.session() as session:
                return session.fetch_value(query, params)

        return retry_transient(run)

    def close(self) -> None:
        with self._open_lock:
            if self._opened:
                self._pool.close(timeout=1.0)  # don't wait long on workers stuck connecting
                self._opened = False


def _default_pool() -> DatabaseConnection:
    from services.config import get_settings

    settings = get_settings()
    return DatabaseConnection(
        settings.database_url,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
    )


_db: ProcessWide[DatabaseConnection] = ProcessWide(_default_pool, close=DatabaseConnection.close)


def get_db_connection() -> DatabaseConnection:
    """The process-wide pool, built from settings on first use."""
    return _db.get()


def close_db_connection() -> None:
    """Close and forget the process-wide pool (shutdown, tests)."""
    _db.reset()
