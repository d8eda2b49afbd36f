"""API tokens (migration 004): SHA-256 only, roles, revocation, last_used_at throttling."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from database.connection import DatabaseConnection
from services.errors import InvalidTokenRequest, TokenExists
from services.store.tokens import TOKEN_PREFIX, TokenStore
from tests.integration.test_cli import cli, cli_json
from tests.support.schedules import query


def test_create_stores_only_the_hash_and_authenticates(
    db: DatabaseConnection, database_url: str
) -> None:
    store = TokenStore(db)
    record, token = store.create("deploy-bot", "write")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert (record.name, record.role, record.revoked_at) == ("deploy-bot", "write", None)
    (row,) = query(database_url, "SELECT to_jsonb(t)::text AS everything FROM api_tokens t")
    assert token not in row["everything"] and token[len(TOKEN_PREFIX) :] not in row["everything"]
    assert hashlib.sha256(token.encode()).hexdigest() in row["everything"]
    found = store.authenticate(token)
    assert found is not None and found.name == "deploy-bot" and found.role == "write"
    assert found.last_used_at is not None
    assert store.authenticate(token + "x") is None
    assert store.authenticate("") is None
    assert not hasattr(found, "token_sha256")
    assert [t.name for t in store.list()] == ["deploy-bot"]


def test_last_used_at_is_written_at_most_once_a_minute(
    db: DatabaseConnection, database_url: str
) -> None:
    store = TokenStore(db)
    _, token = store.create("reader")
    first = store.authenticate(token)
    second = store.authenticate(token)
    assert first is not None and second is not None
    assert second.last_used_at == first.last_used_at  # no second write within the minute
    query(
        database_url,
        "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE name = 'reader'",
    )
    third = store.authenticate(token)
    assert third is not None and third.last_used_at is not None
    assert first.last_used_at is not None and third.last_used_at >= first.last_used_at


def test_duplicates_bad_roles_and_names_are_clear_errors(db: DatabaseConnection) -> None:
    store = TokenStore(db)
    store.create("ci")
    with pytest.raises(TokenExists, match="'ci' already exists"):
        store.create("ci", "admin")
    with pytest.raises(InvalidTokenRequest, match="role 'root' is not one of: read, write, admin"):
        store.create("other", "root")
    with pytest.raises(InvalidTokenRequest, match="token name"):
        store.create("has space")


def test_revoked_tokens_no_longer_authenticate(db: DatabaseConnection) -> None:
    store = TokenStore(db)
    _, token = store.create("old", "admin")
    assert store.revoke("old") is True
    assert store.authenticate(token) is None
    assert store.revoke("old") is True  # already revoked: still known
    assert store.revoke("never-made") is False
    (listed,) = store.list()
    assert listed.revoked_at is not None


def test_cli_token_commands(env: dict[str, str], database_url: str) -> None:
    created = cli_json(env, "token", "create", "ops", "--role", "admin")
    assert set(created) == {"name", "role", "token"}
    assert created["name"] == "ops" and created["role"] == "admin"
    assert created["token"].startswith(TOKEN_PREFIX)
    default = cli_json(env, "token", "create", "viewer")
    assert default["role"] == "read"
    listed = cli_json(env, "token", "list")
    assert [t["name"] for t in listed] == ["ops", "viewer"]
    assert set(listed[0]) == {"name", "role", "created_at", "last_used_at", "revoked_at"}
    text = cli(env, "token", "list").stdout
    assert created["token"] not in text and "ops" in text
    dup = cli(env, "token", "create", "ops")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = cli(env, "token", "create", "x", "--role", "root")
    assert bad.returncode == 2
    assert cli_json(env, "token", "revoke", "ops") == {"revoked": "ops"}
    unknown = cli(env, "token", "revoke", "nobody")
    assert unknown.returncode == 1 and "no token named 'nobody'" in unknown.stderr
    (row,) = query(database_url, "SELECT revoked_at FROM api_tokens WHERE name = 'ops'")
    assert row["revoked_at"] is not None


def test_ensure_local_keeps_one_private_admin_token_and_prints_the_login_url(
    env: dict[str, str], db: DatabaseConnection, tmp_path: Path
) -> None:
    path = tmp_path / "local" / "admin-token"
    env = {**env, "HTTP_PORT": "8123"}
    first = cli(env, "token", "ensure-local", "--file", str(path))
    assert first.returncode == 0, first.stderr
    assert "http://127.0.0.1:8123/login" in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token not in first.stdout + first.stderr
    found = TokenStore(db).authenticate(token)
    assert found is not None and found.role == "admin"

    again = cli(env, "token", "ensure-local", "--file", str(path))
    assert again.returncode == 0 and path.read_text().strip() == token  # reused

    TokenStore(db).revoke(found.name)
    renewed = cli(env, "token", "ensure-local", "--file", str(path))
    assert renewed.returncode == 0 and path.read_text().strip() != token
    assert TokenStore(db).authenticate(path.read_text().strip()) is not None
