"""The browser set-up itself: the console guard sees what a page logs and throws, the page
fixtures turn that into a failed test, a missing Chromium fails loudly, screenshots are named by
their viewport."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.support import browser as support
from tests.support import png
from tests.support.browser import ConsoleGuard
from tests.support.daemon import ROOT


def guarded_page(browser: Browser) -> tuple[Page, ConsoleGuard]:
    """A page of a context of its own, outside the fixtures' guard (its errors are the point)."""
    context = browser.new_context()
    guard = ConsoleGuard().watch(context)
    return context.new_page(), guard


def test_guard_reports_console_errors_and_uncaught_exceptions(browser: Browser) -> None:
    page, guard = guarded_page(browser)
    try:
        page.set_content(
            "<script>console.log('fine'); console.warn('also fine'); console.error('x')</script>"
        )
        assert guard.errors == ["console.error: x (inline)"]

        page.set_content("<script>console.assert(1 === 2, 'sums')</script>")
        page.set_content("<script>setTimeout(() => { throw new TypeError('late') }, 0)</script>")
        # a timer set after the throwing one runs after it, so once it has, so has that one
        page.evaluate("() => new Promise(resolve => setTimeout(resolve))")
        problems = guard.problems()
        assert problems is not None and problems.startswith("3 console error(s)")
        assert "console.assert: sums (inline)" in problems
        assert "uncaught TypeError: late (about:blank)" in problems
        with pytest.raises(AssertionError, match=r"(?s)console\.error: x.*late"):
            guard.check()
    finally:
        page.context.close()


def test_guard_stays_quiet_on_a_clean_page(browser: Browser) -> None:
    page, guard = guarded_page(browser)
    try:
        page.set_content("<p>hello</p><script>console.info('loaded')</script>")
        assert guard.problems() is None
        guard.check()
    finally:
        page.context.close()


def test_guard_leaves_out_a_page_answered_4xx_but_not_a_failed_script_frame_or_5xx(
    browser: Browser,
) -> None:
    answers = {
        "/login": (401, "<p>Unknown token</p><iframe src='/frame'></iframe>"),
        "/frame": (404, "<p>a frame that is missing</p>"),
        "/ok": (200, "<script src='/missing.js'></script>"),
        "/missing.js": (404, ""),
        "/boom": (500, "<p>Internal error</p>"),
    }
    page, guard = guarded_page(browser)

    def answer(route: Route) -> None:
        status, body = answers[urlsplit(route.request.url).path]
        route.fulfill(status=status, content_type="text/html", body=body)

    page.route("http://guard.test/**", answer)
    try:
        page.goto("http://guard.test/login")
        page.goto("http://guard.test/ok")
        page.goto("http://guard.test/boom")
        problems = guard.problems()
        assert problems is not None and problems.startswith("3 console error(s)"), problems
        assert "status of 404 (Not Found) (http://guard.test/frame)" in problems
        assert "status of 404 (Not Found) (http://guard.test/missing.js)" in problems
        assert "status of 500 (Internal Server Error) (http://guard.test/boom)" in problems
        assert "/login" not in problems
    finally:
        page.context.close()


INNER_CONFTEST = """
from tests.browser.conftest import browser, make_page, page, playwright, pytest_runtest_call
"""
INNER_TESTS = """
def test_logs_an_error(page):
    page.set_content("<script>console.error('seen by the guard')</script>")

def test_stays_clean(page):
    page.set_content("<p>ok</p>")

def test_fails_on_its_own_and_logs(page):
    page.set_content("<script>console.error('told as well')</script>")
    assert False, "its own failure"
"""


def test_page_fixtures_fail_a_test_whose_page_logged_an_error(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(INNER_CONFTEST))
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *config, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "FAILED" in out and "test_inner.py::test_logs_an_error" in out, out
    assert "1 console error(s) in the browser" in out, out
    assert "console.error: seen by the guard" in out, out
    assert "AssertionError: its own failure" in out, out
    assert "browser console" in out and "console.error: told as well" in out, out


def test_the_browser_is_debians_chromium(browser: Browser) -> None:
    version = subprocess.run(
        [support.chromium_path(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Chromium {browser.version} " in version


def test_a_missing_chromium_fails_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CHROMIUM_PATH", str(tmp_path / "no-chromium"))
    with pytest.raises(RuntimeError, match=r"not found at .*ensure-browser\.sh"):
        support.chromium_path()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_screenshots_are_saved_only_when_asked_and_named_by_viewport(
    mobile_page: Page, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(support, "SCREENSHOT_DIR", tmp_path / "shots")
    mobile_page.set_content("<h1>hello</h1>")

    monkeypatch.delenv("SCREENSHOTS", raising=False)
    assert support.screenshot(mobile_page, "probe") is None
    monkeypatch.setenv("SCREENSHOTS", "yes")
    with pytest.raises(ValueError, match="SCREENSHOTS must be 1"):
        support.screenshot(mobile_page, "probe")

    monkeypatch.setenv("SCREENSHOTS", "1")
    path = support.screenshot(mobile_page, "probe")
    assert path == tmp_path / "shots" / "probe-390x844.png"
    assert png_size(path) == (390, 844)
    assert path.read_bytes()[25] == 3, "saved with a palette"


def test_a_palette_keeps_a_screenshot_of_few_colours_exact(page: Page) -> None:
    page.set_content("<h1 style='color:#2f6fb3'>hello</h1><p style='background:#fdf0ee'>there")
    original = png.decode(page.screenshot())
    smaller = png.to_palette(*original)
    assert png.decode(smaller) == original
    assert len(smaller) < len(page.screenshot())
