"""Keyset paging shared by the stores: the page-size rule and the opaque cursor.

A cursor holds the sort key of a page's last row, as URL-safe base64 (no padding) of its fields'
texts joined by commas. Each kind of field has one canonical text, so a key has exactly one
cursor and any other string is refused with InvalidCursor:

- int: decimal digits (`12`); a lone int key gives the same cursor the audit trail always gave;
- datetime (timezone-aware): microseconds since the Unix epoch, exact at PostgreSQL's precision;
  decoded in UTC;
- UUID: 32 lowercase hex digits;
- str: percent-encoded UTF-8 (`urllib.parse.quote` with nothing safe), so a comma never splits.

The cursor only names a position: the filters come again with each request, and rows inserted
above it or deleted anywhere never shift what follows it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote
from uuid import UUID

from services.errors import InvalidCursor, SchedulerError

__all__ = ["MAX_PAGE", "CursorValue", "decode_cursor", "encode_cursor", "page_limit"]

MAX_PAGE = 500
# Far more than any key of ours needs (a timestamp and a UUID take 68 characters).
MAX_CURSOR_CHARS = 1024

CursorValue = int | str | datetime | UUID
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_HEX32 = re.compile(r"[0-9a-f]{32}")


def page_limit(limit: object) -> int:
    """A page size: an int from 1 to MAX_PAGE, else SchedulerError."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise SchedulerError(f"limit must be an integer 1-{MAX_PAGE}, got {limit!r}")
    return limit


def _field_text(value: CursorValue) -> str:
    if isinstance(value, bool):
        raise TypeError("a cursor field cannot be a bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("a cursor datetime must be timezone-aware")
        return str((value - _EPOCH) // _MICROSECOND)
    if isinstance(value, UUID):
        return value.hex
    if isinstance(value, str):
        return quote(value, safe="")
    raise TypeError(f"a cursor field cannot be a {type(value).__name__}")


def encode_cursor(values: Sequence[CursorValue]) -> str:
    """The cursor of a row whose sort key is `values` (ints, strs, aware datetimes, UUIDs)."""
    if not values:
        raise ValueError("a cursor needs at least one field")
    text = ",".join(_field_text(value) for value in values)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def _field_value(text: str, kind: type) -> Any:
    """The value of one field's canonical text; ValueError when it is not canonical."""
    if kind is int:
        if not _INT.fullmatch(text):
            raise ValueError(text)
        return int(text)
    if kind is datetime:
        if not _INT.fullmatch(text):
            raise ValueError(text)
        return _EPOCH + int(text) * _MICROSECOND  # OverflowError beyond datetime's range
    if kind is UUID:
        if not _HEX32.fullmatch(text):
            raise ValueError(text)
        return UUID(hex=text)
    if kind is str:
        value = unquote(text, errors="strict")
        if quote(value, safe="") != text:
            raise ValueError(text)
        return value
    raise TypeError(f"a cursor field cannot be a {kind.__name__}")


def decode_cursor(cursor: object, kinds: Sequence[type]) -> tuple[Any, ...]:
    """The sort key a cursor holds, one value per kind (int, str, datetime or UUID).
    InvalidCursor when it is not exactly what `encode_cursor` gives for such a key."""
    text = cursor if isinstance(cursor, str) else repr(cursor)
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor(text[:64])
    if not _BASE64URL.fullmatch(cursor):
        raise InvalidCursor(cursor)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = raw.decode("ascii").split(",")
        if len(fields) != len(kinds):
            raise ValueError(cursor)
        values = tuple(_field_value(f, kind) for f, kind in zip(fields, kinds, strict=True))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidCursor(cursor) from None
    # Base64 has several spellings of some byte strings (the unused low bits of the last
    # character); only the one encode_cursor writes is accepted.
    if encode_cursor(values) != cursor:
        raise InvalidCursor(cursor)
    return values
