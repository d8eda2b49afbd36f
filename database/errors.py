"""How psycopg's exceptions become ours, which of them are worth sending again, and how a
connection string is named in messages (every host, never a password)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

from services.errors import DatabaseError, DatabaseUnavailable

T = TypeVar("T")
# A deadlock victim (40P01) or a serialization failure (40001) was rolled back whole and had no
# effect: running it again is safe, and is what PostgreSQL's documentation asks of clients.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
TRANSIENT_ATTEMPTS = 4
# read_only_sql_transaction: the server takes no writes (a standby, or an old primary that a
# failover tool fenced with default_transaction_read_only). Not the statement's fault: the
# write must wait for a writable primary, like one during an outage, and never be dropped.
READ_ONLY_SQLSTATE = "25006"


def retry_transient(run: Callable[[], T], *, attempts: int = TRANSIENT_ATTEMPTS) -> T:
    """`run()` again (after a short random pause) while PostgreSQL aborts it as a deadlock
    victim or a serialization failure; any other error, or the last attempt's, is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return run()
        except DatabaseError as exc:
            if exc.sqlstate not in TRANSIENT_SQLSTATES or attempt == attempts:
                raise
            time.sleep(random.uniform(0.005, 0.05) * attempt)  # de-synchronise the two sides
    raise AssertionError("unreachable")


def describe_target(url: str) -> str:
    """'host:port/database' of a connection string, for messages (no user, no password)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    hosts = str(info.get("host") or "localhost").split(",")
    ports = str(info.get("port") or "5432").split(",")
    if len(ports) == 1:  # libpq: one port applies to every host
        ports = ports * len(hosts)
    # A multi-host URL (failover) names each host with its own port: "a:5432,b:5433/db".
    where = ",".join(
        f"{host or 'localhost'}:{port or 5432}" for host, port in zip(hosts, ports, strict=False)
    )
    return f"{where}/{info.get('dbname') or info.get('user') or ''}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def translate_error(exc: Exception, target: str) -> Exception:
    """Map a psycopg/pool exception to ours; anything else is returned unchanged."""
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(
            f"PostgreSQL at {target} is unreachable (no connection available)"
        )
    # Unreachable means no server or a lost connection (SQLSTATE class 08, an admin shutdown,
    # or none at all); a deadlock or a cancelled query is an OperationalError too, but the server
    # is there.
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, psycopg.OperationalError) and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03"}
    ):
        return DatabaseUnavailable(f"PostgreSQL at {target} is unreachable: {first_line(exc)}")
    if sqlstate == READ_ONLY_SQLSTATE:
        return DatabaseUnavailable(
            f"PostgreSQL at {target} accepts no writes (a standby, or a primary made read-only): "
            f"{first_line(exc)}"
        )
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        return DatabaseError(
            first_line(exc), constraint=diag.constraint_name, sqlstate=diag.sqlstate
        )
    return exc
