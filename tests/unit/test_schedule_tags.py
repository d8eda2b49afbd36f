"""Tags and notify in validate_config (the same rule as the CHECK of migration 004)."""

from __future__ import annotations

from typing import Any

import pytest

from services.errors import InvalidScheduleError
from services.model.schedule_config import tag_errors, validate_config

BASE = {
    "domain_config_id": "6f1c8a4e-0000-4000-8000-000000000001",
    "domain": "example.com",
    "frequency": "daily",
    "time_config": {"hour": 2},
}


@pytest.mark.parametrize("tag", ["a", "team:web", "v1.2_rc-3", "x" * 64, "A:B.C_D-E"])
def test_good_tags(tag: str) -> None:
    assert tag_errors([tag]) == []


@pytest.mark.parametrize("tag", ["", "x" * 65, "has space", "é", "a/b", "a,b", "tab\t", None, 3])
def test_bad_tags_are_named(tag: Any) -> None:
    (error,) = tag_errors([tag])
    assert repr(tag) in error and "1-64 characters" in error


@pytest.mark.parametrize("tags", ["nightly", {"a": 1}, 5])
def test_tags_must_be_a_list(tags: Any) -> None:
    assert tag_errors(tags) == [f"tags must be a list of strings, got {type(tags).__name__}"]


def test_validate_config_normalises_tags_and_checks_notify() -> None:
    clean = validate_config(
        {**BASE, "tags": ["b", "a", "b"], "notify": {"channels": ["ops"], "on": ["failed"]}}
    )
    assert clean["tags"] == ["b", "a"] and clean["notify"] == {
        "channels": ["ops"],
        "on": ["failed"],
    }
    assert "tags" not in validate_config(BASE)  # absent stays absent: the database default
    with pytest.raises(InvalidScheduleError, match="each tag must be") as info:
        validate_config({**BASE, "tags": ["ok", "not ok"], "notify": []})
    assert "notify must be a JSON object, got list" in info.value.reason
