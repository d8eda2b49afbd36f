"""Case 6: hostile answers to the API sync, fuzzed with hypothesis from the seed-001 shape
(`{"data": [{"domain_config_id": ..., "data": {"domain": ..., "schedule": {"frequency": ...,
"time": {...}}, ...}}]}`) and served by a real local HTTP server to a real ApiSync.

Whatever the answer: the sync returns a result or raises ApiSyncError, nothing else; a failed
sync writes nothing; a successful one writes only `source='api'` rows, one per valid item, each
of which passes the contract's validation and matches its item; a repeated sync of the same
answer changes nothing; rows that are not the API's are never touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.errors import ApiSyncError, InvalidScheduleError
from services.model.schedule_config import validate_config
from services.model.spec import COMMON_KEYS, FREQUENCIES, SHAPE_KEYS
from services.store.schedules import ScheduleRepository
from services.sync.client import ApiClient, parse_page
from services.sync.items import map_domain_config_id, parse_items
from services.sync.sync import ApiSync, SyncResult
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(120)
# Each example is two real syncs (HTTP + a PostgreSQL transaction): no shrinking, whose search
# of a failure would run for minutes; the failing answer is printed as generated.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- strategies: the seed-001 shape, every part of which may turn hostile ----------------------

TEXT = st.text(max_size=12)  # NUL, control and non-BMP characters included
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()  # NaN and infinities are written as NaN / Infinity: not JSON
    | TEXT
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
INTS = st.integers(-2, 70) | st.sampled_from([0, 59, 86_400, 86_401, 10**20, -(10**20)])
DATES = st.sampled_from(
    [
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00",
        "1970-01-01T00:00:00+00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "9999-06-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "2030-02-30T00:00:00Z",
        "not a date",
        "",
    ]
)
FIELD = {
    **dict.fromkeys(
        ("seconds", "minutes", "hours", "minute", "hour", "jitter", "max_retries"), INTS
    ),
    "day": st.sampled_from(["monday", "mon", "SUNDAY", "funday", "last", ""]) | INTS,
    "days": st.lists(st.sampled_from(["mon", "thu", "friday", "x"]) | INTS, max_size=3),
    "expression": st.sampled_from(
        [
            "0 9 * * 1-5",
            "*/5 * * * *",
            "0 0 30 2 *",
            "* * *",
            "0 0 1 1 *",
            "61 * * * *",
            "* * * * * *",
            "@reboot",
            "0 0 * * * * *",
        ]
    ),
    "run_at": DATES,
    "start_date": DATES,
    "end_date": DATES,
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "../../etc/passwd", "Mars/Base", ""]),
    "timeout_seconds": INTS | st.floats(),
    "misfire_grace_time": INTS | st.floats(),
    "overlap_policy": st.sampled_from(
        ["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all", "x"]
    ),
    "max_buffered": INTS,
    "expected_within": INTS | st.floats(),
}
KEYS = [*sorted({k for keys in SHAPE_KEYS.values() for k in keys} | set(COMMON_KEYS)), "bogus"]
TIME = st.lists(st.sampled_from(KEYS), unique=True, max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: FIELD.get(k, ANY_JSON) | ANY_JSON for k in keys})
)
SCHEDULE = st.fixed_dictionaries(
    {"frequency": st.sampled_from(FREQUENCIES) | ANY_JSON, "time": TIME | ANY_JSON},
    optional={k: FIELD[k] | ANY_JSON for k in COMMON_KEYS},
)
DATA = st.fixed_dictionaries(
    {
        "domain": st.just("example.com") | TEXT | st.text(min_size=250, max_size=260) | ANY_JSON,
        "schedule": SCHEDULE | ANY_JSON,
    },
    optional={
        "job_type": st.sampled_from([None, "http", "command", "python", "shell"]) | ANY_JSON,
        "enabled": st.booleans() | ANY_JSON,
        "description": TEXT,
        "maxPages": ANY_JSON,
        "customPages": st.lists(TEXT, max_size=3),
        "source": st.just("manual"),
        "schedule_id": st.uuids().map(str),
    },
)
ITEM = (
    st.fixed_dictionaries(
        {
            "domain_config_id": st.uuids().map(str)
            | st.sampled_from(["abc-123", "abc-124"])
            | TEXT
            | st.integers()
            | ANY_JSON,
            "data": DATA | ANY_JSON,
        }
    )
    | ANY_JSON
)
NEXT = st.sampled_from([None, "", "/v1/more", "?page=2", 5, {"a": 1}, "ftp://x/", "javascript:x"])
ANSWER = (
    st.fixed_dictionaries(
        {"data": st.lists(ITEM, max_size=5)},
        optional={"next": NEXT, "links": st.fixed_dictionaries({"next": NEXT}), "meta": ANY_JSON},
    )
    | ANY_JSON
)


def encode(answer: Any) -> bytes:
    return json.dumps(answer, allow_nan=True).encode()


BODIES = (
    ANSWER.map(encode)
    | ANSWER.map(encode).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n]))
    | st.binary(max_size=64)
)


def seed_item(**data: Any) -> dict[str, Any]:
    base = {"domain": "example.com", "schedule": {"frequency": "daily", "time": {"hour": 2}}}
    return {"domain_config_id": "abc-123", "data": {**base, **data}}


def body_of(*items: Any) -> bytes:
    return encode({"data": list(items)})


# -- fixtures and the oracle ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(ScriptedResponse(200, body=b'{"data": []}')) as s:
        yield s


@pytest.fixture
def manual_row(database_url: str) -> str:
    """A hand-made row whose domain_config_id the API also uses: never the sync's to touch."""
    query(
        database_url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config) "
        "VALUES (%s, 'manual.example', 'daily', %s)",
        (map_domain_config_id("abc-123")[0], Jsonb({"hour": 4})),
    )
    return dump(database_url, "source <> 'api'")


def dump(url: str, where: str) -> str:
    rows = query(url, f"SELECT to_jsonb(s)::text AS r FROM schedules s WHERE {where} ORDER BY 1")
    return "\n".join(r["r"] for r in rows)


def sync_once(db: DatabaseConnection, server: RecordingHTTPServer, body: bytes) -> SyncResult:
    server.enqueue(ScriptedResponse(200, body=body))
    client = ApiClient(f"{server.url}/v1/schedules", timeout=2.0, attempts=1, backoff=0.01)
    return ApiSync(ScheduleRepository(db), client).sync()


def row_problems(row: dict[str, Any], items: list[Any]) -> list[str]:
    """What is wrong with an api row: not valid by the contract, or not its item's."""
    problems = []
    try:
        validate_config(
            {
                key: row[key]
                for key in (
                    "domain_config_id",
                    "domain",
                    "frequency",
                    "time_config",
                    "enabled",
                    "job_type",
                    "payload",
                    "source",
                )
            }
        )
    except InvalidScheduleError as exc:
        problems.append(f"stored row fails validation: {exc.reason}")
    matches = [
        item
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("domain_config_id"), str | int)
        and not isinstance(item.get("domain_config_id"), bool)
        and map_domain_config_id(str(item["domain_config_id"]))[0] == row["domain_config_id"]
    ]
    if len(matches) != 1:
        return [*problems, f"row {row['domain_config_id']} matches {len(matches)} items"]
    data = matches[0]["data"]
    wanted = (
        data["domain"],
        data["schedule"]["frequency"],
        data.get("job_type"),
        data.get("enabled", True),
    )
    stored = (row["domain"], row["frequency"], row["job_type"], row["enabled"])
    if wanted != stored:
        problems.append(f"row {stored} differs from its item {wanted}")
    return problems


def check_sync(
    database_url: str,
    db: DatabaseConnection,
    server: RecordingHTTPServer,
    manual: str,
    body: bytes,
) -> None:
    query(database_url, "DELETE FROM schedules WHERE source = 'api'")
    try:
        result = sync_once(db, server, body)
    except ApiSyncError:
        result = None
    assert dump(database_url, "source <> 'api'") == manual, "a non-api row was touched"
    rows = query(database_url, "SELECT * FROM schedules WHERE source = 'api'")
    if result is None:
        assert rows == [], "a failed sync wrote rows"
        return
    assert result.counts["created"] == len(rows), (result.counts, len(rows))
    items = [i for page in _pages(body) for i in page]
    problems = [p for row in rows for p in row_problems(row, items)]
    assert problems == [], problems
    before = dump(database_url, "source = 'api'")
    again = sync_once(db, server, body)
    assert (again.counts["created"], again.counts["updated"]) == (0, 0), again.counts
    assert dump(database_url, "source = 'api'") == before, "a repeated sync changed rows"


def _pages(body: bytes) -> list[list[Any]]:
    """The items as the API meant them (the first page; later pages are empty here)."""
    return [json.loads(body)["data"]]


# -- the cases --------------------------------------------------------------------------------


@FUZZ
@given(body=BODIES)
def test_fuzzed_answers_write_nothing_outside_the_contract(
    database_url: str,
    db: DatabaseConnection,
    server: RecordingHTTPServer,
    manual_row: str,
    body: bytes,
) -> None:
    check_sync(database_url, db, server, manual_row, body)


HOSTILE_ANSWERS = {
    "lone surrogate in domain": body_of(seed_item(domain="x\ud800y")),
    "lone surrogate in payload": body_of(seed_item(note="\udfff")),
    "once at year 1 +14:00": body_of(
        seed_item(schedule={"frequency": "once", "time": {"run_at": "0001-01-01T00:00:00+14:00"}})
    ),
    "cron at year 10000": body_of(
        seed_item(
            schedule={
                "frequency": "cron",
                "time": {"expression": "0 0 1 1 *"},
                "start_date": "9999-06-01T00:00:00Z",
            }
        )
    ),
    "payload nested 100,000 deep": (
        b'{"data": [{"domain_config_id": "abc-123", "data": {"domain": "example.com", '
        b'"schedule": {"frequency": "daily", "time": {"hour": 2}}, "deep": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}]}"
    ),
    "NaN and 1e400": b'{"data": [{"domain_config_id": "abc-123", "data": {"domain": "a.b", '
    b'"schedule": {"frequency": "interval", "time": {"seconds": NaN}}, "x": 1e400}}]}',
    "NUL in domain": body_of(seed_item(domain="a\u0000b")),
    "same id twice": body_of(seed_item(), seed_item(domain="other.example")),
    "domain 10,000 characters": body_of(seed_item(domain="d" * 10_000)),
    "job_type 60 characters": body_of(seed_item(job_type="j" * 60)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_ANSWERS))
def test_hostile_answers_write_nothing_outside_the_contract(
    database_url: str,
    db: DatabaseConnection,
    server: RecordingHTTPServer,
    manual_row: str,
    name: str,
) -> None:
    check_sync(database_url, db, server, manual_row, HOSTILE_ANSWERS[name])


@settings(max_examples=400, deadline=None, database=None)
@given(body=BODIES | st.binary(max_size=256))
def test_parse_page_raises_only_api_sync_errors(body: bytes) -> None:
    try:
        items, next_url = parse_page(body, "http://127.0.0.1:9/v1/schedules")
    except ApiSyncError as exc:
        assert exc.case in ("invalid_json", "wrong_shape"), exc.case
        return
    assert isinstance(items, list)
    assert next_url is None or next_url.startswith(("http://", "https://"))


@settings(max_examples=400, deadline=None, database=None)
@given(items=st.lists(ITEM, max_size=6))
def test_parse_items_sorts_every_item_into_valid_or_invalid(items: list[Any]) -> None:
    valid, invalid = parse_items(items)
    assert len(valid) + len(invalid) == len(items)
    ids = [item.domain_config_id for item in valid]
    assert len(ids) == len(set(ids)), "a duplicated id passed as valid"
    for item in valid:
        assert isinstance(item.domain_config_id, UUID)
        validate_config(item.config)  # raises if the contract would refuse it
    for bad in invalid:
        assert bad.reason, bad
