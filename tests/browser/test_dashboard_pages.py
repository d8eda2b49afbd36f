"""Every dashboard page over a realistic installation (tests/support/dashboard_seed.py), at a
laptop's size and a phone's: it loads, it reads, it never scrolls sideways, and the navigation
works by tapping. With SCREENSHOTS=1 each page is saved, whole, into docs/screenshots/, which
the README links:

    SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_dashboard_pages.py
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PageFactory
from tests.support.browser import DESKTOP, MOBILE, screenshot
from tests.support.dashboard import Site, live_site, overflow
from tests.support.dashboard_seed import RUNNING, SEEDS, seed_dashboard
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
SHOWN = "Cache warmer US"  # the schedule pictured: a time zone of its own, a flaky history
INVALID = 3  # seeds an operator got wrong: the daemon marks them at start


@dataclass(frozen=True)
class Installation:
    site: Site
    ids: dict[str, str]  # schedule name (or domain) -> id


@pytest.fixture(scope="module")
def installation(
    template_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    ids: dict[str, str] = {}

    def seed(database_url: str) -> None:
        ids.update(seed_dashboard(database_url, datetime.now(UTC)))

    logs = tmp_path_factory.mktemp("dashboard-pages")
    with live_site(
        template_database, redis_url, logs, instance_id="sched-a", before_start=seed
    ) as site:
        marked = wait_until(
            lambda: (
                len(site.query("SELECT 1 FROM schedules WHERE last_status = 'invalid'")) == INVALID
            ),
            15,
            message="the daemon marking the invalid seeds",
        )
        assert marked
        with site.api() as http:  # something running now, for the runs page
            started = http.post(f"/api/v1/schedules/{ids[RUNNING]}/trigger")
            assert started.status_code == 202, started.text
            wait_until(  # as the instance's heartbeat summary tells it
                lambda: http.get("/api/v1/scheduler/status").json()["instances"][0]["running"],
                15,
                message="the triggered backup running",
            )
        yield Installation(site, ids)


def fits(page: Page, name: str) -> None:
    """The page never scrolls sideways; each link of the main navigation is on screen and at
    least 24px tall (WCAG's minimum target size); then the page's screenshot."""
    assert overflow(page) == 0, f"{name} is {overflow(page)}px wider than the window"
    width = page.viewport_size["width"] if page.viewport_size else 0
    for link in page.get_by_role("navigation", name="main").get_by_role("link").all():
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
            f"{name}: nav link {link.inner_text()!r} is off screen ({box})"
        )
        assert box["height"] >= 24, f"{name}: nav link {link.inner_text()!r} is {box}"
    screenshot(page, name, full_page=True)


def nav(page: Page, label: str) -> None:
    """Taps `label` in the main navigation; the page it opens marks it as the current one."""
    link = page.get_by_role("navigation", name="main").get_by_role("link", name=label)
    link.click()
    expect(link).to_have_attribute("aria-current", "page")


@pytest.mark.parametrize("size", ["desktop", "mobile"])
def test_every_page_reads_and_fits(
    make_page: PageFactory, installation: Installation, size: str
) -> None:
    site = installation.site
    page = make_page(*(MOBILE if size == "mobile" else DESKTOP), mobile=size == "mobile")
    page.goto(f"{site.url}/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    fits(page, "login")
    page.get_by_label("Token").fill(site.tokens["admin"])
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Instances")).to_contain_text("1")
    expect(page.locator("main")).to_contain_text("sched-a")
    failing = page.locator("section.card").filter(has_text="Failing schedules")
    expect(failing.locator("tbody tr")).to_have_count(
        len(site.query("SELECT 1 FROM schedules WHERE last_status IN "
                       "('failed', 'timed_out', 'abandoned', 'invalid')"))
    )  # fmt: skip
    fits(page, "overview")

    nav(page, "Schedules")
    expect(page.locator("table.schedules tbody tr")).to_have_count(len(SEEDS))
    expect(page.locator("table.schedules .s-paused")).to_have_count(3)
    fits(page, "schedules")

    page.get_by_role("link", name=SHOWN, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(SHOWN)
    expect(page.get_by_role("img", name="outcomes of the last 35 days")).to_be_visible()
    expect(page.get_by_role("img", name="durations of the last 40 runs")).to_be_visible()
    fits(page, "schedule")

    nav(page, "Runs")
    expect(page.get_by_role("heading", name="Running now")).to_contain_text("1")
    expect(page.locator("article.failure").first).to_be_visible()
    fits(page, "runs")

    nav(page, "Audit")
    expect(page.locator("main tbody tr")).to_have_count(
        min(50, len(site.query("SELECT 1 FROM schedule_audit")))
    )
    fits(page, "audit")
