"""The page cursor codec and the page-size rule (services/store/paging.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.errors import InvalidCursor, SchedulerError
from services.store.paging import MAX_PAGE, decode_cursor, encode_cursor, page_limit
from services.store.schedule_pages import contains

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        ([MOMENT, uuid4()], (datetime, UUID)),
        ([1], (int,)),
        ([-5, 0, 10**30], (int, int, int)),
        (["a,b%c d", "", "zoé/ü?&="], (str, str, str)),
        ([datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)], (datetime,)),
        ([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)], (datetime, datetime)),
        ([UUID(int=0), UUID(int=2**128 - 1)], (UUID, UUID)),
        ([7, "x", MOMENT, uuid4()], (int, str, datetime, UUID)),
    ],
)
def test_round_trip(values: list[Any], kinds: tuple[type, ...]) -> None:
    cursor = encode_cursor(values)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, kinds) == tuple(values)


def test_an_instant_keeps_its_microseconds_whatever_its_zone() -> None:
    elsewhere = MOMENT.astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    assert encode_cursor([elsewhere]) == encode_cursor([MOMENT])
    (decoded,) = decode_cursor(encode_cursor([elsewhere]), (datetime,))
    assert decoded == MOMENT and decoded.utcoffset() == timedelta(0)
    assert decoded.microsecond == 123456


def test_the_text_is_canonical_and_compact() -> None:
    key = UUID("0ba99838-115b-4a4c-aea8-ef5f1a608534")
    assert encode_cursor([MOMENT, key]) == b64("1772368215123456,0ba99838115b4a4caea8ef5f1a608534")
    assert len(encode_cursor([MOMENT, key])) <= 68


def test_a_lone_int_gives_the_cursor_the_audit_trail_always_gave() -> None:
    # The audit store's cursor used to be base64url(str(audit_id)) without padding.
    assert encode_cursor([12]) == b64("12") == "MTI"
    assert decode_cursor("MTI", (int,)) == (12,)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor!",
        "MTI=",  # padding: not what encode_cursor writes
        "MTJ",  # same bytes as "MTI" in a lax decoder (unused low bits differ)
        " MTI",
        b64("12,13"),  # one field too many
        b64("012"),  # not canonical
        b64("+12"),
        b64("1_000"),
        b64(" 12"),
        b64("١٢"),  # non-ASCII digits
        "A" * 1025,
    ],
)
def test_anything_else_is_refused_as_an_int_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="cursor"):
        decode_cursor(cursor, (int,))


@pytest.mark.parametrize(
    "text",
    [
        "1772368215123456",  # one field of two
        "1772368215123456,0BA99838115B4A4CAEA8EF5F1A608534",  # upper-case hex
        "1772368215123456,0ba99838-115b-4a4c-aea8-ef5f1a608534",  # hyphens
        "1772368215123456,{0ba99838115b4a4caea8ef5f1a608534}",
        "2026-03-01T12:30:15+00:00,0ba99838115b4a4caea8ef5f1a608534",  # not microseconds
        "99999999999999999999999,0ba99838115b4a4caea8ef5f1a608534",  # past year 9999
        "1772368215123456,0ba99838115b4a4caea8ef5f1a60853",  # 31 digits
    ],
)
def test_anything_else_is_refused_as_an_instant_and_uuid_cursor(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(b64(text), (datetime, UUID))


@pytest.mark.parametrize("text", ["a,b", "%41", "%zz", "%C3", "%c3%a9"])
def test_a_str_field_is_percent_encoded_and_only_canonically(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(b64(text), (str,))
    assert decode_cursor(encode_cursor(["é"]), (str,)) == ("é",)


def test_an_invalid_cursor_is_a_scheduler_error_naming_it() -> None:
    with pytest.raises(SchedulerError, match="cursor 'zz!' is not one this server handed out"):
        decode_cursor("zz!", (int,))
    with pytest.raises(InvalidCursor):
        decode_cursor(12, (int,))


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([], ValueError),
        ([datetime(2026, 1, 1)], ValueError),  # naive: names no instant
        ([True], TypeError),
        ([1.5], TypeError),
        ([None], TypeError),
    ],
)
def test_encoding_refuses_what_has_no_canonical_text(values: list[Any], error: type) -> None:
    with pytest.raises(error):
        encode_cursor(values)


@pytest.mark.parametrize("limit", [1, 50, MAX_PAGE])
def test_page_limit_accepts_1_to_500(limit: int) -> None:
    assert page_limit(limit) == limit


@pytest.mark.parametrize("limit", [0, -1, MAX_PAGE + 1, True, 5.0, "5", None])
def test_page_limit_refuses_anything_else(limit: object) -> None:
    with pytest.raises(SchedulerError, match=f"limit must be an integer 1-{MAX_PAGE}, got"):
        page_limit(limit)


def test_a_search_term_is_a_substring_pattern_whose_wildcards_match_themselves() -> None:
    assert contains("news") == "%news%"
    assert contains("50%_off\\x") == "%50\\%\\_off\\\\x%"
