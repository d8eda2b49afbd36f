"""No configured password or token ever reaches a log line or an HTTP answer (issue 8,
acceptance 6): a daemon at DEBUG with secrets in every place they can be configured, failing jobs,
and failing CLI commands; everything they print is scanned."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg.types.json import Jsonb

from tests.support.daemon import ROOT, DaemonProcess
from tests.support.redis_server import RedisServer, free_port
from tests.support.schedules import executions, query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

DB_PASSWORD = "SECRETPW-db-7f3a"  # trust auth: PostgreSQL never asks for it, libpq holds it
REDIS_PASSWORD = "SECRETPW-redis-91c2"
API_TOKEN = "tok-SECRET123"
JOB_URL_PASSWORD = "SECRETPW-joburl-5d"
SECRETS = (DB_PASSWORD, REDIS_PASSWORD, API_TOKEN, JOB_URL_PASSWORD)


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def password_redis() -> Iterator[RedisServer]:
    # An ACL user with a password; the default user stays open so the helper's PING works.
    acl = ("--user", "scheduler", "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all")
    with RedisServer(extra_args=acl) as server:
        yield server


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "scheduler.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        with exc:
            return str(exc.read().decode())


def test_no_secret_in_any_log_line_or_answer(
    env: dict[str, str], database_url: str, password_redis: RedisServer, tmp_path: Path
) -> None:
    closed = free_port()
    query(
        database_url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
        "payload) VALUES (gen_random_uuid(), 'example.com', 'interval', %s, 'command', %s), "
        "(gen_random_uuid(), 'example.com', 'interval', %s, 'http', %s), "
        "(gen_random_uuid(), 'example.com', 'cron', '{\"expression\": \"nope\"}', NULL, '{}')",
        (
            Jsonb({"seconds": 1}),
            Jsonb({"argv": ["false"]}),
            Jsonb({"seconds": 1}),
            Jsonb({"url": f"http://user:{JOB_URL_PASSWORD}@127.0.0.1:{closed}/scan"}),
        ),
    )
    port = free_port()
    secret_env = {
        **env,
        "DATABASE_URL": with_password(database_url, "postgres", DB_PASSWORD),
        "REDIS_URL": with_password(password_redis.url, "scheduler", REDIS_PASSWORD),
        "REDIS_PASSWORD": REDIS_PASSWORD,  # unused beside REDIS_URL, but still a secret
        "API_URL": f"http://127.0.0.1:{closed}/schedules",
        "API_TOKEN": API_TOKEN,
        "API_SYNC_INTERVAL": "1",
        "COMMAND_ALLOWLIST": "false",
        "HTTP_ALLOWED_HOSTS": "127.0.0.1",
        "RETRY_MAX_ATTEMPTS": "1",
        "LOG_LEVEL": "DEBUG",
        "HTTP_PORT": str(port),
    }
    captured: dict[str, str] = {}

    log_path = tmp_path / "daemon.log"
    with DaemonProcess(secret_env, log_path, instance_id="test-secrets") as daemon:
        wait_until(
            lambda: (
                len({e["schedule_id"] for e in executions(database_url) if e["status"] == "failed"})
                == 2
            ),
            20,
            message="the command and the http job to fail",
        )
        for path in ("/status", "/ready", "/metrics", "/health"):
            captured[f"GET {path}"] = fetch(f"http://127.0.0.1:{port}{path}")
        assert daemon.terminate() == 0
    captured["daemon"] = log_path.read_text()

    # Daemons whose Redis refuses the password, or is not there: start-up fails.
    cli_env = {**secret_env, "STARTUP_TIMEOUT": "1", "HTTP_PORT": "0"}
    wrong = with_password(password_redis.url, "scheduler", f"wrong-{REDIS_PASSWORD}")
    code, captured["run with a refused Redis password"] = run_cli(
        ["run"], {**cli_env, "REDIS_URL": wrong, "INSTANCE_ID": "test-secrets-cli"}
    )
    assert code == 1
    no_redis = {"REDIS_URL": "", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(closed)}
    code, captured["run without Redis"] = run_cli(
        ["run"], {**cli_env, **no_redis, "INSTANCE_ID": "test-secrets-cli"}
    )
    assert code == 1
    # PostgreSQL does not know the database: the connection error is printed.
    missing_db = {
        **secret_env,
        "DATABASE_URL": with_password(database_url, "postgres", DB_PASSWORD) + "_missing",
        "INSTANCE_ID": "test-secrets-cli",
    }
    code, captured["migrate --status on a missing database"] = run_cli(
        ["migrate", "--status"], missing_db
    )
    assert code == 1
    # A URL that does not parse as a setting is echoed (masked) in the error line.
    bad_url = {**secret_env, "DATABASE_URL": f"mysql://postgres:{DB_PASSWORD}@127.0.0.1/x"}
    code, captured["migrate with a bad DATABASE_URL"] = run_cli(["migrate"], bad_url)
    assert code != 0

    for source, text in captured.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} appears in {source}:\n{text[-3000:]}"

    json_lines = [
        (source, event)
        for source, text in captured.items()
        if not source.startswith("GET")
        for event in _json_objects(text)
    ]
    assert len(json_lines) > 20
    assert [(s, e) for s, e in json_lines if not e.get("instance_id")] == []
    assert '"instance_id": "test-secrets"' in captured["GET /status"]


def _json_objects(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out
