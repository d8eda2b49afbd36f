"""The dashboard as browser tests drive it: a real daemon serving it (its own HTTP port, a
database and a Redis prefix of its own, shared by one test module), login through the form,
and the processes a run left behind.

The daemon serves the same app as `scheduler.py serve`, so a trigger from a page is run at
once and the run shows up on the page; `sleep` and `echo` are the commands it may run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import redis
from playwright.sync_api import Page, expect

from database.connection import DatabaseConnection
from tests.support import services
from tests.support.api import client, make_token
from tests.support.daemon import DaemonProcess
from tests.support.redis_server import free_port
from tests.support.schedules import Row, query
from tests.support.waiting import wait_until

ROLES = ("admin", "write", "read")


@dataclass(frozen=True)
class Site:
    """A live daemon serving the dashboard, its database, and a token per role."""

    url: str
    database_url: str
    db: DatabaseConnection
    tokens: dict[str, str]  # role -> bearer token; each token is named browser-<role>
    daemon: DaemonProcess

    def api(self, role: str = "admin") -> httpx.Client:
        """An httpx client on the REST API as `role`, to set up data as a user would."""
        return client(self.url, self.tokens[role])

    def query(self, statement: str, *params: Any) -> list[Row]:
        return query(self.database_url, statement, params)

    def create(self, **body: Any) -> str:
        """A schedule made through the REST API (as browser-admin); its id."""
        with self.api() as http:
            made = http.post("/api/v1/schedules", json=body)
        assert made.status_code == 201, made.text
        schedule_id: str = made.json()["schedule_id"]
        return schedule_id


@contextmanager
def own_services(
    template: str, redis_url: str
) -> Iterator[tuple[dict[str, str], DatabaseConnection]]:
    """For a module's servers: a fresh clone of the migrated `template` and a Redis key prefix
    of its own (both gone afterwards); the environment of a process on them, and a connection."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    with services.cloned_database(template) as database_url:
        db = DatabaseConnection(database_url, min_size=1, max_size=4)
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "LOG_FORMAT": "json",
            "ENV_FILE": "",
        }
        try:
            yield env, db
        finally:
            db.close()
            keys = redis.Redis.from_url(redis_url)
            services.delete_prefixed_keys(keys, prefix)
            keys.close()


def tokens_for_roles(db: DatabaseConnection) -> dict[str, str]:
    """A token per role, named browser-<role>."""
    return {role: make_token(db, f"browser-{role}", role) for role in ROLES}


@contextmanager
def live_site(
    template: str,
    redis_url: str,
    log_dir: Path,
    *,
    instance_id: str,
    before_start: Callable[[str], None] | None = None,
) -> Iterator[Site]:
    """A daemon on services of its own (`own_services`); `before_start(database_url)` may
    fill the database first (the daemon then loads it at start, as after a restart)."""
    with own_services(template, redis_url) as (env, db):
        port = free_port()
        env |= {
            "HTTP_PORT": str(port),
            "COMMAND_ALLOWLIST": "echo,sleep",
            "SCHEDULE_CHECK_INTERVAL": "1",
            "HEARTBEAT_INTERVAL": "1",  # the overview's instance summary is at most 1 s old
            "SHUTDOWN_TIMEOUT": "1",  # a run still going at the end is stopped, not waited for
        }
        tokens = tokens_for_roles(db)
        if before_start is not None:
            before_start(env["DATABASE_URL"])
        log = log_dir / f"{instance_id}.log"
        with DaemonProcess(env, log, instance_id=instance_id) as daemon:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(url), 20, 0.05, f"the daemon's HTTP on {url}")
            yield Site(url, env["DATABASE_URL"], db, tokens, daemon)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def log_in(page: Page, site: Site, role: str = "write", next_path: str = "/") -> None:
    """Through the login form, as browser-<role>; ends on `next_path`."""
    page.goto(f"{site.url}/login?next={quote(next_path, safe='')}")
    page.get_by_label("Token").fill(site.tokens[role])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"browser-{role} · {role}")).to_be_visible()


def overflow(page: Page) -> int:
    """How many pixels the page is wider than its window (0: no sideways scrolling)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return max(0, width)


# -- processes ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/<pid>/stat; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[1])


def descendants(pid: int) -> dict[int, list[str]]:
    """Every live process below `pid` (children, theirs, ...): pid -> argv."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[1]
    found: dict[int, list[str]] = {}
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        for child in frontier:
            try:
                raw = Path(f"/proc/{child}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            found[child] = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"
