"""API sync against a real local HTTP server, real PostgreSQL and Redis (issue 7 acceptance)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg.types.json import Jsonb

from database.connection import DatabaseConnection
from services.config import load_settings
from services.enhanced_scheduler import EnhancedScheduler
from services.errors import ApiSyncError
from services.lock.keys import api_sync_lock_key
from services.lock.lock import DistributedLock
from services.store.schedules import ScheduleRepository
from services.sync.client import ApiClient
from services.sync.items import EXTERNAL_ID_NAMESPACE
from services.sync.sync import ApiSync, SyncResult
from tests.support.daemon import ROOT, DaemonProcess
from tests.support.http_server import RecordingHTTPServer, ScriptedResponse, unused_port
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(90)

ABC_ID = uuid.uuid5(EXTERNAL_ID_NAMESPACE, "abc-123")
MB = 1024 * 1024


def item(ident: str, domain: str = "example.com", hour: int = 2, **data: Any) -> dict[str, Any]:
    """One item in the seed-001 shape."""
    return {
        "domain_config_id": ident,
        "data": {
            "domain": domain,
            "description": "Example domain",
            "allow_deep_scan": True,
            "maxPages": 50,
            "scanDepth": 5,
            "maxRetries": 3,
            "customPages": ["/page1", "/page2"],
            "accept_selector": "button[data-role='accept']",
            "schedule": {"frequency": "daily", "time": {"hour": hour, "minute": 0}},
            **data,
        },
    }


def answer(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"data": list(items), **extra}


SEED_ANSWER = answer(item("abc-123"))


def make_sync(
    db: DatabaseConnection, url: str, *, disable_missing: bool = False, **options: Any
) -> ApiSync:
    options.setdefault("timeout", 2.0)
    options.setdefault("backoff", 0.01)
    client = ApiClient(url, **options)
    return ApiSync(ScheduleRepository(db), client, disable_missing=disable_missing)


def dump(url: str) -> list[str]:
    """Every row of schedules, every column, as text: equal dumps mean an untouched table."""
    rows = query(url, "SELECT to_jsonb(s)::text AS row FROM schedules s ORDER BY schedule_id")
    return [r["row"] for r in rows]


def api_rows(url: str) -> dict[uuid.UUID, dict[str, Any]]:
    rows = query(url, "SELECT * FROM schedules WHERE source = 'api'")
    return {r["domain_config_id"]: r for r in rows}


def insert_manual(url: str, domain_config_id: uuid.UUID, domain: str) -> uuid.UUID:
    rows = query(
        url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config) "
        "VALUES (%s, %s, 'daily', %s) RETURNING schedule_id",
        (domain_config_id, domain, Jsonb({"hour": 4})),
    )
    return rows[0]["schedule_id"]  # type: ignore[no-any-return]


@pytest.fixture
def server() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(ScriptedResponse(200, SEED_ANSWER)) as s:
        yield s


# -- 1. the seed sample, re-sync, update, and the watcher --------------------------------------


@pytest.fixture
def scheduler(env: dict[str, str], server: RecordingHTTPServer) -> Iterator[EnhancedScheduler]:
    """An in-process scheduler pointed at `server`, its watcher driven by hand."""
    settings = load_settings({**env, "API_URL": f"{server.url}/v1/schedules", "API_TOKEN": "tk-9"})
    instance = EnhancedScheduler(settings=settings)
    instance.jobs.start(paused=True)
    instance.watcher.initial_load()
    yield instance
    instance.jobs.shutdown()
    instance.db.close()
    instance.redis.close()


def sync_metric(s: EnhancedScheduler, result: str) -> float:
    value = s.metrics.registry.get_sample_value("scheduler_api_sync_total", {"result": result})
    return value or 0.0


def test_seed_sample_creates_skips_updates_and_the_watcher_follows(
    database_url: str, scheduler: EnhancedScheduler, server: RecordingHTTPServer
) -> None:
    assert scheduler.status()["last_sync"] is None
    counts = scheduler.sync_schedules_from_api()
    assert counts == {"created": 1, "updated": 0, "skipped": 0, "invalid": 0, "disabled": 0}
    request = server.requests[0]
    assert request.method == "GET" and request.path == "/v1/schedules"
    assert request.header("Authorization") == "Bearer tk-9"

    row = api_rows(database_url)[ABC_ID]
    assert (row["domain"], row["frequency"], row["source"]) == ("example.com", "daily", "api")
    assert row["time_config"] == {"hour": 2, "minute": 0}
    assert row["enabled"] is True and row["job_type"] is None
    assert row["payload"]["maxPages"] == 50 and row["payload"]["scanDepth"] == 5
    assert row["payload"]["customPages"] == ["/page1", "/page2"]
    assert row["payload"]["external_id"] == "abc-123"
    assert "domain" not in row["payload"] and "schedule" not in row["payload"]
    assert scheduler.watcher.incremental_pass() == {"added": 1}

    before = dump(database_url)
    counts = scheduler.sync_schedules_from_api()
    assert counts == {"created": 0, "updated": 0, "skipped": 1, "invalid": 0, "disabled": 0}
    assert dump(database_url) == before  # not even updated_at moved
    assert scheduler.watcher.incremental_pass() == {}

    server.enqueue(ScriptedResponse(200, answer(item("abc-123", hour=3))))
    counts = scheduler.sync_schedules_from_api()
    assert counts == {"created": 0, "updated": 1, "skipped": 0, "invalid": 0, "disabled": 0}
    assert scheduler.watcher.incremental_pass() == {"updated": 1}
    loaded = scheduler.loader.get(row["schedule_id"])
    assert loaded is not None and loaded.schedule.time_config == {"hour": 3, "minute": 0}

    assert sync_metric(scheduler, "success") == 3
    last = scheduler.status()["last_sync"]
    assert last["result"] == "success" and last["counts"]["updated"] == 1


def test_one_instance_at_a_time_and_one_periodic_attempt_per_interval(
    scheduler: EnhancedScheduler, server: RecordingHTTPServer, redis_url: str
) -> None:
    settings = scheduler.settings
    client = redis.Redis.from_url(redis_url)
    other = DistributedLock(client, api_sync_lock_key(settings.redis_key_prefix), 10, "other")
    assert other.acquire()
    try:
        assert scheduler.sync_schedules_from_api() == dict.fromkeys(
            ("created", "updated", "skipped", "invalid", "disabled"), 0
        )
    finally:
        other.release()
        client.close()
    assert server.requests == [] and sync_metric(scheduler, "skipped_locked") == 1

    scheduler.api_sync.step()  # periodic: syncs
    scheduler.api_sync.step()  # periodic again within the interval: skips
    assert len(server.requests) == 1 and sync_metric(scheduler, "skipped_recent") == 1
    scheduler.sync_schedules_from_api()  # a manual sync does not wait for the interval
    assert len(server.requests) == 2


# -- 3. failures change nothing at all ----------------------------------------------------------

FAILURES = {
    # name: (responses for the server, expected case, words in the message, requests made)
    "down": (None, "unreachable", "cannot connect", 0),
    "500": ([ScriptedResponse(500)] * 3, "http_status", "HTTP 500", 3),
    "404": ([ScriptedResponse(404)], "http_status", "HTTP 404", 1),
    "timeout": ([ScriptedResponse(200, SEED_ANSWER, delay=5)] * 3, "timeout", "REQUEST_TIMEOUT", 3),
    "truncated_json": (
        [ScriptedResponse(200, body=b'{"data": [{"domain_con')],
        "invalid_json",
        "",
        1,
    ),
    "wrong_shape": ([ScriptedResponse(200, {"data": "x"})], "wrong_shape", "a string", 1),
    "too_large": ([ScriptedResponse(200, body=b" " * (60 * MB))], "too_large", "larger than", 1),
    "too_large_streamed": (
        [ScriptedResponse(200, body=b" " * (60 * MB), omit_length=True)],
        "too_large",
        "larger than",
        1,
    ),
    "cut_connection": (
        [ScriptedResponse(200, body=json.dumps(SEED_ANSWER).encode(), cut_after=20)] * 3,
        "incomplete",
        "connection broke",
        3,
    ),
    "second_page_fails": (
        [ScriptedResponse(200, answer(item("p1"), next="/page2")), *[ScriptedResponse(503)] * 3],
        "http_status",
        "HTTP 503",
        4,
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failed_fetch_leaves_the_table_byte_for_byte_unchanged(
    name: str, db: DatabaseConnection, database_url: str
) -> None:
    responses, case, words, requests = FAILURES[name]
    with RecordingHTTPServer(ScriptedResponse(200, answer(item("a"), item("b")))) as server:
        assert make_sync(db, server.url).sync().counts["created"] == 2
        insert_manual(database_url, uuid.uuid4(), "manual.example.com")
        before = dump(database_url)
        url = f"http://127.0.0.1:{unused_port()}" if responses is None else server.url
        server.enqueue(*(responses or []))
        started = len(server.requests)
        # DISABLE_MISSING: a partial answer must not disable the rows it lacks either.
        sync = make_sync(db, url, disable_missing=True, timeout=0.3)
        with pytest.raises(ApiSyncError) as caught:
            sync.sync()
        assert len(server.requests) - started == requests
    assert caught.value.case == case
    assert words in str(caught.value)
    assert dump(database_url) == before


def test_shutdown_cuts_the_retry_backoff_short(db: DatabaseConnection) -> None:
    stop = threading.Event()
    stop.set()
    sync = make_sync(db, f"http://127.0.0.1:{unused_port()}", backoff=30, stop=stop)
    with pytest.raises(ApiSyncError) as caught:
        sync.sync()
    assert caught.value.case == "cancelled"


# -- 4. mixed valid and invalid items -----------------------------------------------------------


def test_valid_items_apply_and_each_invalid_one_is_reported(
    db: DatabaseConnection, database_url: str
) -> None:
    with RecordingHTTPServer(ScriptedResponse(200, answer(item("kept", hour=1)))) as server:
        make_sync(db, server.url).sync()
        kept_before = dump(database_url)
        bad_hour = item("kept", hour=25)  # an existing row's item turns invalid
        no_domain = item("no-domain")
        del no_domain["data"]["domain"]
        server.enqueue(
            ScriptedResponse(
                200,
                answer(
                    item("good-1"),
                    {"data": item("x")["data"]},
                    item(""),
                    no_domain,
                    bad_hour,
                    item("weird", schedule={"frequency": "fortnightly", "time": {}}),
                    "not an object",
                    item(str(uuid.UUID(int=7)), domain="uuid.example.com"),
                ),
            )
        )
        result = make_sync(db, server.url, disable_missing=True).sync()
    assert result.counts == {"created": 2, "updated": 0, "skipped": 0, "invalid": 6, "disabled": 0}
    reasons = dict(result.invalid_items)
    assert [given for given, _ in result.invalid_items] == [
        None,
        None,
        "no-domain",
        "kept",
        "weird",
        None,
    ]
    assert "domain must be a non-empty string, got None" in reasons["no-domain"]
    assert "time_config.hour must be an integer 0-23, got 25" in reasons["kept"]
    assert "fortnightly" in reasons["weird"]
    assert kept_before[0] in dump(database_url)  # the invalid item left its row alone
    rows = api_rows(database_url)
    assert set(rows) == {uuid.uuid5(EXTERNAL_ID_NAMESPACE, k) for k in ("kept", "good-1")} | {
        uuid.UUID(int=7)
    }
    assert "external_id" not in rows[uuid.UUID(int=7)]["payload"]


# -- 6. DISABLE_MISSING ------------------------------------------------------------------------


def test_missing_items_are_disabled_only_when_asked_and_manual_rows_never(
    db: DatabaseConnection, database_url: str
) -> None:
    gone_id = uuid.uuid4()
    with RecordingHTTPServer(ScriptedResponse(200, answer(item("stays"), item(str(gone_id))))) as s:
        make_sync(db, s.url).sync()
        manual = insert_manual(database_url, gone_id, "example.com")  # same id and domain
        manual_before = query(
            database_url, "SELECT * FROM schedules WHERE schedule_id = %s", (manual,)
        )

        s.enqueue(ScriptedResponse(200, answer(item("stays"))))
        assert make_sync(db, s.url).sync().counts["disabled"] == 0  # not asked
        assert api_rows(database_url)[gone_id]["enabled"] is True

        s.enqueue(ScriptedResponse(200, answer(item("stays"))))
        result = make_sync(db, s.url, disable_missing=True).sync()
        assert result.counts == {
            "created": 0,
            "updated": 0,
            "skipped": 1,
            "invalid": 0,
            "disabled": 1,
        }
        assert [c.action for c in result.changes] == ["disable"]
        assert api_rows(database_url)[gone_id]["enabled"] is False
        after = query(database_url, "SELECT * FROM schedules WHERE schedule_id = %s", (manual,))
        assert after == manual_before

        # It comes back: the API owns the row, so it is enabled again.
        s.enqueue(ScriptedResponse(200, answer(item("stays"), item(str(gone_id)))))
        result = make_sync(db, s.url, disable_missing=True).sync()
        assert result.counts["updated"] == 1 and result.changes[0].fields == ("enabled",)
        assert api_rows(database_url)[gone_id]["enabled"] is True


def test_pages_are_joined_and_the_token_stays_on_its_origin(
    db: DatabaseConnection, database_url: str
) -> None:
    with RecordingHTTPServer() as other, RecordingHTTPServer() as api:
        api.enqueue(
            ScriptedResponse(200, answer(item("p1"), next="/v1/s?page=2")),
            ScriptedResponse(200, answer(item("p2"), links={"next": f"{other.url}/p3"})),
        )
        other.enqueue(ScriptedResponse(200, answer(item("p3"))))
        sync = make_sync(db, f"{api.url}/v1/s", token="tk-9", disable_missing=True)
        result = sync.sync()
        assert (result.counts["created"], result.pages, result.items) == (3, 3, 3)
        assert [r.path for r in api.requests] == ["/v1/s", "/v1/s?page=2"]
        assert all(r.header("Authorization") == "Bearer tk-9" for r in api.requests)
        assert other.requests[0].header("Authorization") is None


# -- 5. two daemons, one fetch per interval ----------------------------------------------------


def test_two_daemons_fetch_once_per_interval(env: dict[str, str], tmp_path: Path) -> None:
    interval = 2.0
    with RecordingHTTPServer(ScriptedResponse(200, SEED_ANSWER)) as server:
        extra = {
            "API_URL": server.url,
            "API_SYNC_INTERVAL": str(interval),
            "LOG_LEVEL": "DEBUG",
        }
        a = DaemonProcess({**env, **extra}, tmp_path / "a.log", instance_id="sync-a")
        b = DaemonProcess({**env, **extra}, tmp_path / "b.log", instance_id="sync-b")
        with a, b:
            both_up = len(server.requests)
            server.wait_for_requests(both_up + 3, timeout=6 * interval)
            requests = server.requests
            skipped = [
                e for d in (a, b) for e in d.events() if e.get("event") == "api_sync.skipped"
            ]
            synced = [
                e for d in (a, b) for e in d.events() if e.get("event") == "api_sync.completed"
            ]
    gaps = [y.monotonic - x.monotonic for x, y in itertools.pairwise(requests)]
    # Two fetches per interval would leave gaps of ~1 s or less; the marker keeps them ~2 s.
    assert min(gaps) >= 0.8 * interval, gaps
    assert skipped, "the other instance never tried (or never skipped)"
    assert len(synced) >= len(requests) - 1


# -- the CLI -----------------------------------------------------------------------------------


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scheduler.py", "sync", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_dry_run_prints_one_json_document_and_writes_nothing(
    env: dict[str, str], database_url: str, server: RecordingHTTPServer
) -> None:
    env = {**env, "API_URL": server.url, "API_TOKEN": "very-secret-token"}
    done = cli(env, "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["dry_run"] is True
    assert document["counts"] == {
        "created": 1,
        "updated": 0,
        "skipped": 0,
        "invalid": 0,
        "disabled": 0,
    }
    assert document["changes"][0]["action"] == "create"
    assert document["changes"][0]["external_id"] == "abc-123"
    assert dump(database_url) == []

    done = cli(env, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["created"] == 1
    assert set(api_rows(database_url)) == {ABC_ID}

    done = cli(env)
    assert done.returncode == 0, done.stderr
    assert "skipped 1" in done.stdout
    assert "very-secret-token" not in done.stdout + done.stderr


def test_cli_exit_codes_name_the_failure(env: dict[str, str], database_url: str) -> None:
    done = cli({**env, "API_URL": f"http://127.0.0.1:{unused_port()}", "REQUEST_TIMEOUT": "1"})
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "[unreachable]" in errors[0], done.stderr
    with RecordingHTTPServer(ScriptedResponse(200, {"data": "x"})) as bad:
        done = cli({**env, "API_URL": bad.url}, "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert "[wrong_shape]" in done.stderr
    done = cli(env)
    assert done.returncode == 1 and "[not_configured]" in done.stderr
    assert dump(database_url) == []


def test_sync_result_dict_is_json_ready(
    db: DatabaseConnection, server: RecordingHTTPServer
) -> None:
    result: SyncResult = make_sync(db, server.url).sync(dry_run=True)
    assert json.loads(json.dumps(result.to_dict()))["items"] == 1
    with psycopg.connect(db.url) as conn:
        assert conn.execute("SELECT count(*) FROM schedules").fetchone() == (0,)
