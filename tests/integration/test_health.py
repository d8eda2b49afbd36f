"""The HTTP operations endpoints: /health, /ready, /status, /metrics (issue 8, acceptance 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from services.clock import SYSTEM_CLOCK
from services.config import Settings, load_settings
from services.enhanced_scheduler import EnhancedScheduler
from services.errors import StartupError
from services.web.assembly import build_web_server
from services.web.server import WebServer
from tests.support.daemon import ROOT, DaemonProcess
from tests.support.redis_server import RedisServer, free_port
from tests.support.schedules import executions, query
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

CONTRACT_METRICS = (
    "scheduler_schedules_loaded",
    "scheduler_executions_total",
    "scheduler_execution_duration_seconds",
    "scheduler_fire_lateness_seconds",
    "scheduler_misfires_total",
    "scheduler_lock_conflicts_total",
    "scheduler_lock_lost_total",
    "scheduler_watch_duration_seconds",
    "scheduler_watch_changes_total",
    "scheduler_api_sync_total",
)


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path, error statuses included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, content_type, body = http_get(port, path)
    assert content_type == "application/json", (path, content_type)
    return status, json.loads(body)


def assert_contract_metrics(text: str) -> None:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name in CONTRACT_METRICS:
        # The parser names a counter's family without `_total`; its samples keep the suffix.
        family = families.get(name.removesuffix("_total"))
        assert family is not None, f"{name} missing from /metrics:\n{text}"
        if name.endswith("_total"):
            assert family.type == "counter", name
            assert all(s.name in (name, f"{family.name}_created") for s in family.samples), name


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_daemon_endpoints_and_ready_follows_redis(
    env: dict[str, str], database_url: str, private_redis: RedisServer, tmp_path: Path
) -> None:
    query(
        database_url,
        "INSERT INTO schedules (domain_config_id, domain, frequency, time_config, job_type, "
        "payload) VALUES (gen_random_uuid(), 'example.com', 'interval', %s, 'command', %s)",
        (Jsonb({"seconds": 1}), Jsonb({"argv": ["true"]})),
    )
    port = free_port()
    daemon_env = {
        **env,
        "REDIS_URL": private_redis.url,
        "HTTP_PORT": str(port),
        "COMMAND_ALLOWLIST": "true",
        "HEARTBEAT_INTERVAL": "1",
    }
    with DaemonProcess(daemon_env, tmp_path / "daemon.log", instance_id="test-http") as daemon:
        listening = daemon.wait_for_event("http.listening")
        assert (listening["host"], listening["port"]) == ("127.0.0.1", port)  # default bind

        assert get_json(port, "/health") == (200, {"status": "ok"})
        assert get_json(port, "/ready") == (200, {"ready": True})
        status, body = get_json(port, "/status")
        assert status == 200
        assert body["instance_id"] == "test-http"
        assert body["jobs_loaded"] == 1
        assert body["uptime_seconds"] >= 0
        assert {"running_executions", "watcher"} <= set(body)

        wait_until(
            lambda: any(e["status"] == "completed" for e in executions(database_url)),
            15,
            message="a completed run",
        )
        status, content_type, text = http_get(port, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain; version=")
        assert_contract_metrics(text)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("scheduler_schedules_loaded", ())] == 1
        assert samples[("scheduler_executions_total", (("status", "completed"),))] >= 1

        private_redis.stop()
        started = time.monotonic()
        down = wait_until(lambda: _ready_if(port, 503), 15, message="/ready 503 with Redis down")
        assert time.monotonic() - started < 10
        assert down is not None and down["ready"] is False
        assert [r for r in down["reasons"] if r.startswith("redis: ")], down
        assert not [r for r in down["reasons"] if r.startswith("database: ")], down
        assert get_json(port, "/health") == (200, {"status": "ok"})  # alive, only not ready

        private_redis.start()
        wait_until(lambda: _ready_if(port, 200), 15, message="/ready 200 once Redis is back")
        assert daemon.terminate() == 0
    assert "scheduler.stopped" in [e.get("event") for e in daemon.events()]


def _ready_if(port: int, expected: int) -> dict[str, Any] | None:
    try:
        status, body = get_json(port, "/ready")
    except OSError:  # not listening yet
        return None
    return body if status == expected else None


def ops_server(scheduler: EnhancedScheduler, port: int = 0, **kwargs: Any) -> WebServer:
    """The operations endpoints of `scheduler` alone (no API), on an ephemeral port."""
    return build_web_server(scheduler, host="127.0.0.1", port=port, clock=SYSTEM_CLOCK, **kwargs)


@pytest.fixture
def idle_scheduler(env: dict[str, str], private_redis: RedisServer) -> Iterator[EnhancedScheduler]:
    """A scheduler that was never started, its Redis a private server the test may freeze."""
    settings: Settings = load_settings({**env, "REDIS_URL": private_redis.url})
    scheduler = EnhancedScheduler(settings=settings)
    yield scheduler
    scheduler.db.close()
    scheduler.redis.close()


def test_ready_names_a_scheduler_not_started_and_answers_fast_when_redis_hangs(
    idle_scheduler: EnhancedScheduler, private_redis: RedisServer
) -> None:
    server = ops_server(idle_scheduler, check_timeout=1.0)
    server.start()
    try:
        assert server.port != 0
        assert get_json(server.port, "/ready") == (
            503,
            {"ready": False, "reasons": ["scheduler: not started"]},
        )
        status, content_type, _ = http_get(server.port, "/nope")
        assert (status, content_type) == (404, "application/problem+json")
        assert get_json(server.port, "/health?probe=1") == (200, {"status": "ok"})

        private_redis.pause()  # connections open, requests hang
        started = time.monotonic()
        status, body = get_json(server.port, "/ready")
        elapsed = time.monotonic() - started
        private_redis.resume()
        assert status == 503
        assert [r for r in body["reasons"] if r.startswith("redis: ")], body
        assert elapsed < 3.0, f"/ready took {elapsed:.1f}s with Redis frozen"
        wait_until(
            lambda: get_json(server.port, "/ready")[1]["reasons"] == ["scheduler: not started"],
            10,
            message="Redis answering again",
        )
    finally:
        server.stop()


def test_metrics_of_a_fresh_scheduler_name_every_contract_metric(
    idle_scheduler: EnhancedScheduler,
) -> None:
    server = ops_server(idle_scheduler)
    server.start()
    try:
        status, _, text = http_get(server.port, "/metrics")
    finally:
        server.stop()
    assert status == 200
    assert_contract_metrics(text)


def test_http_port_in_use_stops_start_up_with_a_clear_line(
    idle_scheduler: EnhancedScheduler,
) -> None:
    first = ops_server(idle_scheduler)
    first.start()
    second = ops_server(idle_scheduler, first.port)
    try:
        with pytest.raises(StartupError, match=f"HTTP_PORT={first.port}"):
            second.start()
    finally:
        second.stop()
        first.stop()


def test_enhanced_scheduler_module_runs_as_a_script(env: dict[str, str], tmp_path: Path) -> None:
    """Seed 001: `python services/enhanced_scheduler.py` starts the daemon too."""
    port = free_port()
    log_path = tmp_path / "script.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "services" / "enhanced_scheduler.py")],
            cwd=tmp_path,  # not the repo root: the script must find its packages by itself
            env={**os.environ, **env, "HTTP_PORT": str(port), "INSTANCE_ID": "test-script"},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: _ready_if(port, 200), 20, message=f"/ready:\n{log_path.read_text()}")
        assert get_json(port, "/status")[1]["instance_id"] == "test-script"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
