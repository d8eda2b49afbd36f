"""The REST API over real HTTP against `scheduler.py serve` (issue 14, acceptance 1 and 2)."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from database.connection import DatabaseConnection
from services.store.schedules import ScheduleRepository
from tests.support.api import (
    CONTRACT_PATHS,
    assert_problem,
    client,
    make_token,
    schedule_body,
    serving,
)
from tests.support.daemon import DaemonProcess
from tests.support.redis_server import free_port
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(120)

OPS_PATHS = ("/health", "/live", "/ready", "/status", "/metrics", "/health/detailed")


class Server(Protocol):
    url: str

    def log(self) -> str: ...


@dataclass
class DaemonServer:
    """A daemon's HTTP port, seen as the API tests see `serve`."""

    daemon: DaemonProcess
    url: str

    def log(self) -> str:
        return self.daemon.log_path.read_text(errors="replace")


@dataclass
class Api:
    server: Server
    tokens: dict[str, str]
    db: DatabaseConnection
    database_url: str
    mode: str  # "serve" (no daemon live) or "daemon" (the daemon serves the API itself)

    def as_(self, role: str | None) -> httpx.Client:
        return client(self.server.url, None if role is None else self.tokens[role])


@pytest.fixture(params=["serve", "daemon"])
def api(
    request: pytest.FixtureRequest,
    env: dict[str, str],
    db: DatabaseConnection,
    database_url: str,
    tmp_path: Path,
) -> Iterator[Api]:
    """The API of `scheduler.py serve`, or of a running daemon: every test runs against both."""
    tokens = {role: make_token(db, f"t-{role}", role) for role in ("read", "write", "admin")}
    if request.param == "serve":
        with serving(env, tmp_path / "serve.log") as server:
            yield Api(server, tokens, db, database_url, "serve")
        return
    port = free_port()
    daemon_env = {**env, "HTTP_PORT": str(port), "INSTANCE_ID": "api-test-daemon"}
    with DaemonProcess(daemon_env, tmp_path / "daemon.log", instance_id="api-test-daemon") as d:
        yield Api(DaemonServer(d, f"http://127.0.0.1:{port}"), tokens, db, database_url, "daemon")


def create(api: Api, **overrides: Any) -> httpx.Response:
    with api.as_("write") as http:
        response = http.post("/api/v1/schedules", json=schedule_body(**overrides))
    assert response.status_code == 201, response.text
    return response


def test_openapi_lists_every_contract_path_and_the_ops_endpoints_answer(api: Api) -> None:
    with api.as_(None) as http:
        spec = http.get("/openapi.json").json()
        for path in OPS_PATHS:
            assert http.get(path).status_code in (200, 503), path
        docs = http.get("/docs")
    assert spec["openapi"].startswith("3.")
    for path, methods in CONTRACT_PATHS.items():
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), (path, set(spec["paths"][path]))
    assert docs.status_code == 200 and "/api/v1/schedules/{schedule_id}" in docs.text
    assert "cdn" not in docs.text.lower() and "<script" not in docs.text


def _concrete(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: "name" if m.group() == "{name}" else str(uuid.uuid4()), path
    )


def test_every_api_path_refuses_no_token_a_bad_one_a_revoked_one_and_too_low_a_role(
    api: Api,
) -> None:
    revoked = make_token(api.db, "gone", "admin")
    with api.as_("admin") as http:
        assert http.delete("/api/v1/tokens/gone").status_code == 204
    for index, (path, method) in enumerate(
        (path, method) for path, methods in CONTRACT_PATHS.items() for method in methods
    ):
        url = _concrete(path)
        # Each operation's three from an address of its own: ten bad tokens from one address
        # within a minute make the next one slow (services/web/auth_throttle.py).
        transport = httpx.HTTPTransport(local_address=f"127.0.{index // 250}.{index % 250 + 2}")
        with httpx.Client(base_url=api.server.url, transport=transport) as stranger:
            for headers in (
                {},
                {"Authorization": "Bearer es_nope"},
                {"Authorization": f"Bearer {revoked}"},
            ):
                response = stranger.request(method, url, headers=headers)
                problem = assert_problem(response, 401)
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert revoked not in response.text and "es_nope" not in problem["detail"]
        lowest = "read" if method == "get" else "write"
        if path.startswith("/api/v1/tokens"):
            lowest = "admin"
        for role in ("read", "write", "admin")[: ("read", "write", "admin").index(lowest)]:
            with api.as_(role) as http:
                assert_problem(http.request(method, url), 403)
    log = api.server.log()
    for secret in (*api.tokens.values(), revoked):
        assert secret not in log


def test_create_read_replace_patch_delete_with_etags(api: Api) -> None:
    created = create(api, name="nightly report", tags=["nightly", "team:data"])
    body = created.json()
    schedule_id = body["schedule_id"]
    assert created.headers["location"] == f"/api/v1/schedules/{schedule_id}"
    assert created.headers["etag"] == f'"{body["config_hash"]}"'
    assert body["created_by"] == "api:t-write" and body["tags"] == ["nightly", "team:data"]
    assert len(body["upcoming"]) == 10 and body["upcoming"][0].endswith("+00:00")
    with api.as_("write") as http:
        one = http.get(f"/api/v1/schedules/{schedule_id}")
        assert one.status_code == 200 and one.headers["etag"] == created.headers["etag"]
        stale = created.headers["etag"]

        patched = http.patch(
            f"/api/v1/schedules/{schedule_id}",
            json={"time_config": {"timezone": "Europe/Paris"}, "name": None},
            headers={"If-Match": stale, "Content-Type": "application/merge-patch+json"},
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["time_config"] == {"minutes": 10, "timezone": "Europe/Paris"}
        assert patched.json()["name"] is None
        assert patched.headers["etag"] != stale

        for response in (
            http.patch(
                f"/api/v1/schedules/{schedule_id}", json={"name": "x"}, headers={"If-Match": stale}
            ),
            http.put(
                f"/api/v1/schedules/{schedule_id}",
                json=schedule_body(),
                headers={"If-Match": stale},
            ),
            http.delete(f"/api/v1/schedules/{schedule_id}", headers={"If-Match": stale}),
        ):
            assert_problem(response, 412)
            assert response.headers["etag"] == patched.headers["etag"]

        replaced = http.put(
            f"/api/v1/schedules/{schedule_id}",
            json=schedule_body(frequency="daily", time_config={"hour": 2, "minute": 30}),
            headers={"If-Match": patched.headers["etag"]},
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["tags"] == [] and replaced.json()["frequency"] == "daily"
        assert replaced.json()["domain_config_id"] == body["domain_config_id"]

        assert_problem(http.patch(f"/api/v1/schedules/{schedule_id}", json={"source": "api"}), 422)
        assert http.delete(f"/api/v1/schedules/{schedule_id}").status_code == 204
        for response in (
            http.get(f"/api/v1/schedules/{schedule_id}"),
            http.delete(f"/api/v1/schedules/{schedule_id}"),
            http.patch(f"/api/v1/schedules/{schedule_id}", json={"name": "x"}),
        ):
            assert_problem(response, 404)


def test_an_invalid_schedule_gets_422_with_the_watchers_reason_per_field(api: Api) -> None:
    with api.as_("write") as http:
        response = http.post(
            "/api/v1/schedules",
            json=schedule_body(frequency="daily", time_config={"hour": 25}, tags=["bad tag"]),
        )
        problem = assert_problem(response, 422)
        fields = {e["field"] for e in problem["errors"]}
        assert {"time_config.hour", "tags"} <= fields, problem
        assert "time_config.hour must be an integer 0-23, got 25" in problem["detail"]
        shape = assert_problem(http.post("/api/v1/schedules", json={"domain": "x"}), 422)
        assert {e["field"] for e in shape["errors"]} == {"frequency", "time_config"}
        nul = assert_problem(
            http.post("/api/v1/schedules", json=schedule_body(name="a\u0000b")), 422
        )
        assert "NUL" in nul["detail"]
        assert_problem(
            http.post(
                "/api/v1/schedules",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
    assert query(api.database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0


def test_list_filters_sorts_and_pages_stably_while_rows_are_inserted(api: Api) -> None:
    with api.as_("write") as http:
        items = [
            schedule_body(domain=f"d{i:03}.example", tags=["even"] if i % 2 == 0 else ["odd"])
            for i in range(120)
        ]
        created = http.post("/api/v1/schedules/bulk/create", json={"items": items})
        assert created.status_code == 201, created.text
        original = created.json()["created"]

        stop = threading.Event()

        def insert_more() -> None:
            with api.as_("write") as writer:
                n = 0
                while not stop.is_set() and n < 60:
                    writer.post("/api/v1/schedules", json=schedule_body(domain=f"late{n}.example"))
                    n += 1

        inserter = threading.Thread(target=insert_more)
        inserter.start()
        seen: list[str] = []
        cursor: str | None = None
        try:
            while True:
                params: dict[str, Any] = {"limit": 25, "sort": "created_at"}
                if cursor:
                    params["cursor"] = cursor
                page = http.get("/api/v1/schedules", params=params).json()
                seen += [s["schedule_id"] for s in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            stop.set()
            inserter.join()
        assert len(seen) == len(set(seen)), "a row appeared on two pages"
        # One transaction's rows share created_at: they come first, ordered by id among them.
        assert seen[: len(original)] == sorted(original), "the rows that existed are all there"

        evens = http.get("/api/v1/schedules", params={"tag": ["even"], "limit": 500}).json()[
            "items"
        ]
        assert len(evens) == 60 and all("even" in s["tags"] for s in evens)
        assert http.get("/api/v1/schedules", params={"tag": ["even", "odd"]}).json()["items"] == []
        found = http.get("/api/v1/schedules", params={"q": "D007.EX"}).json()["items"]
        assert [s["domain"] for s in found] == ["d007.example"]
        by_domain = http.get("/api/v1/schedules", params={"sort": "domain", "limit": 3}).json()
        assert [s["domain"] for s in by_domain["items"]] == [
            "d000.example",
            "d001.example",
            "d002.example",
        ]
        second = http.get(
            "/api/v1/schedules",
            params={"sort": "domain", "limit": 3, "cursor": by_domain["next_cursor"]},
        ).json()
        assert second["items"][0]["domain"] == "d003.example"
        assert_problem(
            http.get("/api/v1/schedules", params={"cursor": by_domain["next_cursor"]}), 400
        )
        assert_problem(http.get("/api/v1/schedules", params={"cursor": "garbage!"}), 400)
        assert_problem(http.get("/api/v1/schedules", params={"limit": 501}), 422)


def test_bulk_create_is_all_or_nothing_and_bulk_operations_change_one_transaction(api: Api) -> None:
    with api.as_("write") as http:
        bad = http.post(
            "/api/v1/schedules/bulk/create",
            json={
                "items": [
                    schedule_body(),
                    schedule_body(frequency="cron", time_config={"expression": "x"}),
                ]
            },
        )
        problem = assert_problem(bad, 422)
        assert [e["field"] for e in problem["errors"]] == ["items[1].time_config.expression"]
        assert query(api.database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 0

        ids = http.post(
            "/api/v1/schedules/bulk/create",
            json={"items": [schedule_body(tags=["batch"]) for _ in range(5)] + [schedule_body()]},
        ).json()["created"]
        paused = http.post(
            "/api/v1/schedules/bulk/operation",
            json={"operation": "pause", "tag": "batch", "note": "  migrating the database \n"},
        )
        assert paused.json() == {"matched": 5, "changed": 5}
        again = http.post(
            "/api/v1/schedules/bulk/operation", json={"operation": "pause", "tag": "batch"}
        )
        assert again.json() == {"matched": 5, "changed": 0}
        row = http.get(f"/api/v1/schedules/{ids[0]}").json()
        assert (row["enabled"], row["paused_note"], row["paused_by"]) == (
            False,
            "migrating the database",
            "t-write",
        )
        resumed = http.post(
            "/api/v1/schedules/bulk/operation",
            json={"operation": "resume", "schedule_ids": ids[:2]},
        )
        assert resumed.json() == {"matched": 2, "changed": 2}
        assert http.get(f"/api/v1/schedules/{ids[0]}").json()["paused_note"] is None
        blank = http.post(  # a blank note is no note, as for a single pause
            "/api/v1/schedules/bulk/operation",
            json={"operation": "pause", "schedule_ids": ids[:1], "note": "   "},
        )
        assert blank.json() == {"matched": 1, "changed": 1}
        assert http.get(f"/api/v1/schedules/{ids[0]}").json()["paused_note"] is None
        triggered = http.post(
            "/api/v1/schedules/bulk/operation", json={"operation": "trigger", "tag": "batch"}
        )
        if api.mode == "serve":  # nothing live to run them
            assert_problem(triggered, 409)
        else:
            assert triggered.json() == {"matched": 5, "changed": 5}
        assert_problem(
            http.post(
                "/api/v1/schedules/bulk/operation", json={"operation": "explode", "tag": "batch"}
            ),
            400,
        )
        deleted = http.post(
            "/api/v1/schedules/bulk/operation", json={"operation": "delete", "tag": "batch"}
        )
        assert deleted.json() == {"matched": 5, "changed": 5}
        remaining = http.get("/api/v1/schedules").json()["items"]
        assert [s["schedule_id"] for s in remaining] == [ids[5]]


def test_pause_with_a_note_and_resume_one_schedule(api: Api) -> None:
    schedule_id = create(api).json()["schedule_id"]
    with api.as_("write") as http:
        paused = http.post(f"/api/v1/schedules/{schedule_id}/pause", json={"note": "vendor outage"})
        assert paused.status_code == 200, paused.text
        assert (paused.json()["enabled"], paused.json()["paused_note"]) == (False, "vendor outage")
        assert paused.json()["paused_by"] == "t-write" and paused.json()["paused_at"]
        resumed = http.post(f"/api/v1/schedules/{schedule_id}/resume").json()
        assert resumed["enabled"] is True and resumed["paused_note"] is None
        assert_problem(http.post(f"/api/v1/schedules/{uuid.uuid4()}/pause", json={}), 404)
        http.post(f"/api/v1/schedules/{schedule_id}/pause", json={"note": "again"})
    # `enable` (CLI, seed-001 API) ends a pause as resume does: the note no longer applies.
    enabled = ScheduleRepository(api.db).enable_schedule(schedule_id)
    assert (enabled.enabled, enabled.paused_note, enabled.paused_at) == (True, None, None)


def test_audit_names_the_api_caller_and_filters(api: Api) -> None:
    schedule_id = create(api).json()["schedule_id"]
    with api.as_("write") as http:
        http.patch(f"/api/v1/schedules/{schedule_id}", json={"name": "renamed"})
    query(
        api.database_url,
        "UPDATE schedules SET domain = 'psql.example' WHERE schedule_id = %s",
        [schedule_id],
    )
    query(
        api.database_url,
        "UPDATE schedules SET next_run = now() WHERE schedule_id = %s",
        [schedule_id],
    )
    with api.as_("read") as http:
        trail = http.get(f"/api/v1/schedules/{schedule_id}/audit").json()["items"]
        assert [(e["action"], e["actor"]) for e in trail] == [
            ("update", f"sql:{_session_user(api)}"),
            ("update", "api:t-write"),
            ("insert", "api:t-write"),
        ]
        assert trail[1]["changed_fields"] == ["name"]
        by_actor = http.get("/api/v1/audit", params={"actor": "api:t-write", "limit": 1}).json()
        assert len(by_actor["items"]) == 1 and by_actor["next_cursor"]
        rest = http.get(
            "/api/v1/audit", params={"actor": "api:t-write", "cursor": by_actor["next_cursor"]}
        )
        assert [e["action"] for e in rest.json()["items"]] == ["insert"]


def _session_user(api: Api) -> str:
    return str(query(api.database_url, "SELECT session_user AS u")[0]["u"])


def test_tokens_are_managed_by_admins_and_shown_once(api: Api) -> None:
    with api.as_("admin") as http:
        made = http.post("/api/v1/tokens", json={"name": "ci-bot", "role": "write"})
        assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
        token = made.json()["token"]
        listed = http.get("/api/v1/tokens").json()
        assert "ci-bot" in {t["name"] for t in listed} and token not in str(listed)
        assert_problem(http.post("/api/v1/tokens", json={"name": "ci-bot"}), 409)
        assert_problem(http.post("/api/v1/tokens", json={"name": "x", "role": "root"}), 422)
        with client(api.server.url, token) as bot:
            assert bot.get("/api/v1/schedules").status_code == 200
            assert http.delete("/api/v1/tokens/ci-bot").status_code == 204
            assert_problem(bot.get("/api/v1/schedules"), 401)
        assert_problem(http.delete("/api/v1/tokens/nobody"), 404)
    assert token not in api.server.log()


def test_creator_limit_answers_429(
    env: dict[str, str], db: DatabaseConnection, tmp_path: Path
) -> None:
    token = make_token(db, "limited", "write")
    with serving({**env, "MAX_SCHEDULES_PER_CREATOR": "2"}, tmp_path / "serve.log") as server:
        with client(server.url, token) as http:
            assert http.post("/api/v1/schedules", json=schedule_body()).status_code == 201
            bulk = http.post("/api/v1/schedules/bulk/create", json={"items": [schedule_body()] * 2})
            assert_problem(bulk, 429)
            assert http.post("/api/v1/schedules", json=schedule_body()).status_code == 201
            assert_problem(http.post("/api/v1/schedules", json=schedule_body()), 429)


def test_executions_pages_filters_one_run_and_stats(api: Api) -> None:
    schedule_id = create(api).json()["schedule_id"]
    rows = []
    for i, status in enumerate(["completed", "completed", "failed", "skipped", "completed"]):
        rows.append(
            query(
                api.database_url,
                """INSERT INTO job_executions (schedule_id, job_id, domain, domain_config_id,
                       status, started_at, scheduled_for, completed_at, duration_seconds,
                       error_message, trigger)
                   SELECT schedule_id, schedule_id::text, domain, domain_config_id, %s,
                          now() - make_interval(mins => %s), now() - make_interval(mins => %s),
                          now(), %s, %s, 'schedule'
                   FROM schedules WHERE schedule_id = %s RETURNING execution_id""",
                [
                    status,
                    10 - i,
                    10 - i,
                    float(i + 1),
                    "boom" if status == "failed" else None,
                    schedule_id,
                ],
            )[0]["execution_id"]
        )
    with api.as_("read") as http:
        page = http.get("/api/v1/executions", params={"limit": 2}).json()
        assert [e["execution_id"] for e in page["items"]] == [str(rows[4]), str(rows[3])]
        rest = http.get(
            "/api/v1/executions", params={"limit": 10, "cursor": page["next_cursor"]}
        ).json()
        assert [e["execution_id"] for e in rest["items"]] == [str(r) for r in rows[2::-1]]
        assert rest["next_cursor"] is None
        failed = http.get(
            f"/api/v1/schedules/{schedule_id}/executions", params={"status": ["failed", "skipped"]}
        ).json()["items"]
        assert {e["status"] for e in failed} == {"failed", "skipped"}
        one = http.get(f"/api/v1/executions/{rows[2]}").json()
        assert one["error_message"] == "boom" and "output_tail" in one
        stats = http.get(f"/api/v1/executions/stats/{schedule_id}", params={"days": 1}).json()
        assert stats["total_executions"] == 4 and stats["successful"] == 3
        assert stats["by_status"]["skipped"] == 1 and stats["p50_duration"] is not None
        assert http.get("/api/v1/executions/stats").json()["total_executions"] == 4
        assert http.get("/api/v1/executions/running").json() == []
        assert_problem(http.get(f"/api/v1/executions/{uuid.uuid4()}"), 404)
    with api.as_("write") as http:
        assert_problem(http.post(f"/api/v1/executions/{rows[0]}/cancel"), 409)
        trigger = http.post(f"/api/v1/schedules/{schedule_id}/trigger")
        if api.mode == "serve":  # no daemon is live
            assert_problem(trigger, 409)
        else:
            assert trigger.status_code == 202 and trigger.json()["request_id"]


def test_scheduler_pause_is_kept_in_postgresql(api: Api) -> None:
    with api.as_("write") as http:
        assert_problem(http.post("/api/v1/scheduler/pause", json={}), 422)
        paused = http.post("/api/v1/scheduler/pause", json={"note": "db upgrade"}).json()
        assert paused["paused"] is True and paused["note"] == "db upgrade"
        status = http.get("/api/v1/scheduler/status").json()
        assert status["paused"]["paused"] is True
        live = [i["instance_id"] for i in status["instances"]]
        assert live == ([] if api.mode == "serve" else ["api-test-daemon"])
        assert http.post("/api/v1/scheduler/resume").json()["paused"] is False
