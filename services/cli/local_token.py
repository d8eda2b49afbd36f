"""`token ensure-local`: the local admin token `make run` keeps for the dashboard.

Kept in a git-ignored file readable by its owner only (mode 0600). A token that still works is
reused; otherwise a new admin token is made and the file rewritten. Prints the login URL, so a
newcomer is looking at the dashboard right after `make run`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from services.cli.common import EXIT_OK
from services.cli.context import tokens
from services.clock import SYSTEM_CLOCK, Clock
from services.config import get_settings
from services.model.vocabulary import TokenRole

DEFAULT_FILE = Path(".local/admin-token")
CLOCK: Clock = SYSTEM_CLOCK


def add_arguments(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "ensure-local",
        help="make sure a local admin token exists in a private file; print the login URL",
        epilog="example: python scheduler.py token ensure-local --file .local/admin-token",
    )
    p.add_argument("--file", type=Path, default=DEFAULT_FILE)
    p.set_defaults(handler=cmd_ensure_local)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT: set it


def cmd_ensure_local(args: argparse.Namespace) -> int:
    store = tokens()
    path: Path = args.file
    existing = path.read_text().strip() if path.is_file() else ""
    if not existing or store.authenticate(existing) is None:
        name = "local-admin-" + CLOCK.now().strftime("%Y%m%d%H%M%S")
        _record, token = store.create(name, TokenRole.ADMIN.value)
        _write_private(path, token)
        print(f"made the local admin token {name!r}, kept in {path} (mode 0600)")
    else:
        os.chmod(path, 0o600)
    settings = get_settings()
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    if settings.http_port == 0:
        print("HTTP_PORT=0: the dashboard is off")
    else:
        print(f"dashboard: http://{host}:{settings.http_port}/login  (token: cat {path})")
    return EXIT_OK
