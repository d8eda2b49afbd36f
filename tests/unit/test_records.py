"""Schedule records built from rows whose JSON columns arrive as text (the start-up load)."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import pytest

from database.connection import UnreadableJson, load_json
from services.model.records import Schedule, schedules_from_json_text
from services.model.spec import parse_schedule


def _row(config: str, payload: str | None = '{"callable": "noop"}') -> dict[str, Any]:
    return {
        "schedule_id": uuid4(),
        "domain_config_id": uuid4(),
        "domain": "example.com",
        "frequency": "interval",
        "time_config_json": config,
        "payload_json": payload,
    }


def test_each_distinct_text_is_decoded_once_and_shared() -> None:
    calls: list[str] = []

    def counting_load(text: str) -> Any:
        calls.append(text)
        return json.loads(text)

    rows = [_row('{"seconds": 60}'), _row('{"seconds": 60}'), _row('{"seconds": 30}')]
    schedules = schedules_from_json_text(rows, counting_load)
    assert [s.time_config for s in schedules] == [{"seconds": 60}, {"seconds": 60}, {"seconds": 30}]
    assert schedules[0].time_config is schedules[1].time_config
    assert schedules[0].payload is schedules[2].payload == {"callable": "noop"}
    assert sorted(calls) == ['{"callable": "noop"}', '{"seconds": 30}', '{"seconds": 60}']
    assert schedules[0].time_config_json == '{"seconds": 60}'


def test_stored_text_is_kept_out_of_dicts_and_equality() -> None:
    (schedule,) = schedules_from_json_text([_row('{"seconds": 5}')], load_json)
    assert "time_config_json" not in schedule.to_dict()
    plain = Schedule(**{**schedule.to_dict()})
    assert plain == schedule


def test_unreadable_json_stays_a_value_the_parser_refuses() -> None:
    deep = "[" * 5000 + "]" * 5000
    (schedule,) = schedules_from_json_text([_row(deep)], load_json)
    assert isinstance(schedule.time_config, UnreadableJson)
    with pytest.raises(Exception, match="time_config"):
        parse_schedule(
            schedule.frequency, schedule.time_config, config_json=schedule.time_config_json
        )


def test_the_parse_cache_keyed_by_text_gives_each_row_its_own_identity() -> None:
    text = '{"seconds": 90}'
    first, second = schedules_from_json_text([_row(text), _row(text)], load_json)
    specs = [
        parse_schedule(s.frequency, s.time_config, schedule_id=s.schedule_id, config_json=text)
        for s in (first, second)
    ]
    assert [spec.schedule_id for spec in specs] == [str(first.schedule_id), str(second.schedule_id)]
    assert specs[0].period == specs[1].period


def test_the_start_up_load_keeps_only_the_text_and_parses_it_alike() -> None:
    text = '{"hour": 2, "minute": 30, "timezone": "Europe/Berlin"}'
    row = {**_row(text), "frequency": "daily"}
    (full,) = schedules_from_json_text([{**row}], load_json)  # each call consumes its rows
    (lean,) = schedules_from_json_text([row], load_json, decode_time_config=False)
    assert lean.time_config is None and lean.time_config_json == text
    assert full.time_config == json.loads(text)
    parsed = [
        parse_schedule(s.frequency, s.time_config, schedule_id="x", config_json=text)
        for s in (lean, full)
    ]
    assert parsed[0] == parsed[1]


def test_unreadable_text_gives_the_same_reason_by_either_path() -> None:
    deep = "[" * 5000 + "]" * 5000
    reasons = []
    for decode in (True, False):
        (schedule,) = schedules_from_json_text([_row(deep)], load_json, decode_time_config=decode)
        with pytest.raises(Exception, match="time_config") as caught:
            parse_schedule(
                schedule.frequency, schedule.time_config, config_json=schedule.time_config_json
            )
        reasons.append(str(caught.value))
    assert reasons[0] == reasons[1]


def test_vocabulary_columns_are_interned() -> None:
    rows = [{**_row('{"seconds": 5}'), "frequency": "".join(["inter", "val"])} for _ in range(2)]
    first, second = schedules_from_json_text(rows, load_json, decode_time_config=False)
    assert first.frequency is second.frequency


def test_payload_keys_and_short_values_are_shared_between_rows() -> None:
    texts = [
        json.dumps({"callable": "pkg.mod:fn", "target": f"site-{i}", "url": "x" * 80})
        for i in range(2)
    ]
    rows = [_row('{"seconds": 5}', payload=text) for text in texts]
    first, second = schedules_from_json_text(rows, load_json, decode_time_config=False)
    assert first.payload == json.loads(texts[0]) and second.payload == json.loads(texts[1])
    (key_a, *_), (key_b, *_) = first.payload, second.payload
    assert key_a is key_b  # one "callable" for every row
    assert first.payload["callable"] is second.payload["callable"]
    assert first.payload["url"] == second.payload["url"]
    assert first.payload["url"] is not second.payload["url"]  # long values are left alone


def test_a_parsed_record_lets_go_of_its_config_text() -> None:
    from services.model.catalog import Catalog

    (schedule,) = schedules_from_json_text(
        [_row('{"seconds": 5}')], load_json, decode_time_config=False
    )
    loaded = Catalog("UTC").parse(schedule)
    assert loaded.schedule is schedule and schedule.time_config_json is None
    assert loaded.spec.period is not None and loaded.spec.period.total_seconds() == 5


def test_equal_instants_are_one_object_and_keep_their_zone() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    at = datetime(2026, 5, 1, 12, tzinfo=UTC)
    elsewhere = at.astimezone(timezone(timedelta(hours=2)))  # equal, but another offset
    rows = [
        {**_row('{"seconds": 5}'), "updated_at": datetime(2026, 5, 1, 12, tzinfo=UTC)},
        {**_row('{"seconds": 5}'), "updated_at": datetime(2026, 5, 1, 12, tzinfo=UTC)},
        {**_row('{"seconds": 5}'), "updated_at": elsewhere},
    ]
    first, second, third = schedules_from_json_text(rows, load_json, decode_time_config=False)
    assert first.updated_at is second.updated_at and first.updated_at == at
    assert third.updated_at is elsewhere and third.updated_at.isoformat().endswith("+02:00")
