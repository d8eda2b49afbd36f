"""The daemon's start-up loads no library that only some deployments use.

The web app (FastAPI, pydantic, uvicorn, jinja2) loads when HTTP_PORT is set, Celery and kombu at a
celery job's first send, nats-py at a nats job's first run, httpx at the first http job,
notification or API sync. Loaded at start-up, they cost every daemon start-up time and memory
(measured together: about 0.7 s of import and 35 MB of an idle daemon's RSS). The import runs
in a fresh interpreter, since this one has loaded them all for other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.http_client import LazyHttpClient

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "fastapi",
    "starlette",
    "pydantic",
    "uvicorn",
    "jinja2",
    "celery",
    "kombu",
    "nats",
    "httpx",
)
PROBE = "import json, sys, {module}; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"


def loaded_by(module: str) -> list[str]:
    """The HEAVY packages that importing `module` loads in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found: list[str] = json.loads(done.stdout)
    return found


# services.cli.app: what `scheduler.py run` imports before the daemon (every command's module).
@pytest.mark.parametrize("module", ["services.enhanced_scheduler", "services.cli.app"])
def test_the_daemon_imports_no_optional_library(module: str) -> None:
    assert loaded_by(module) == []


def test_the_http_client_is_made_at_first_use_and_stays_closed() -> None:
    client = LazyHttpClient(follow_redirects=False)
    client.close()  # nothing made yet: nothing to close
    made = client.get()
    assert client.get() is made
    assert made.follow_redirects is False
    client.close()
    assert made.is_closed
    assert client.get() is made  # a send after close fails, as with a client made at start-up
