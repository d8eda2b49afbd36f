"""`python -m database.bootstrap`: create DATABASE_URL's database if missing, then migrate.

Used by `make run` / `make test` so that a fresh machine needs no step by hand.
"""

from __future__ import annotations

import sys

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from database.connection import describe_target
from database.migrations import Migrator
from services.config import load_settings
from services.errors import SchedulerError


def ensure_database(url: str) -> bool:
    """Create the database named in `url` when it does not exist; True if created."""
    info = conninfo_to_dict(url)
    name = str(info.get("dbname") or info.get("user") or "")
    admin = make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.errors.DuplicateDatabase:
        return False
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchedulerError(
            f"cannot prepare database at {describe_target(url)}: {reason}"
        ) from None


def main() -> int:
    try:
        url = load_settings().database_url
        if ensure_database(url):
            print(f"created database {describe_target(url)}", file=sys.stderr)
        for file in Migrator(url).apply():
            print(f"applied {file.filename}", file=sys.stderr)
    except SchedulerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
