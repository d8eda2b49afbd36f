"""The dashboard's flows in a real browser (issue 15): log in, find a schedule by search and read
its upcoming fire times, fix an invalid edit after reading why, pause with a note and find it in
the audit trail, trigger and watch the run appear, cancel a running run, and a forged post
refused. Every flow checks the database as well as the page; the key ones also run with
JavaScript off. One real daemon serves the module's dashboard (its own database); each test
makes schedules of its own, under names no other test uses.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.conftest import PageFactory
from tests.support.dashboard import Site, alive, descendants, live_site, log_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
BOTH = pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
NEVER = {"run_at": "2099-01-01T00:00:00+00:00"}  # a `once` that only runs when triggered
WHEN = "%Y-%m-%d %H:%M:%S"


@pytest.fixture(scope="module")
def site(
    template_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    logs: Path = tmp_path_factory.mktemp("dashboard")
    with live_site(template_database, redis_url, logs, instance_id="dash-flows") as live:
        yield live


def made(site: Site, title: str, **overrides: Any) -> tuple[str, str]:
    """A schedule named `title` plus a word of its own; (schedule_id, that unique name).
    Its domain is the unique word too (the runs page names a run by its domain)."""
    word = uuid.uuid4().hex[:8]
    name = f"{title} {word}"
    body: dict[str, Any] = {
        "domain": f"{word}.example",
        "name": name,
        "frequency": "daily",
        "time_config": {"hour": 6, "minute": 30, "timezone": "Europe/Berlin"},
        "job_type": "command",
        "payload": {"argv": ["echo", name]},
        **overrides,
    }
    return site.create(**body), name


def schedule(site: Site, schedule_id: str) -> dict[str, Any]:
    (row,) = site.query("SELECT * FROM schedules WHERE schedule_id = %s", schedule_id)
    return row


def audit(site: Site, schedule_id: str) -> list[tuple[str, str, list[str]]]:
    rows = site.query(
        "SELECT action, actor, changed_fields FROM schedule_audit WHERE schedule_id = %s "
        "ORDER BY audit_id",
        schedule_id,
    )
    return [(r["action"], r["actor"], r["changed_fields"]) for r in rows]


def runs_of(site: Site, schedule_id: str) -> list[dict[str, Any]]:
    return site.query(
        "SELECT * FROM job_executions WHERE schedule_id = %s ORDER BY started_at", schedule_id
    )


def section(page: Page, heading: str) -> Any:
    """The card whose heading starts with `heading`."""
    return page.locator("section.card").filter(
        has=page.get_by_role("heading", name=re.compile(f"^{re.escape(heading)}"))
    )


def is_live_refresh(response: Response) -> bool:
    return response.request.headers.get("x-live-refresh") == "1"


def daily_fires(after: datetime, at: time, zone: str, count: int) -> list[datetime]:
    """The next `count` wall-clock `at`s in `zone` after `after` (no DST gap at that hour)."""
    tz = ZoneInfo(zone)
    day = after.astimezone(tz).date()
    fires: list[datetime] = []
    while len(fires) < count:
        moment = datetime.combine(day, at, tz)
        if moment > after:
            fires.append(moment)
        day += timedelta(days=1)
    return fires


@BOTH
def test_log_in_search_and_read_the_upcoming_fire_times(
    make_page: PageFactory, site: Site, javascript: bool
) -> None:
    target, name = made(site, "Invoice export")
    word = name.split()[-1]
    made(site, "Invoice reminders", domain=f"reminders-{word}.example")
    page = make_page(javascript=javascript)
    sessions = site.query("SELECT count(*) AS n FROM web_sessions")[0]["n"]

    page.goto(f"{site.url}/schedules")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fschedules$"))
    page.get_by_label("Token").fill("es_not-a-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Unknown or revoked token.")
    assert site.query("SELECT count(*) AS n FROM web_sessions")[0]["n"] == sessions
    page.get_by_label("Token").fill(site.tokens["write"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site.url}/schedules")
    newest = site.query("SELECT token_name FROM web_sessions ORDER BY created_at DESC LIMIT 1")
    assert site.query("SELECT count(*) AS n FROM web_sessions")[0]["n"] == sessions + 1
    assert newest == [{"token_name": "browser-write"}]

    rows = page.locator("table.schedules tbody tr")
    search = page.get_by_role("textbox", name="Search")
    search.fill(word)
    search.press("Enter")
    expect(page).to_have_url(re.compile(rf"\?q={word}&"))
    expect(rows).to_have_count(2)  # both of this test's schedules, nobody else's
    search.fill(f"export {word}")
    search.press("Enter")
    expect(page).to_have_url(re.compile(rf"\?q=export\+{word}&"))
    expect(rows).to_have_count(1)
    expect(rows.get_by_role("link")).to_have_attribute("href", f"/schedules/{target}")
    before = datetime.now(UTC)
    rows.get_by_role("link", name=name).click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    fires = section(page, "Next 10 fire times")
    expect(fires.locator("th")).to_have_text(["UTC", "Europe/Berlin"])
    expected = daily_fires(before, time(6, 30), "Europe/Berlin", 10)
    expect(fires.locator("tbody tr")).to_have_text(
        [f"{t.astimezone(UTC):{WHEN}} UTC{t:{WHEN}} {t.tzname()}" for t in expected]
    )
    # the daemon wrote the same first fire into schedules.next_run
    next_run = wait_until(lambda: schedule(site, target)["next_run"], 10, message="next_run")
    assert next_run == expected[0]


@BOTH
def test_an_invalid_edit_says_why_and_the_fix_is_saved(
    make_page: PageFactory, site: Site, javascript: bool
) -> None:
    schedule_id, _name = made(site, "Report mailer", time_config={"hour": 7, "timezone": "UTC"})
    unchanged = schedule(site, schedule_id)
    page = make_page(javascript=javascript)
    page.clock.install()  # live.js's 5 s timer runs when the test says so
    log_in(page, site, next_path=f"/schedules/{schedule_id}")
    edit = section(page, "Edit")
    time_config = edit.locator("textarea[name=time_config]")

    typo = '{"hour": 27, "timezone": "UTC"}'
    time_config.fill(typo)
    edit.get_by_role("button", name="Save").click()
    expect(edit.get_by_role("alert")).to_contain_text(
        "time_config.hour must be an integer 0-23, got 27"
    )
    if javascript:  # the page is the answer to a POST: its live refresh must still GET a page
        with page.expect_response(is_live_refresh) as refreshed:
            page.clock.run_for(5_000)
        assert (refreshed.value.url, refreshed.value.status) == (
            f"{site.url}/schedules/{schedule_id}",
            200,
        )
    expect(time_config).to_have_value(typo)  # what was typed is kept, to be corrected
    row = schedule(site, schedule_id)
    assert (row["time_config"], row["config_hash"]) == (
        unchanged["time_config"],
        unchanged["config_hash"],
    )
    assert [a[0] for a in audit(site, schedule_id)] == ["insert"]

    time_config.fill('{"hour": 5, "timezone": "UTC"}')
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(
        "Saved. Running daemons apply the change within a second."
    )
    assert schedule(site, schedule_id)["time_config"] == {"hour": 5, "timezone": "UTC"}
    assert audit(site, schedule_id)[1:] == [("update", "api:browser-write", ["time_config"])]
    first_fire = section(page, "Next 10 fire times").locator("tbody tr td").first
    expect(first_fire).to_have_text(re.compile(r" 05:00:00 UTC$"))
    expect(page.locator("form.edit textarea[name=time_config]")).to_have_value(
        json.dumps({"hour": 5, "timezone": "UTC"}, indent=2, sort_keys=True)
    )


@BOTH
def test_pause_with_a_note_and_find_it_in_the_audit_trail(
    make_page: PageFactory, site: Site, javascript: bool
) -> None:
    schedule_id, _name = made(site, "Nightly crawl")
    page = make_page(javascript=javascript)
    log_in(page, site, next_path=f"/schedules/{schedule_id}")
    note = "vendor maintenance until Friday (OPS-1234)"

    page.get_by_label("pause note").fill(note)
    page.get_by_role("button", name="Pause", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Paused: it will not run until resumed.")
    expect(page.locator(".banner")).to_have_text(
        re.compile(
            rf"^Paused by browser-write at \d{{4}}-\d\d-\d\d [\d:]{{8}} UTC: {re.escape(note)}$"
        )
    )
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    row = schedule(site, schedule_id)
    assert (row["enabled"], row["paused_note"], row["paused_by"]) == (False, note, "browser-write")
    assert row["paused_at"] is not None
    made_by, paused_by = audit(site, schedule_id)
    assert made_by[:2] == ("insert", "api:browser-admin")
    assert paused_by == ("update", "api:browser-write", ["enabled"])

    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Schedule id").fill(schedule_id)
    page.get_by_role("button", name="Filter").click()
    entries = page.locator("main tbody tr")
    expect(entries).to_have_count(2)
    newest = entries.first
    expect(newest.locator("td").nth(2)).to_have_text("update")
    expect(newest.locator("td").nth(3)).to_have_text("api:browser-write")
    expect(newest.locator(".change")).to_have_text("enabled true → false")
    expect(entries.nth(1).locator("td").nth(2)).to_have_text("insert")

    newest.get_by_role("link").click()
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_have_text("Resumed.")
    row = schedule(site, schedule_id)
    assert (row["enabled"], row["paused_note"], row["paused_by"]) == (True, None, None)


@BOTH
def test_trigger_and_watch_the_run_appear(
    make_page: PageFactory, site: Site, javascript: bool
) -> None:
    schedule_id, name = made(site, "Cache warmer", frequency="once", time_config=NEVER)
    page = make_page(javascript=javascript)
    log_in(page, site, next_path=f"/schedules/{schedule_id}")
    runs = section(page, "Runs").locator("tbody")
    expect(runs).to_have_text("No runs yet.")
    if javascript:  # a second tab, left alone: live.js must bring the run into it
        watcher = page.context.new_page()
        watcher.clock.install()  # its 5 s refresh timer runs when the test says so
        watcher.goto(f"{site.url}/schedules/{schedule_id}")
        watcher.evaluate("window.notReloaded = true")
    assert runs_of(site, schedule_id) == []

    page.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_role("status")).to_contain_text("Triggered: a live instance runs it now")
    (run,) = wait_until(
        lambda: [r for r in runs_of(site, schedule_id) if r["status"] != "running"],
        15,
        message="the triggered run finished",
    )
    assert (run["status"], run["trigger"], run["instance_id"]) == (
        "completed",
        "manual",
        "dash-flows",
    )
    assert name in run["metadata"]["stdout_tail"]
    if javascript:
        fresh = section(watcher, "Runs").locator("tbody tr")
        expect(fresh).to_have_text("No runs yet.")
        with watcher.expect_response(is_live_refresh):
            watcher.clock.run_for(5_000)  # live.js refreshes every 5 s
        expect(fresh).to_have_count(1)
        expect(fresh).to_contain_text("completed")
        assert watcher.evaluate("window.notReloaded") is True
    else:
        page.reload()
    row = runs.locator("tr")
    expect(row).to_have_count(1)
    expect(row.locator("td")).to_contain_text(["completed", "manual", "1"])
    expect(row).to_contain_text("dash-flows")


def test_cancel_a_running_run_from_the_runs_page(page: Page, site: Site) -> None:
    schedule_id, name = made(
        site, "Slow export", frequency="once", time_config=NEVER, payload={"argv": ["sleep", "30"]}
    )
    domain = schedule(site, schedule_id)["domain"]
    log_in(page, site, next_path=f"/schedules/{schedule_id}")
    page.get_by_role("button", name="Trigger now").click()
    expect(page.get_by_role("status")).to_contain_text("Triggered")

    page.get_by_role("navigation", name="main").get_by_role("link", name="Runs").click()
    row = page.locator("#runs tbody tr").filter(has_text=domain)
    expect(row).to_have_count(1, timeout=12_000)  # at once, or by the live refresh
    (run,) = runs_of(site, schedule_id)
    assert run["status"] == "running"
    sleeps = wait_until(
        lambda: [
            pid for pid, argv in descendants(site.daemon.pid).items() if argv == ["sleep", "30"]
        ],
        10,
        message="the run's sleep process",
    )
    assert len(sleeps) == 1, sleeps

    row.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_have_text(
        "Cancel requested: its instance stops it within a second."
    )
    cancelled = wait_until(
        lambda: [r for r in runs_of(site, schedule_id) if r["status"] == "cancelled"],
        15,
        message="the run cancelled in the database",
    )
    assert cancelled[0]["execution_id"] == run["execution_id"]
    assert cancelled[0]["completed_at"] is not None
    assert "cancelled" in cancelled[0]["error_message"]
    wait_until(lambda: not alive(sleeps[0]), 10, message=f"sleep (pid {sleeps[0]}) gone")
    assert ["sleep", "30"] not in descendants(site.daemon.pid).values()
    page.reload()
    expect(row).to_have_count(0)
    expect(page.locator("#runs tbody").first).to_contain_text("Nothing is running.")

    page.goto(f"{site.url}/schedules/{schedule_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(section(page, "Runs").locator("tbody tr")).to_contain_text("cancelled")


def test_a_forged_post_is_refused_and_changes_nothing(page: Page, site: Site) -> None:
    schedule_id, _name = made(site, "Billing sync")
    log_in(page, site, next_path=f"/schedules/{schedule_id}")
    before = schedule(site, schedule_id)
    trail = audit(site, schedule_id)
    pause_url = f"{site.url}/schedules/{schedule_id}/pause"

    # A form on the dashboard's own page without the token (what injected markup could post).
    with page.expect_navigation():
        page.evaluate(
            """action => setTimeout(() => {
                const form = Object.assign(document.createElement("form"),
                                           {method: "post", action});
                form.append(Object.assign(document.createElement("input"),
                                          {name: "note", value: "forged"}));
                document.body.append(form);
                form.submit();
            })""",
            pause_url,
        )
    expect(page.get_by_role("heading", name="Not done")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("CSRF token is missing or stale")

    # The session's own cookie on requests the page never made: no token, then a wrong one.
    edit = {"domain": "evil.example", "frequency": "daily", "time_config": '{"hour": 1}'}
    for path, form in (
        (f"/schedules/{schedule_id}/edit", edit),
        (f"/schedules/{schedule_id}/trigger", {"csrf_token": "guessed"}),
        ("/schedules/bulk", {"operation": "pause", "tag": "x", "csrf_token": ""}),
    ):
        refused = page.request.post(f"{site.url}{path}", form=form, max_redirects=0)
        assert refused.status == 403, (path, refused.status)

    # Another site's page posting to the dashboard: the SameSite=Strict cookie stays home,
    # so the post arrives without a session and is sent to the login form.
    attack = f'<form method="post" action="{pause_url}"><input name="note" value="x">'
    page.route(
        "http://attacker.test/**",
        lambda route: route.fulfill(content_type="text/html", body=f"{attack}<button>Win</button>"),
    )
    page.goto("http://attacker.test/prize")
    page.get_by_role("button", name="Win").click()
    expect(page).to_have_url(re.compile(r"/login\?next="))

    after = schedule(site, schedule_id)
    for column in ("enabled", "domain", "time_config", "config_hash", "paused_note"):
        assert after[column] == before[column], column
    assert audit(site, schedule_id) == trail
    assert site.query("SELECT 1 FROM run_requests WHERE schedule_id = %s", schedule_id) == []
    assert runs_of(site, schedule_id) == []
    page.goto(f"{site.url}/")  # and the session itself is still good
    expect(page.get_by_text("browser-write · write")).to_be_visible()
