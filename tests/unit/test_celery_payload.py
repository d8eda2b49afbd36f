"""The celery job's payload rules, settings and refusals (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.config import load_settings
from services.engine.handlers import CeleryHandler
from services.errors import ConfigurationError, InvalidScheduleError
from services.log import secrets_of
from services.model.catalog import Catalog, job_payload_check
from services.model.celery_payload import celery_payload_problems, task_allowed
from services.model.records import Schedule
from services.model.schedule_config import validate_config
from services.model.vocabulary import ExecutionStatus
from tests.support.handler_funcs import make_context


@pytest.mark.parametrize(
    ("task", "allowed"),
    [
        ("proj.tasks.add", True),
        ("proj.tasks", True),
        ("proj.tasksx.add", False),
        ("other.tasks.add", False),
        ("proj", False),
    ],
)
def test_allowlist_matches_whole_dotted_parts(task: str, allowed: bool) -> None:
    assert task_allowed(task, ["proj.tasks", "  "]) is allowed
    assert task_allowed(task, ["proj.tasks."]) is allowed  # a trailing dot means the same


def test_empty_allowlist_allows_nothing() -> None:
    assert not task_allowed("proj.tasks.add", [])
    (problem,) = celery_payload_problems({"task": "proj.tasks.add"}, [])
    assert problem == (
        "celery task 'proj.tasks.add' is not under CELERY_TASK_ALLOWLIST (allowed: nothing)"
    )


def test_payload_shape_problems_are_all_named() -> None:
    payload: dict[str, Any] = {"args": {}, "kwargs": [], "queue": "", "wait": "yes"}
    assert celery_payload_problems(payload, None) == [
        "celery job needs payload.task: a task name such as 'proj.tasks.add'",
        "payload.args must be a list, got dict",
        "payload.kwargs must be an object, got list",
        "payload.queue must be a non-empty string, got ''",
        "payload.wait must be true or false, got 'yes'",
    ]
    good = {"task": "t.x", "args": [1], "kwargs": {"a": 1}, "queue": "q", "wait": True}
    assert celery_payload_problems(good, ["t"]) == []


def _config(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "domain": "example.com",
        "frequency": "interval",
        "time_config": {"seconds": 60},
        "job_type": "celery",
        "payload": payload,
    }


def test_writers_refuse_a_malformed_payload_but_not_an_unlisted_task() -> None:
    with pytest.raises(InvalidScheduleError, match=r"payload\.task"):
        validate_config(_config({"args": [1]}))
    # The allowlist is the daemon's setting: a writer cannot know it.
    assert validate_config(_config({"task": "anything.at.all"}))["job_type"] == "celery"


def _schedule(payload: dict[str, Any]) -> Schedule:
    return Schedule(
        schedule_id=uuid4(),
        domain_config_id=uuid4(),
        domain="example.com",
        frequency="interval",
        time_config={"seconds": 60},
        job_type="celery",
        payload=payload,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_the_daemons_catalog_marks_an_unlisted_task_invalid() -> None:
    catalog = Catalog("UTC", payload_problems=job_payload_check("http", (), ("proj.tasks",)))
    assert catalog.parse(_schedule({"task": "proj.tasks.add"})).spec is not None
    with pytest.raises(InvalidScheduleError) as info:
        catalog.parse(_schedule({"task": "evil.rm"}))
    assert info.value.reason == (
        "celery task 'evil.rm' is not under CELERY_TASK_ALLOWLIST (allowed: proj.tasks)"
    )


def test_settings_parse_and_mask_the_broker_password() -> None:
    s = load_settings(
        {
            "CELERY_BROKER_URL": "amqp://app:s3cret@broker:5672/prod",
            "CELERY_RESULT_BACKEND": "rpc://",
            "CELERY_TASK_ALLOWLIST": "proj.tasks, billing",
            "CELERY_TIMEOUT": "2.5",
        },
        env_file="",
    )
    assert s.celery_task_allowlist == ("proj.tasks", "billing")
    assert s.celery_result_backend == "rpc://" and s.celery_timeout == 2.5
    view = s.public_view()
    assert view["CELERY_BROKER_URL"] == "amqp://app:***@broker:5672/prod"
    assert "s3cret" not in repr(view)
    assert "s3cret" in secrets_of(s)  # masked in every log line too
    defaults = load_settings({}, env_file="")
    assert defaults.celery_broker_url is None and defaults.celery_timeout == 10
    assert defaults.celery_task_allowlist == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CELERY_BROKER_URL", "http://broker"),
        ("CELERY_RESULT_BACKEND", "mongodb://x"),
        ("CELERY_TIMEOUT", "0"),
    ],
)
def test_bad_settings_stop_start_up(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        load_settings({name: value}, env_file="")


def test_refusals_send_nothing_and_build_no_app() -> None:
    handler = CeleryHandler(
        broker_url=None, result_backend=None, task_allowlist=["proj"], timeout=1.0
    )
    refused = handler.run(make_context({"task": "other.x"}, job_type="celery"))
    assert refused.status is ExecutionStatus.FAILED and not refused.retryable
    assert refused.error_details is not None
    assert refused.error_details["type"] == "invalid_payload"
    no_broker = handler.run(make_context({"task": "proj.x"}, job_type="celery"))
    assert no_broker.error_message == "celery job needs CELERY_BROKER_URL to be set"
    listed = CeleryHandler(
        broker_url="amqp://guest:guest@127.0.0.1:1//",
        result_backend=None,
        task_allowlist=["proj"],
        timeout=1.0,
    )
    waiting = listed.run(make_context({"task": "proj.x", "wait": True}, job_type="celery"))
    assert waiting.error_details is not None
    assert waiting.error_details["type"] == "no_result_backend"
    assert listed._app is None  # nothing was built, so nothing can have been sent
    listed.close()


def test_a_row_without_job_type_is_checked_under_default_job_type_celery() -> None:
    check = job_payload_check("celery", (), ("proj",))
    assert check(None, {"task": "proj.tasks.x"}) == []
    assert check(None, {"task": "other.x"}) == [
        "celery task 'other.x' is not under CELERY_TASK_ALLOWLIST (allowed: proj)"
    ]
    assert check("http", {"task": "other.x"}) == []  # other job types are not its business
