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
