"""A real browser for tests: Debian's Chromium driven by Playwright, a guard that collects the
console errors and uncaught exceptions of a page, and screenshots for the docs.

Playwright's own browser download cannot work here, so Chromium is always Debian's package
(`/usr/bin/chromium`, or CHROMIUM_PATH), installed by deploy/local/ensure-browser.sh, which
`make test` runs first. A missing browser fails the run with that advice; nothing is skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    WebError,
)
from playwright.sync_api import Error as PlaywrightError

from database.connection import DatabaseConnection
from tests.support.api import ServeProcess, client
from tests.support.daemon import ROOT

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


@dataclass
class ConsoleGuard:
    """What went wrong in a browser context's pages (popups included): console.error and
    console.assert messages (failed loads among them) and uncaught exceptions, in order."""

    errors: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def watch(self, context: BrowserContext) -> ConsoleGuard:
        context.on("console", self._console)
        context.on("weberror", self._web_error)
        self.contexts.append(context)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            where = message.location["url"] or "inline"
            self.errors.append(f"console.{message.type}: {message.text} ({where})")

    def _web_error(self, web_error: WebError) -> None:
        error = web_error.error
        where = web_error.page.url if web_error.page is not None else "?"
        self.errors.append(f"uncaught {error.name or 'error'}: {error.message} ({where})")

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
    """`scheduler.py serve` on this test's own database, and a token for each role."""

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
    size) and returns its path; otherwise does nothing and returns None."""
    if not screenshots_wanted():
        return None
    viewport = page.viewport_size
    assert viewport is not None, "screenshots need a page with a fixed viewport"
    path = SCREENSHOT_DIR / f"{name}-{viewport['width']}x{viewport['height']}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=full_page, animations="disabled")
    return path
