"""The dashboard's security over real HTTP (issue 15): sessions, CSRF, roles, redirects.
The flows themselves are driven in a real browser in tests/browser/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from database.connection import DatabaseConnection
from services.store.channels import ChannelStore
from services.store.schedules import ScheduleRepository
from services.store.tokens import TokenStore
from tests.support.api import ServeProcess, make_token, serving
from tests.support.api import dashboard_login as login
from tests.support.receivers import Receiver
from tests.support.schedules import query

pytestmark = pytest.mark.timeout(90)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(env: dict[str, str], tmp_path: Path) -> Iterator[ServeProcess]:
    with serving(env, tmp_path / "serve.log") as server:
        yield server


def browser(web: ServeProcess) -> httpx.Client:
    return httpx.Client(base_url=web.url, follow_redirects=False, timeout=20.0)


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def make_schedule(db: DatabaseConnection) -> str:
    repo = ScheduleRepository(db)
    schedule_id = repo.create_schedule(
        "2b1c1f9e-0000-4000-8000-000000000001", "dash.example", "daily", {"hour": 3}
    )
    return str(schedule_id)


def test_pages_need_a_session_and_login_sets_a_strict_httponly_cookie(
    web: ServeProcess, db: DatabaseConnection
) -> None:
    token = make_token(db, "viewer", "read")
    with browser(web) as http:
        first = http.get("/schedules", params={"q": "x"})
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=%2Fschedules%3Fq%3Dx"
        # the login form's own CSRF cookie must match its hidden field
        http.get("/login")
        forged = http.post("/login", data={"csrf_token": "nope", "token": token, "next": "/"})
        assert forged.status_code == 401 and "es_session" not in forged.headers.get(
            "set-cookie", ""
        )
        assert login(http, "es_wrong").status_code == 401
        done = login(http, token, "//evil.example/")
        assert done.status_code == 303 and done.headers["location"] == "/"
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith("es_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        home = http.get("/")
        assert home.status_code == 200 and "viewer · read" in home.text
        csp = home.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert token not in home.text


def test_a_forged_post_without_the_csrf_token_is_refused_and_changes_nothing(
    web: ServeProcess, db: DatabaseConnection
) -> None:
    schedule_id = make_schedule(db)
    token = make_token(db, "ops", "write")
    with browser(web) as http:
        login(http, token)
        for path, data in (
            (f"/schedules/{schedule_id}/pause", {"note": "forged"}),
            (f"/schedules/{schedule_id}/edit", {"domain": "evil.example", "frequency": "daily"}),
            ("/schedules/bulk", {"operation": "pause", "tag": "x"}),
            ("/logout", {}),
        ):
            for csrf in (None, "wrong"):
                body = data if csrf is None else {**data, "csrf_token": csrf}
                refused = http.post(path, data=body)
                assert refused.status_code == 403, (path, refused.text)
                assert "CSRF" in refused.text
        row = ScheduleRepository(db).require_schedule(schedule_id)
        assert (row.enabled, row.domain, row.paused_note) == (True, "dash.example", None)
        assert http.get("/").status_code == 200  # still logged in: the forged logout did nothing


def test_a_read_role_sees_no_edit_controls_and_is_refused_when_it_posts(
    web: ServeProcess, db: DatabaseConnection
) -> None:
    schedule_id = make_schedule(db)
    with browser(web) as http:
        login(http, make_token(db, "looker", "read"))
        page = http.get(f"/schedules/{schedule_id}")
        assert page.status_code == 200
        for control in ("Trigger now", "Pause", "Save", f"/schedules/{schedule_id}/edit"):
            assert control not in page.text
        refused = http.post(
            f"/schedules/{schedule_id}/pause", data={"csrf_token": csrf_of(page), "note": "x"}
        )
        assert refused.status_code == 403 and "may only look" in refused.text
        assert ScheduleRepository(db).require_schedule(schedule_id).enabled is True


def test_revoking_the_token_ends_its_sessions_and_logout_ends_one(
    web: ServeProcess, db: DatabaseConnection
) -> None:
    token = make_token(db, "temp", "write")
    with browser(web) as http, browser(web) as other:
        login(http, token)
        login(other, token)
        home = http.get("/")
        assert home.status_code == 200
        assert http.post("/logout", data={"csrf_token": csrf_of(home)}).status_code == 303
        assert http.get("/").status_code == 303
        assert other.get("/").status_code == 200
        TokenStore(db).revoke("temp")
        assert other.get("/").status_code == 303


def test_an_invalid_edit_shows_the_watchers_message_and_saves_nothing(
    web: ServeProcess, db: DatabaseConnection
) -> None:
    schedule_id = make_schedule(db)
    with browser(web) as http:
        login(http, make_token(db, "editor", "write"))
        page = http.get(f"/schedules/{schedule_id}")
        form = {
            "csrf_token": csrf_of(page),
            "config_hash": re.search(r'name="config_hash" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
            "domain": "dash.example",
            "frequency": "daily",
            "time_config": '{"hour": 27}',
            "payload": "{}",
            "tags": "",
        }
        refused = http.post(f"/schedules/{schedule_id}/edit", data=form)
        assert refused.status_code == 422
        assert "time_config.hour must be an integer 0-23, got 27" in refused.text
        assert "{&#34;hour&#34;: 27}" in refused.text or '"hour": 27' in refused.text  # kept
        assert ScheduleRepository(db).require_schedule(schedule_id).time_config == {"hour": 3}
        saved = http.post(
            f"/schedules/{schedule_id}/edit", data={**form, "time_config": '{"hour": 4}'}
        )
        assert saved.status_code == 303 and saved.headers["location"].endswith("notice=saved")
        assert ScheduleRepository(db).require_schedule(schedule_id).time_config == {"hour": 4}
        stale = http.post(
            f"/schedules/{schedule_id}/edit", data={**form, "time_config": '{"hour": 5}'}
        )
        assert (
            stale.status_code == 422 and "changed this schedule since you opened it" in stale.text
        )


def test_backfill_from_the_schedule_page_lists_then_queues(
    web: ServeProcess, db: DatabaseConnection, database_url: str
) -> None:
    schedule_id = make_schedule(db)  # daily at 03:00 UTC
    with browser(web) as http:
        login(http, make_token(db, "filler", "write"))
        page = http.get(f"/schedules/{schedule_id}")
        form = {
            "csrf_token": csrf_of(page),
            "from": "2026-11-01T00:00",
            "to": "2026-11-04T00:00",
            "mode": "missing",
            "dry_run": "1",
        }
        dry = http.post(f"/schedules/{schedule_id}/backfill", data=form)
        assert dry.status_code == 200, dry.text
        assert "Dry run: 3 of 3 fire times would run" in dry.text
        assert "2026-11-02T03:00:00+00:00" in dry.text
        assert query(database_url, "SELECT count(*) AS n FROM job_executions")[0]["n"] == 0
        done = http.post(f"/schedules/{schedule_id}/backfill", data={**form, "dry_run": ""})
        assert done.status_code == 200 and "Queued 3 of 3 fire times" in done.text
        rows = query(
            database_url,
            "SELECT status, trigger FROM job_executions WHERE schedule_id = %s",
            [schedule_id],
        )
        assert [(r["status"], r["trigger"]) for r in rows] == [("queued", "backfill")] * 3
        bad = http.post(f"/schedules/{schedule_id}/backfill", data={**form, "to": "yesterday"})
        assert bad.status_code == 422 and "to must be a date and time" in bad.text


def test_notifications_page_shows_channels_without_secrets_and_only_an_admin_tests_them(
    env: dict[str, str], db: DatabaseConnection, tmp_path: Path
) -> None:
    receiver = Receiver().start()
    try:
        ChannelStore(db).create("ops", "webhook", {"url": receiver.url})
        admin, reader = make_token(db, "boss", "admin"), make_token(db, "looker", "read")
        with serving({**env, "NOTIFY_ALLOWED_HOSTS": "127.0.0.1"}, tmp_path / "s.log") as web:
            with browser(web) as http:
                login(http, reader)
                shown = http.get("/notifications")
                assert shown.status_code == 200 and "ops" in shown.text
                assert "very-secret-token" not in shown.text and "Send test" not in shown.text
                refused = http.post(
                    "/notifications/channels/ops/test", data={"csrf_token": csrf_of(shown)}
                )
                assert refused.status_code == 403 and not receiver.events("test")
            with browser(web) as http:
                login(http, admin)
                shown = http.get("/notifications")
                forged = http.post("/notifications/channels/ops/test", data={"csrf_token": "x"})
                assert forged.status_code == 403 and not receiver.events("test")
                sent = http.post(
                    "/notifications/channels/ops/test", data={"csrf_token": csrf_of(shown)}
                )
                assert sent.status_code == 303
                after = http.get(sent.headers["location"])
                assert "Test message delivered to ops" in after.text
                assert receiver.events("test")
                assert ">sent<" in after.text and "test notification for channel ops" in after.text
    finally:
        receiver.stop()
