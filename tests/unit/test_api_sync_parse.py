"""API sync without services: item mapping, validation reasons, page shapes and the plan."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.errors import ApiSyncError, InvalidScheduleError
from services.sync.client import parse_page, shown_url
from services.sync.items import (
    EXTERNAL_ID_NAMESPACE,
    map_domain_config_id,
    parse_item,
    parse_items,
)
from services.sync.plan import plan_sync

URL = "https://api.example.com/v1/schedules?token=secret"


def seed_item(**data_overrides: Any) -> dict[str, Any]:
    """The seed-001 sample item."""
    data: dict[str, Any] = {
        "domain": "example.com",
        "description": "Example domain",
        "allow_deep_scan": True,
        "maxPages": 50,
        "scanDepth": 5,
        "maxRetries": 3,
        "customPages": ["/page1", "/page2"],
        "accept_selector": "button[data-role='accept']",
        "schedule": {"frequency": "daily", "time": {"hour": 2, "minute": 0}},
    }
    data.update(data_overrides)
    return {"domain_config_id": "abc-123", "data": data}


def test_the_namespace_is_fixed_and_derived_as_documented() -> None:
    derived = uuid.uuid5(uuid.NAMESPACE_URL, "urn:enhanced-scheduler:api-sync:domain_config_id")
    assert EXTERNAL_ID_NAMESPACE == derived == uuid.UUID("c78870d7-d391-5e5d-9000-2235988421a9")
    assert map_domain_config_id("abc-123") == (uuid.uuid5(derived, "abc-123"), False)
    real = uuid.uuid4()
    assert map_domain_config_id(str(real)) == (real, True)
    assert map_domain_config_id(str(real).upper()) == (real, True)


def test_the_seed_sample_maps_to_columns_and_payload() -> None:
    item = parse_item(seed_item())
    assert item.external_id == "abc-123"
    assert item.domain_config_id == uuid.uuid5(EXTERNAL_ID_NAMESPACE, "abc-123")
    config = item.config
    assert config["domain"] == "example.com"
    assert config["frequency"] == "daily"
    assert config["time_config"] == {"hour": 2, "minute": 0}
    assert config["enabled"] is True and config["job_type"] is None
    assert config["source"] == "api"
    assert config["payload"] == {
        "description": "Example domain",
        "allow_deep_scan": True,
        "maxPages": 50,
        "scanDepth": 5,
        "maxRetries": 3,
        "customPages": ["/page1", "/page2"],
        "accept_selector": "button[data-role='accept']",
        "external_id": "abc-123",
    }


def test_a_uuid_id_is_used_as_is_without_external_id() -> None:
    real = str(uuid.uuid4())
    item = parse_item({**seed_item(), "domain_config_id": real})
    assert item.domain_config_id == uuid.UUID(real)
    assert "external_id" not in item.config["payload"]


def test_schedule_options_beside_frequency_merge_into_time_config() -> None:
    schedule = {
        "frequency": "weekly",
        "timezone": "Europe/Berlin",
        "jitter": 30,
        "max_retries": 2,
        "time": {"days": ["mon", "thu"], "hour": 6},
    }
    item = parse_item(seed_item(schedule=schedule, job_type="http", enabled=False))
    assert item.config["time_config"] == {
        "days": ["mon", "thu"],
        "hour": 6,
        "timezone": "Europe/Berlin",
        "jitter": 30,
        "max_retries": 2,
    }
    assert item.config["job_type"] == "http" and item.config["enabled"] is False
    assert "job_type" not in item.config["payload"] and "enabled" not in item.config["payload"]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("nope", "item must be an object, got a string"),
        ({"data": {}}, "domain_config_id must be a non-empty string, got None"),
        ({"domain_config_id": "  ", "data": {}}, "domain_config_id must be a non-empty string"),
        ({"domain_config_id": "x", "data": []}, "data must be an object, got an array"),
        ({"domain_config_id": "x", "data": {"domain": "a.com"}}, "data.schedule must be an obj"),
        (seed_item(domain=None), "domain must be a non-empty string, got None"),
        (
            seed_item(schedule={"frequency": "daily", "time": {"hour": 25}}),
            "time_config.hour must be an integer 0-23, got 25",
        ),
        (seed_item(schedule={"frequency": "sometimes", "time": {}}), "frequency"),
        (
            seed_item(schedule={"frequency": "daily", "tim": {"hour": 1}}),
            "data.schedule has unknown key(s) tim",
        ),
        (
            seed_item(
                schedule={
                    "frequency": "daily",
                    "timezone": "UTC",
                    "time": {"hour": 1, "timezone": "Europe/Paris"},
                }
            ),
            "disagree on timezone",
        ),
        (seed_item(note="a\x00b"), "data.note contains a NUL character"),
        (seed_item(job_type="ftp"), "job_type 'ftp' is not one of"),
    ],
)
def test_invalid_items_say_exactly_why(item: Any, reason: str) -> None:
    with pytest.raises(InvalidScheduleError) as caught:
        parse_item(item)
    assert reason in caught.value.reason


def test_parse_items_reports_ids_and_marks_every_duplicate_invalid() -> None:
    good = seed_item()
    other = {**seed_item(), "domain_config_id": "other"}
    bad = {**seed_item(domain=""), "domain_config_id": "bad-1"}
    valid, invalid = parse_items([good, bad, {"data": {}}, other, dict(good)])
    assert [item.external_id for item in valid] == ["other"]
    assert [(i.domain_config_id, i.reason.split(" ")[0]) for i in invalid] == [
        ("abc-123", "domain_config_id"),
        ("bad-1", "domain"),
        (None, "domain_config_id"),
        ("abc-123", "domain_config_id"),
    ]
    assert "occurs 2 times" in invalid[0].reason
    assert invalid[1].mapped_id == uuid.uuid5(EXTERNAL_ID_NAMESPACE, "bad-1")


def page(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_pages_must_be_an_object_with_a_data_array() -> None:
    assert parse_page(page({"data": [1]}), URL) == ([1], None)
    cases = [
        (b'{"data": [', "invalid_json"),
        (b"NaN", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (page({"data": "x"}), "wrong_shape"),
        (page([{"domain_config_id": "a"}]), "wrong_shape"),
        (page({"items": []}), "wrong_shape"),
        (page({"data": [], "next": 3}), "wrong_shape"),
        (page({"data": [], "next": "ftp://elsewhere/x"}), "wrong_shape"),
    ]
    for body, case in cases:
        with pytest.raises(ApiSyncError) as caught:
            parse_page(body, URL)
        assert caught.value.case == case, body
        assert "secret" not in str(caught.value)  # the query string is never shown


def test_next_links_are_followed_top_level_or_under_links() -> None:
    assert parse_page(page({"data": [], "next": "/v1/schedules?page=2"}), URL)[1] == (
        "https://api.example.com/v1/schedules?page=2"
    )
    assert parse_page(page({"data": [], "links": {"next": "https://b.example/p3"}}), URL)[1] == (
        "https://b.example/p3"
    )
    assert parse_page(page({"data": [], "next": None, "links": {"next": None}}), URL)[1] is None
    assert parse_page(page({"data": [], "next": ""}), URL)[1] is None


def test_shown_url_drops_credentials_and_query() -> None:
    assert shown_url("https://u:pw@h.example:8443/a/b?token=t#f") == "https://h.example:8443/a/b"


def test_plan_turns_the_database_diff_into_changes_and_counts() -> None:
    same, moved, new = (
        parse_item({**seed_item(), "domain_config_id": name}) for name in ("same", "moved", "new")
    )
    moved_row = uuid.uuid4()
    flags = dict.fromkeys(("domain", "frequency", "job_type", "payload"), False)
    differing = [
        {"domain_config_id": moved.domain_config_id, "schedule_id": moved_row, **flags}
        | {"time_config": True, "enabled": True},
        {"domain_config_id": new.domain_config_id, "schedule_id": None},
    ]
    gone = {
        "schedule_id": uuid.uuid4(),
        "domain_config_id": uuid.uuid4(),
        "domain": "gone.example.com",
        "external_id": "gone",
    }
    plan = plan_sync([same, moved, new], differing, [gone])
    assert plan.unchanged == 1
    assert plan.creates == [new] and plan.updates == [(moved_row, moved)]
    assert plan.disables == [gone["schedule_id"]]
    assert [(c.action, c.external_id, c.fields) for c in plan.changes] == [
        ("update", "moved", ("time_config", "enabled")),
        ("create", "new", ()),
        ("disable", "gone", ()),
    ]
