"""NATS subject rules and wildcard matching, the nats settings and the nats payload checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.config import load_settings, mask_url
from services.engine.handlers.nats_link import NatsOptions
from services.errors import ConfigurationError, InvalidScheduleError
from services.model.catalog import Catalog, job_payload_check
from services.model.nats_subject import (
    nats_payload_problems,
    pattern_problem,
    subject_allowed,
    subject_matches,
    subject_problem,
)
from services.model.records import Schedule
from services.model.schedule_config import validate_config


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("jobs.scan", "jobs.scan", True),
        ("jobs.scan", "jobs.scan.deep", False),
        ("jobs.scan", "jobs", False),
        ("jobs.*", "jobs.scan", True),
        ("jobs.*", "jobs.scan.deep", False),
        ("jobs.*", "jobs", False),
        ("*.scan", "jobs.scan", True),
        ("*.*", "a.b", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("jobs.>", "jobs.scan", True),
        ("jobs.>", "jobs.scan.deep.er", True),
        ("jobs.>", "jobs", False),  # '>' stands for at least one token
        (">", "anything.at.all", True),
        ("jobs.*.done", "jobs.x.done", True),
        ("jobs.*.done", "jobs.x.y.done", False),
        ("jobs.*.>", "jobs.x.y", True),
        ("jobs.*.>", "jobs.x", False),
        ("Jobs.scan", "jobs.scan", False),  # subjects are case-sensitive
        ("jobs.sc*", "jobs.scan", False),  # not a wildcard: a literal token
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


def test_allowlist_empty_allows_nothing() -> None:
    assert not subject_allowed("jobs.scan", ())
    assert subject_allowed("jobs.scan", ("other.>", "jobs.*"))


@pytest.mark.parametrize(
    "subject", ["", "jobs..scan", ".jobs", "jobs.", "jobs scan", "jobs.*", "jobs.>", "x" * 1025]
)
def test_bad_publish_subjects(subject: str) -> None:
    assert subject_problem(subject) is not None


@pytest.mark.parametrize("pattern", ["jobs.>.x", "jobs.a*", "jobs.>>", "", "a..b", "a b"])
def test_bad_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


@pytest.mark.parametrize("pattern", ["jobs.>", ">", "*", "a.*.c", "jobs.scan"])
def test_good_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is None


def test_payload_problems() -> None:
    assert nats_payload_problems({"subject": "jobs.a"}, ("jobs.>",)) == []
    assert nats_payload_problems({"subject": "jobs.a"}) == []  # shape only: no allowlist given
    (missing,) = nats_payload_problems({})
    assert "payload.subject" in missing
    (refused,) = nats_payload_problems({"subject": "other.a"}, ("jobs.>",))
    assert "NATS_SUBJECT_ALLOWLIST" in refused and "'other.a'" in refused
    (flag,) = nats_payload_problems({"subject": "jobs.a", "request": "yes"})
    assert "payload.request" in flag


def _config(**over: Any) -> dict[str, Any]:
    return {
        "domain_config_id": uuid4(),
        "domain": "example.com",
        "frequency": "daily",
        "time_config": {"hour": 2},
        "job_type": "nats",
        "payload": {"subject": "jobs.scan"},
        **over,
    }


def test_validate_config_checks_a_nats_payload_shape() -> None:
    assert validate_config(_config())["payload"] == {"subject": "jobs.scan"}
    with pytest.raises(InvalidScheduleError, match=r"payload\.subject"):
        validate_config(_config(payload={"url": "http://x"}))
    with pytest.raises(InvalidScheduleError, match="wildcards"):
        validate_config(_config(payload={"subject": "jobs.>"}))
    # Another job type's payload is not judged by the nats rules.
    validate_config(_config(job_type="http", payload={}))


def _schedule(job_type: str | None, payload: dict[str, Any]) -> Schedule:
    return Schedule(
        schedule_id=uuid4(),
        domain_config_id=uuid4(),
        domain="example.com",
        frequency="daily",
        time_config={"hour": 2},
        job_type=job_type,
        payload=payload,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_catalog_marks_a_subject_outside_the_allowlist_invalid() -> None:
    catalog = Catalog("UTC", payload_problems=job_payload_check("http", ("jobs.>",)))
    catalog.parse(_schedule("nats", {"subject": "jobs.scan"}))
    with pytest.raises(InvalidScheduleError, match="NATS_SUBJECT_ALLOWLIST"):
        catalog.parse(_schedule("nats", {"subject": "secret.scan"}))
    catalog.parse(_schedule(None, {"subject": "secret.scan"}))  # the default type is http
    nats_default = Catalog("UTC", payload_problems=job_payload_check("nats", ()))
    with pytest.raises(InvalidScheduleError, match="NATS_SUBJECT_ALLOWLIST"):
        nats_default.parse(_schedule(None, {"subject": "jobs.scan"}))


def test_nats_settings_defaults_and_validation() -> None:
    s = load_settings({}, env_file="")
    assert s.nats_url == "nats://127.0.0.1:4222"
    assert s.nats_subject_allowlist == () and s.nats_timeout == 5.0
    assert s.nats_creds_file is None and s.nats_tls_ca is None
    s = load_settings(
        {"NATS_SUBJECT_ALLOWLIST": "jobs.>, rpc.*", "NATS_URL": "nats://a:1, nats://b:2"},
        env_file="",
    )
    assert s.nats_subject_allowlist == ("jobs.>", "rpc.*")
    assert s.nats_url == "nats://a:1,nats://b:2"
    for env, value in [
        ("NATS_SUBJECT_ALLOWLIST", "jobs.>.x"),
        ("NATS_URL", "http://a:4222"),
        ("NATS_URL", "nats://a:port"),
        ("NATS_TIMEOUT", "0"),
        ("NATS_CREDS_FILE", "/nonexistent/user.creds"),
    ]:
        with pytest.raises(ConfigurationError, match=env):
            load_settings({env: value}, env_file="")


def test_nats_url_passwords_are_masked_everywhere() -> None:
    url = "nats://u:pw1@a:4222,nats://v:pw2@b:4222"
    with pytest.raises(ConfigurationError) as info:
        load_settings({"NATS_URL": url + ",http://x"}, env_file="")
    assert "pw1" not in str(info.value) and "pw2" not in str(info.value)
    view = load_settings({"NATS_URL": url}, env_file="").public_view()
    assert view["NATS_URL"] == "nats://u:***@a:4222,nats://v:***@b:4222"
    assert mask_url(url) == view["NATS_URL"]
    options = NatsOptions(url=url)
    assert options.hosts == "a:4222,b:4222"
    assert "pw1" not in options.hosts
