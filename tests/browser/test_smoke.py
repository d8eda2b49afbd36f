"""The browser set-up against what the web app serves today: `/docs`, the API reference page, in
Chromium at desktop and phone sizes and with JavaScript off. The console guard of the page
fixtures fails any of these that logs an error."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.support.browser import Web, screenshot

TITLE = "Enhanced Scheduler — API reference"


def open_docs(page: Page, web: Web) -> list[str]:
    """Opens /docs and returns the operations it lists, as 'METHOD /path' lines."""
    response = page.goto(f"{web.url}/docs")
    assert response is not None and response.status == 200
    expect(page).to_have_title(TITLE)
    expect(page.get_by_role("heading", level=1)).to_contain_text("Enhanced Scheduler")
    return [
        " ".join(op.locator(sel).inner_text().strip() for sel in (".m", ":scope > code")).strip()
        for op in page.locator(".op").all()
    ]


def test_docs_lists_the_schedules_api(page: Page, web: Web) -> None:
    operations = open_docs(page, web)

    assert "GET /api/v1/schedules" in operations
    assert "POST /api/v1/schedules" in operations
    link = page.get_by_role("link", name="/openapi.json")
    expect(link).to_have_attribute("href", "/openapi.json")
    screenshot(page, "api-docs")


def test_docs_reads_the_same_without_javascript(nojs_page: Page, page: Page, web: Web) -> None:
    assert open_docs(nojs_page, web) == open_docs(page, web)


def test_docs_fits_a_phone_screen(mobile_page: Page, web: Web) -> None:
    assert "GET /api/v1/schedules" in open_docs(mobile_page, web)

    page_width = mobile_page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= 390, f"the page scrolls sideways on a phone ({page_width}px wide)"
    screenshot(mobile_page, "api-docs")
