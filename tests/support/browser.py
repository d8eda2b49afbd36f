"""A real browser for tests: Debian's Chromium driven by Playwright, a guard that collects the
console errors and uncaught exceptions of a page, and screenshots for the docs.

Playwright's own browser download cannot work here, so Chromium is always Debian's package
(`/usr/bin/chromium`, or CHROMIUM_PATH), installed by deploy/local/ensure-browser.sh, which
`make test` runs first. A missing browser fails the run with that advice; nothing is skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    WebError,
)
from playwright.sync_api import Error as PlaywrightError

from database.connection import DatabaseConnection
from tests.support.api import ServeProcess, client
from tests.support.daemon import ROOT
from tests.support.png import shrink

DEFAULT_CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
DESKTOP = (1280, 800)
MOBILE = (390, 844)
ACTION_TIMEOUT_MS = 10_000


def chromium_path() -> str:
    """CHROMIUM_PATH, else Debian's Chromium; a RuntimeError that says what to do if missing."""
    path = os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"Chromium for browser tests not found at {path}; run deploy/local/ensure-browser.sh "
            "(make test does; it installs Debian's chromium) or set CHROMIUM_PATH"
        )
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium. As root it cannot use its sandbox, so only then is it switched off."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        chromium_sandbox=os.geteuid() != 0,
    )


# How Chromium reports an HTTP error status of anything it loads, the page itself included.
_FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


@dataclass
class ConsoleGuard:
    """What went wrong in a browser context's pages (popups included): console.error and
    console.assert messages (failed loads among them) and uncaught exceptions, in order.

    One kind of message is left out: Chromium logs a 4xx answer to a top-level page load as
    "Failed to load resource", although that page is the one the server meant to send — the
    login form again after a wrong token (401), a refusal (403), a form back with what is wrong
    with it (422). Tests check those answers themselves. A 4xx of anything else (a script, a
    style, a frame, a fetch) and any 5xx still count."""

    contexts: list[BrowserContext] = field(default_factory=list)
    # (line, (url, status) if it reports a failed load, else None), in the order they came
    entries: list[tuple[str, tuple[str, int] | None]] = field(default_factory=list)
    answered_pages: set[tuple[str, int]] = field(default_factory=set)  # top-level 4xx loads

    @property
    def errors(self) -> list[str]:
        return [
            line for line, load in self.entries if load is None or load not in self.answered_pages
        ]

    def watch(self, context: BrowserContext) -> ConsoleGuard:
        context.on("console", self._console)
        context.on("weberror", self._web_error)
        context.on("response", self._response)
        self.contexts.append(context)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            where = message.location["url"] or "inline"
            failed = _FAILED_LOAD.match(message.text)
            load = (where, int(failed.group(1))) if failed else None
            self.entries.append((f"console.{message.type}: {message.text} ({where})", load))

    def _web_error(self, web_error: WebError) -> None:
        error = web_error.error
        where = web_error.page.url if web_error.page is not None else "?"
        self.entries.append((f"uncaught {error.name or 'error'}: {error.message} ({where})", None))

    def _response(self, response: Response) -> None:
        request = response.request
        top_level = request.resource_type == "document" and response.frame.parent_frame is None
        if top_level and 400 <= response.status < 500:
            self.answered_pages.add((response.url, response.status))

    def settle(self) -> None:
        """One round trip to every open page, so that what the browser has already reported
        reaches `errors` (Playwright's sync API delivers events only while it is called)."""
        for context in self.contexts:
            for page in context.pages:
                if page.is_closed():
                    continue
                try:
                    page.title()
                except PlaywrightError:
                    pass  # crashed or closing: it reports nothing more, what it did is kept

    def problems(self) -> str | None:
        """None when every page stayed clean, else a message with one line per error."""
        self.settle()
        if not self.errors:
            return None
        lines = "\n".join(f"  {error}" for error in self.errors)
        return f"{len(self.errors)} console error(s) in the browser:\n{lines}"

    def check(self) -> None:
        problems = self.problems()
        if problems is not None:
            raise AssertionError(problems)


@dataclass(frozen=True)
class Web:
    """`scheduler.py serve` on a database of the test module's own, and a token for each role."""

    url: str
    tokens: dict[str, str]  # role ("admin", "write", "read") -> bearer token
    db: DatabaseConnection
    server: ServeProcess

    def api(self, role: str | None = "admin") -> httpx.Client:
        """An httpx client on the REST API as `role` (None: no token), to set up data."""
        return client(self.url, None if role is None else self.tokens[role])


def screenshots_wanted() -> bool:
    """SCREENSHOTS=1 saves them; unset, empty or 0 does not; anything else is a typo."""
    value = os.environ.get("SCREENSHOTS", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"SCREENSHOTS must be 1 (save screenshots) or 0/unset, not {value!r}")
    return value == "1"


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path | None:
    """With SCREENSHOTS=1, saves docs/screenshots/<name>-<width>x<height>.png (the viewport's
    size; with a palette, to keep the repository small) and returns its path; otherwise does
    nothing and returns None."""
    if not screenshots_wanted():
        return None
    viewport = page.viewport_size
    assert viewport is not None, "screenshots need a page with a fixed viewport"
    path = SCREENSHOT_DIR / f"{name}-{viewport['width']}x{viewport['height']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=full_page, animations="disabled")
    shrink(path)
    return path
