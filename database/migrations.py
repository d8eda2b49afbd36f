"""Applies `migrations/NNN_name.sql` in order, once, whatever the number of processes trying.

Each file runs in its own transaction and is recorded in `schema_migrations` with a SHA-256 of its
bytes. A session-level advisory lock serialises concurrent runs: exactly one applies, the others
wait, then find nothing left to do. A file edited after it was applied stops everything.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from database.connection import describe_target, translate_error
from database.queries import load_queries
from services.errors import DatabaseUnavailable, MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
FILE_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
_SQL = load_queries("migrations")


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class MigrationState:
    version: int
    name: str
    applied_at: datetime | None  # None: pending


def discover(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """Every migration file, ordered by version; a badly named or duplicate file is an error."""
    found: dict[int, MigrationFile] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name!r} does not follow the naming rule NNN_lower_snake.sql"
            )
        version = int(match.group("version"))
        if version in found:
            raise MigrationError(
                f"migrations {found[version].filename!r} and {path.name!r} share version {version}"
            )
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = MigrationFile(version, match.group("name"), path, checksum)
    return [found[v] for v in sorted(found)]


class Migrator:
    def __init__(self, database_url: str, directory: Path = MIGRATIONS_DIR) -> None:
        self.database_url = database_url
        self.directory = directory
        self.target = describe_target(database_url)

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[dict[str, object]]]:
        try:
            conn = psycopg.connect(
                self.database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {self.target}: {reason}"
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    def _applied(self, conn: psycopg.Connection[dict[str, object]]) -> dict[int, dict[str, object]]:
        if conn.execute(_SQL["migrations_table_exists"]).fetchone() is None:
            return {}
        rows = conn.execute(_SQL["list_applied"]).fetchall()
        return {int(str(row["version"])): row for row in rows}

    def _verify(self, files: list[MigrationFile], applied: dict[int, dict[str, object]]) -> None:
        by_version = {f.version: f for f in files}
        for version, row in applied.items():
            file = by_version.get(version)
            if file is None:
                raise MigrationError(
                    f"migration {version:03d}_{row['name']} is applied but its file is missing"
                )
            if file.checksum != row["checksum"]:
                raise MigrationError(
                    f"migration file {file.filename} was edited after it was applied "
                    "(checksum differs); restore it and add a new migration instead"
                )

    def status(self) -> list[MigrationState]:
        """Every migration file, applied (with its time) or pending; verifies checksums."""
        files = discover(self.directory)
        with self._connect() as conn:
            applied = self._applied(conn)
        self._verify(files, applied)
        return [
            MigrationState(
                f.version,
                f.name,
                applied[f.version]["applied_at"]  # type: ignore[arg-type]
                if f.version in applied
                else None,
            )
            for f in files
        ]

    def pending(self) -> list[MigrationFile]:
        applied = {s.version for s in self.status() if s.applied_at is not None}
        return [f for f in discover(self.directory) if f.version not in applied]

    def apply(self) -> list[MigrationFile]:
        """Apply every pending file in order; return those this call applied."""
        files = discover(self.directory)
        done: list[MigrationFile] = []
        with self._connect() as conn:
            conn.execute(_SQL["lock_migrations"])
            try:
                conn.execute(_SQL["create_migrations_table"])
                applied = self._applied(conn)
                self._verify(files, applied)
                for file in files:
                    if file.version in applied:
                        continue
                    self._apply_one(conn, file)
                    done.append(file)
            finally:
                conn.execute(_SQL["unlock_migrations"])
        return done

    def _apply_one(self, conn: psycopg.Connection[dict[str, object]], file: MigrationFile) -> None:
        sql = file.path.read_text(encoding="utf-8")
        try:
            with conn.transaction():
                conn.execute(sql.encode())  # bytes: several statements, no parameter parsing
                conn.execute(
                    _SQL["record_applied"],
                    {"version": file.version, "name": file.name, "checksum": file.checksum},
                )
        except psycopg.Error as exc:
            error = translate_error(exc, self.target)
            if isinstance(error, DatabaseUnavailable):
                raise error from None
            raise MigrationError(f"migration {file.filename} failed: {error}") from None
