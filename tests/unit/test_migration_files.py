from __future__ import annotations

from database.migrations import FILE_NAME, MIGRATIONS_DIR, discover


def test_migration_files_follow_the_naming_rule_and_are_numbered_without_gaps() -> None:
    files = sorted(p.name for p in MIGRATIONS_DIR.iterdir())
    assert files, "no migrations"
    assert all(FILE_NAME.match(name) for name in files), files
    versions = [m.version for m in discover()]
    missing = set(range(1, max(versions) + 1)) - set(versions)
    assert not missing, f"migration versions missing: {sorted(missing)}"
