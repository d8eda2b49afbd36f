"""Fixtures of the browser tests: one headless Debian Chromium for the session, a fresh context
per page, and `scheduler.py serve` on a database of the test module's own.

Every page a test gets from these fixtures is watched: a console error or an uncaught exception
in any of them fails the test, after its own assertions passed ("no console errors on any page").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.integration.conftest import (  # noqa: F401  (fixtures, found by name)
    database_url,
    db,
    env,
    redis_prefix,
    redis_url,
    template_database,
)
from tests.support.api import serving
from tests.support.browser import (
    ACTION_TIMEOUT_MS,
    DESKTOP,
    MOBILE,
    ConsoleGuard,
    Web,
    launch_chromium,
)
from tests.support.dashboard import own_services, tokens_for_roles

GUARDS = pytest.StashKey[list[ConsoleGuard]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After the test body: fail it if any watched page logged an error. A test that failed on
    its own keeps its failure, with the console errors added as a report section."""
    passed = False
    try:
        result = yield
        passed = True
    finally:
        guards = item.stash.get(GUARDS, [])
        problems = "\n".join(p for guard in guards if (p := guard.problems()) is not None)
        if problems and not passed:
            item.add_report_section("call", "browser console", problems)
    if problems:
        raise AssertionError(problems)
    return result


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium (CHROMIUM_PATH overrides /usr/bin/chromium)."""
    chromium = launch_chromium(playwright)
    yield chromium
    chromium.close()


class PageFactory(Protocol):
    def __call__(
        self,
        width: int = ...,
        height: int = ...,
        *,
        javascript: bool = ...,
        mobile: bool = ...,
    ) -> Page: ...


@pytest.fixture
def make_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[PageFactory]:
    """make_page(width=1280, height=800, *, javascript=True, mobile=False): a page in a new
    context of its own, watched by the console guard; closed after the test."""
    contexts: list[BrowserContext] = []
    guards = request.node.stash.setdefault(GUARDS, [])

    def make(
        width: int = DESKTOP[0],
        height: int = DESKTOP[1],
        *,
        javascript: bool = True,
        mobile: bool = False,
    ) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            java_script_enabled=javascript,
            is_mobile=mobile,
            has_touch=mobile,
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        contexts.append(context)
        guards.append(ConsoleGuard().watch(context))
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(make_page: PageFactory) -> Page:
    """A desktop page, 1280x800."""
    return make_page()


@pytest.fixture
def mobile_page(make_page: PageFactory) -> Page:
    """A phone-sized page, 390x844, touch, honouring <meta name=viewport>."""
    return make_page(*MOBILE, mobile=True)


@pytest.fixture
def nojs_page(make_page: PageFactory) -> Page:
    """A desktop page with JavaScript disabled: pages must work as plain HTML forms."""
    return make_page(javascript=False)


@pytest.fixture(scope="module")
def web(
    template_database: str,  # noqa: F811
    redis_url: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Web]:
    """`scheduler.py serve` on a database of this module's own, shared by its tests (a server
    per test cost seconds each); its log is serve.log in a temporary directory of its own."""
    with own_services(template_database, redis_url) as (environment, connection):
        tokens = tokens_for_roles(connection)
        log = tmp_path_factory.mktemp("serve") / "serve.log"
        with serving(environment, log) as server:
            yield Web(server.url, tokens, connection, server)
