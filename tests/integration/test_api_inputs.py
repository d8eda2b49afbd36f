"""Inputs the schemathesis run (test_api_schemathesis.py) found answered wrongly: each is now a
4xx problem naming the field, and the same input written correctly still works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from database.connection import DatabaseConnection
from tests.support.api import assert_problem, client, make_token, schedule_body, serving
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def http(env: dict[str, str], db: DatabaseConnection, tmp_path: Path) -> Iterator[httpx.Client]:
    token = make_token(db, "inputs", "admin")
    with serving(env, tmp_path / "serve.log") as server, client(server.url, token) as http:
        yield http


def test_a_profile_id_naming_no_scan_profile_is_422_on_every_write(
    http: httpx.Client, database_url: str
) -> None:
    schedule_id = http.post("/api/v1/schedules", json=schedule_body()).json()["schedule_id"]
    missing = str(uuid.uuid4())
    reason = f"profile_id {missing} is not the id of a scan profile"
    url = f"/api/v1/schedules/{schedule_id}"
    for response, field in [
        (http.post("/api/v1/schedules", json=schedule_body(profile_id=missing)), "profile_id"),
        (http.put(url, json=schedule_body(profile_id=missing)), "profile_id"),
        (http.patch(url, json={"profile_id": missing}), "profile_id"),
        (
            http.post(
                "/api/v1/schedules/bulk/create",
                json={"items": [schedule_body(), schedule_body(profile_id=missing)]},
            ),
            "items[1].profile_id",
        ),
    ]:
        problem = assert_problem(response, 422)
        assert problem["errors"] == [{"field": field, "message": reason}], problem
    assert query(database_url, "SELECT count(*) AS n FROM schedules")[0]["n"] == 1
    (profile,) = query(
        database_url, "INSERT INTO scan_profiles (name) VALUES ('deep') RETURNING profile_id"
    )
    patched = http.patch(url, json={"profile_id": str(profile["profile_id"])})
    assert patched.status_code == 200 and patched.json()["profile_id"] == str(profile["profile_id"])


@pytest.mark.parametrize(
    "moment", ["0", "99999999999", "1e20", "2030-01-01", "2030-01-01T00:00:00", "tomorrow"]
)
def test_since_and_until_are_iso_8601_date_times_with_an_offset(
    http: httpx.Client, moment: str
) -> None:
    schedule_id = http.post("/api/v1/schedules", json=schedule_body()).json()["schedule_id"]
    for path, name in [
        ("/api/v1/executions", "since"),
        ("/api/v1/executions", "until"),
        (f"/api/v1/schedules/{schedule_id}/executions", "since"),
        ("/api/v1/audit", "since"),
        (f"/api/v1/schedules/{schedule_id}/audit", "since"),
    ]:
        problem = assert_problem(http.get(path, params={name: moment}), 422)
        assert [e["field"] for e in problem["errors"]] == [name], problem
        assert "ISO 8601 date-time with a UTC offset" in problem["detail"]
    # Once read as Unix milliseconds (1973): the insert of a moment ago was "since" then.
    assert http.get("/api/v1/audit", params={"since": "5138-11-16T09:46:39Z"}).json() == {
        "items": [],
        "next_cursor": None,
    }
    for good in ("2000-01-01T00:00:00Z", "2000-01-01T05:45:00.5+05:45"):
        trail = http.get(f"/api/v1/schedules/{schedule_id}/audit", params={"since": good})
        assert [e["action"] for e in trail.json()["items"]] == ["insert"], trail.text


def test_a_body_that_is_not_json_is_a_problem_about_the_body(http: httpx.Client) -> None:
    json_type = {"Content-Type": "application/json"}
    for path in ("/api/v1/schedules", "/api/v1/scheduler/pause", "/api/v1/tokens"):
        # Not UTF-8: the body cannot even be read as text (every operation documents 400).
        assert_problem(http.post(path, content=b'{"note": "\xff"}', headers=json_type), 400)
        broken = assert_problem(http.post(path, content=b'{"note": ', headers=json_type), 422)
        assert [e["field"] for e in broken["errors"]] == ["body"], broken
        assert broken["errors"][0]["message"].startswith("not JSON: "), broken


def test_enabled_is_a_json_boolean_on_create_and_replace_as_on_patch(http: httpx.Client) -> None:
    for enabled in (0, 1, "true", "no"):
        problem = assert_problem(
            http.post("/api/v1/schedules", json=schedule_body(enabled=enabled)), 422
        )
        assert [e["field"] for e in problem["errors"]] == ["enabled"], problem
    created = http.post("/api/v1/schedules", json=schedule_body(enabled=False))
    assert created.status_code == 201 and created.json()["enabled"] is False


def test_a_query_parameter_that_takes_one_value_is_given_once(http: httpx.Client) -> None:
    http.post("/api/v1/schedules", json=schedule_body(tags=["a", "b"]))
    twice = http.get("/api/v1/schedules", params={"job_type": ["http", "command"], "limit": 5})
    problem = assert_problem(twice, 422)
    assert problem["errors"] == [
        {"field": "job_type", "message": "given 2 times; it takes one value"}
    ]
    assert_problem(http.get("/api/v1/executions", params={"limit": [5, 6]}), 422)
    tagged = http.get("/api/v1/schedules", params={"tag": ["a", "b"], "job_type": "http"})
    assert len(tagged.json()["items"]) == 1, tagged.text  # a list is repeated on purpose
