"""Notifications' pure parts: rules, which events a finished run raises, missed deadlines,
channel targets and message bodies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.errors import InvalidChannel, InvalidScheduleError
from services.model.notify_rule import NO_RULE, notify_problems, read_rule
from services.model.spec import parse_schedule
from services.notify.delivery import backoff
from services.notify.events import run_events
from services.notify.messages import email_message, slack_body, webhook_body
from services.notify.missed import deadline_window_occurrences, without_completion
from services.notify.targets import check_target, host_allowed, redacted

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_rule_names_channels_and_events_and_defaults_to_failed_and_recovered() -> None:
    rule = read_rule({"channels": ["ops", "ops", "chat"]})
    assert rule.channels == ("ops", "chat")
    assert rule.events == {"failed", "recovered"} and rule.streaks == ()
    streaky = read_rule({"channels": ["ops"], "on": ["consecutive_failures:3", "missed"]})
    assert streaky.streaks == (3,) and streaky.wants("missed") and not streaky.wants("failed")
    assert read_rule({}) is NO_RULE and NO_RULE.empty


@pytest.mark.parametrize(
    ("notify", "problem"),
    [
        ([], "notify must be a JSON object, got list"),
        ({"on": ["failed"]}, "notify.channels must be a non-empty list"),
        ({"channels": ["a b"]}, "'a b' is not a channel name"),
        ({"channels": ["ops"], "on": ["exploded"]}, "unknown event 'exploded'"),
        ({"channels": ["ops"], "on": ["consecutive_failures:1"]}, "needs a count from 2"),
        ({"channels": ["ops"], "on": "failed"}, "notify.on must be a list"),
        ({"channels": ["ops"], "when": 1}, "unknown key 'when'"),
    ],
)
def test_a_wrong_rule_says_what_is_wrong(notify: Any, problem: str) -> None:
    assert any(problem in p for p in notify_problems(notify)), notify_problems(notify)
    with pytest.raises(InvalidScheduleError):
        read_rule(notify)


def _row(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "execution_id": uuid.uuid4(),
        "schedule_id": uuid.uuid4(),
        "status": status,
        "name": "nightly",
        "error_message": "boom",
        "scheduled_for": T0,
        "final_failure": status in ("failed", "timed_out", "abandoned"),
        "previous_failed": False,
        "streak": 0,
        **extra,
    }


ALL = read_rule(
    {
        "channels": ["ops"],
        "on": ["failed", "recovered", "skipped", "consecutive_failures:3"],
    }
)


def _names(row: dict[str, Any]) -> list[str]:
    return [event for event, _key, _message in run_events(row, ALL)]


def test_a_final_failure_is_failed_and_its_streak_speaks_once_at_n() -> None:
    assert _names(_row("failed", streak=1)) == ["failed"]
    assert _names(_row("timed_out", streak=3)) == ["failed", "consecutive_failures:3"]
    assert _names(_row("abandoned", streak=4)) == ["failed"]


def test_an_attempt_with_a_retry_to_come_says_nothing() -> None:
    assert _names(_row("failed", final_failure=False, streak=0)) == []


def test_a_success_is_recovered_only_after_a_final_failure() -> None:
    assert _names(_row("completed", previous_failed=True)) == ["recovered"]
    assert _names(_row("completed")) == []


def test_skipped_and_cancelled() -> None:
    assert _names(_row("skipped")) == ["skipped"]
    assert _names(_row("cancelled")) == []


def test_event_keys_name_the_run_so_a_second_pass_stores_nothing_new() -> None:
    row = _row("failed", streak=3)
    assert run_events(row, ALL) == run_events(dict(row), ALL)
    keys = [key for _event, key, _message in run_events(row, ALL)]
    assert keys == [
        f"failed:{row['execution_id']}",
        f"consecutive_failures:3:{row['execution_id']}",
    ]


def test_missed_deadlines_in_a_window_and_the_runs_that_saved_them() -> None:
    spec = parse_schedule("interval", {"seconds": 10}, schedule_id="x", created_at=T0)
    window = (T0 + timedelta(seconds=20), T0 + timedelta(seconds=50))
    due = deadline_window_occurrences(spec, 15.0, window, T0)
    # deadlines (occurrence + 15 s) in (T0+20, T0+50]: occurrences T0+10 .. T0+30
    assert due == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    completions = [T0 + timedelta(seconds=12), T0 + timedelta(seconds=41)]
    assert without_completion(due, 15.0, completions) == [T0 + timedelta(seconds=20)]


def test_nothing_is_due_before_the_schedule_existed() -> None:
    spec = parse_schedule("interval", {"seconds": 10}, schedule_id="x", created_at=T0)
    later = T0 + timedelta(seconds=25)
    window = (T0, T0 + timedelta(seconds=60))
    assert all(t >= later for t in deadline_window_occurrences(spec, 5.0, window, later))


def test_hosts_and_targets() -> None:
    assert host_allowed("hooks.slack.com", ["hooks.slack.com"])
    assert host_allowed("a.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("evil.com", [])
    url = "https://hooks.slack.com/services/T000/B000/SECRET"
    assert check_target("slack", {"url": url}, ["hooks.slack.com"]) == {"url": url}
    assert redacted("slack", {"url": url}) == {"url": "https://hooks.slack.com/***"}
    assert check_target("email", {"to": "a@example.com"}, []) == {"to": ["a@example.com"]}
    for kind, target, problem in [
        ("pager", {}, "kind 'pager'"),
        ("webhook", {"url": "ftp://hooks.slack.com/x"}, "http:// or https://"),
        ("webhook", {"url": "https://evil.com/x"}, "not in NOTIFY_ALLOWED_HOSTS"),
        ("email", {"to": ["not-an-address"]}, "is not an email address"),
        ("webhook", {"url": url, "secret": "x"}, "takes only url"),
    ]:
        with pytest.raises(InvalidChannel, match=problem) as info:
            check_target(kind, target, ["hooks.slack.com"])
        assert "SECRET" not in str(info.value)


def test_bodies() -> None:
    body = {
        "event": "failed",
        "schedule": {"schedule_id": "s1", "name": "a <b> & c", "domain": "d"},
        "execution": {"execution_id": "e1", "attempt": 2, "scheduled_for": "2026-12-01T12:00:00Z"},
        "message": "a <b> & c failed: boom",
    }
    link = "https://dash/schedules/s1"
    assert webhook_body(body, link)["dashboard_url"] == link
    slack = slack_body(body, link)
    assert slack["text"] == "[failed] a <b> & c failed: boom"
    assert "a &lt;b&gt; &amp; c failed" in slack["blocks"][0]["text"]["text"]
    assert "<https://dash/schedules/s1|open in the dashboard>" in str(slack["blocks"][1])
    subject, text = email_message(body, link)
    assert subject == "[scheduler] failed: a <b> & c"
    assert "attempt: 2" in text and link in text


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(30) == 300.0
