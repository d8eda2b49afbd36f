"""Named SQL: each `database/sql/<module>.sql` holds blocks of

    -- name: claim_occurrences
    -- One line saying what it does.
    INSERT INTO ... %(param)s ...;

loaded once into a read-only mapping; Python refers to statements by name only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class QuerySet(Mapping[str, str]):
    """The statements of one .sql file, by name; a missing name is a KeyError naming the file."""

    def __init__(self, source: str, statements: dict[str, str]) -> None:
        self.source = source
        self._statements = statements

    def __getitem__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in {self.source}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)


def parse_queries(text: str, source: str = "<string>") -> QuerySet:
    """Split `text` into named statements; reject duplicates and empty blocks."""
    statements: dict[str, str] = {}
    matches = list(_NAME_LINE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body_lines = [
            line
            for line in text[match.end() : end].splitlines()
            if line.strip() and not line.lstrip().startswith("--")
        ]
        name = match.group("name")
        if name in statements:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        body = "\n".join(body_lines).strip().rstrip(";").strip()
        if not body:
            raise ValueError(f"{source}: query {name!r} has no statement")
        statements[name] = body
    return QuerySet(source, statements)


@cache
def load_queries(module: str) -> QuerySet:
    """The statements of `database/sql/<module>.sql`, parsed once per process."""
    path = SQL_DIR / f"{module}.sql"
    return parse_queries(path.read_text(encoding="utf-8"), source=str(path.name))
