from __future__ import annotations

import re
from pathlib import Path

import pytest

from database.queries import SQL_DIR, load_queries, parse_queries

ROOT = Path(__file__).resolve().parents[2]
# `_SQL = load_queries("x")` then `_SQL["name"]` is the only way code refers to statements.
_LOADS = re.compile(r'(?P<var>_[A-Z_]*SQL)\s*=\s*load_queries\("(?P<module>\w+)"\)')


def test_parse_named_blocks() -> None:
    queries = parse_queries(
        "-- name: one\n-- Says what.\nSELECT 1;\n\n-- name: two\nSELECT %(x)s\n", "t.sql"
    )
    assert dict(queries) == {"one": "SELECT 1", "two": "SELECT %(x)s"}
    with pytest.raises(KeyError, match=r"no query named 'three' in t\.sql"):
        queries["three"]


def test_duplicates_and_empty_blocks_are_errors() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    with pytest.raises(ValueError, match="has no statement"):
        parse_queries("-- name: a\n-- only a comment\n")


def test_every_sql_file_loads() -> None:
    for path in SQL_DIR.glob("*.sql"):
        assert len(load_queries(path.stem)) > 0


def test_every_query_name_used_in_code_exists() -> None:
    checked = 0
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("database/*.py")]:
        text = path.read_text()
        for load in _LOADS.finditer(text):
            queries = load_queries(load["module"])
            for name in re.findall(rf'(?<!\w){re.escape(load["var"])}\["(\w+)"\]', text):
                assert name in queries, f"{path.name} uses missing query {name!r}"
                checked += 1
    assert checked > 10
