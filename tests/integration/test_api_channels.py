"""/api/v1/channels and /api/v1/notifications over real HTTP (`scheduler.py serve`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from database.connection import DatabaseConnection
from tests.support.api import assert_problem, client, make_token, serving
from tests.support.receivers import Receiver

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_channels_are_managed_by_admins_and_never_show_their_secret(
    env: dict[str, str], db: DatabaseConnection, receiver: Receiver, tmp_path: Path
) -> None:
    tokens = {role: make_token(db, f"t-{role}", role) for role in ("read", "write", "admin")}
    serve_env = {**env, "NOTIFY_ALLOWED_HOSTS": "127.0.0.1"}
    body = {"name": "ops", "kind": "webhook", "target": {"url": receiver.url}}
    with serving(serve_env, tmp_path / "serve.log") as server:
        with client(server.url, tokens["write"]) as writer:
            assert_problem(writer.post("/api/v1/channels", json=body), 403)
        with client(server.url, tokens["admin"]) as admin:
            added = admin.post("/api/v1/channels", json=body)
            assert added.status_code == 201, added.text
            assert added.json()["target"] == {"url": "http://127.0.0.1/***"}
            assert_problem(admin.post("/api/v1/channels", json=body), 409)
            evil = {**body, "name": "evil", "target": {"url": "https://evil.test/x"}}
            problem = assert_problem(admin.post("/api/v1/channels", json=evil), 422)
            assert "NOTIFY_ALLOWED_HOSTS" in problem["detail"]
            mail = {"name": "mail", "kind": "email", "target": {"to": ["not-an-address"]}}
            assert_problem(admin.post("/api/v1/channels", json=mail), 422)
            tested = admin.post("/api/v1/channels/ops/test")
            assert tested.status_code == 200 and tested.json()["delivered"] is True
            assert receiver.events("test")
            assert_problem(admin.post("/api/v1/channels/nope/test"), 404)
        with client(server.url, tokens["read"]) as reader:
            listed = reader.get("/api/v1/channels")
            assert [c["name"] for c in listed.json()] == ["ops"]
            page = reader.get("/api/v1/notifications", params={"limit": 1}).json()
            assert page["items"][0]["event"] == "test" and page["items"][0]["status"] == "sent"
            assert_problem(reader.delete("/api/v1/channels/ops"), 403)
            assert_problem(reader.get("/api/v1/notifications", params={"cursor": "x"}), 400)
        with client(server.url, tokens["admin"]) as admin:
            assert admin.delete("/api/v1/channels/ops").status_code == 204
            assert_problem(admin.delete("/api/v1/channels/ops"), 404)
        answers = server.log()
    assert "very-secret-token" not in answers
