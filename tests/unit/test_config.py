from __future__ import annotations

import re

import pytest

from services.config import VARIABLES, load_settings, mask_url
from services.errors import ConfigurationError
from services.log import secrets_of
from services.model.redis_sentinels import split_host_port


def test_defaults_follow_the_contract() -> None:
    s = load_settings({}, env_file="")
    assert (s.max_workers, s.job_max_instances, s.job_coalesce) == (5, 1, True)
    assert s.job_replace_existing_instance is True
    assert s.job_misfire_grace_time == 300
    assert (s.request_timeout, s.api_sync_interval, s.api_sync_disable_missing) == (10, 300, False)
    assert (s.schedule_check_interval, s.lock_timeout, s.scheduler_timezone) == (60, 60, "UTC")
    assert (s.job_timeout, s.http_host, s.http_port) == (3600, "127.0.0.1", 8008)
    assert (s.shutdown_timeout, s.history_retention_days, s.log_level) == (30, 90, "INFO")
    assert (s.startup_timeout, s.migrate_on_start) == (60, False)
    assert (s.retry_initial_delay, s.retry_backoff_base, s.retry_max_delay) == (1, 2, 300)
    assert s.retry_max_attempts == 3
    assert (s.db_pool_min_size, s.db_pool_max_size, s.redis_max_connections) == (1, 10, 50)
    assert s.command_allowlist == () and s.api_url is None and s.instance_id


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MAX_WORKERS", "abc", "MAX_WORKERS='abc' is invalid: expected an integer 1-1000"),
        ("MAX_WORKERS", "0", "MAX_WORKERS='0' is invalid: expected an integer 1-1000"),
        ("JOB_COALESCE", "maybe", "JOB_COALESCE='maybe' is invalid: expected true or false"),
        ("LOCK_TIMEOUT", "-1", "LOCK_TIMEOUT='-1' is invalid: expected a number >= 1 (seconds)"),
        ("SCHEDULER_TIMEZONE", "Mars/Base", "SCHEDULER_TIMEZONE='Mars/Base' is invalid"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' is invalid: expected one of: json, console"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL='mysql://x' is invalid: expected a URL"),
        ("HTTP_PORT", "70000", "HTTP_PORT='70000' is invalid: expected an integer 0-65535"),
        ("DEFAULT_JOB_TYPE", "shell", "DEFAULT_JOB_TYPE='shell' is invalid: expected one of"),
        ("INSTANCE_ID", "a b", "INSTANCE_ID='a b' is invalid"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({name: value}, env_file="")
    assert str(info.value).startswith(expected)


def test_secrets_never_appear_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings({"DATABASE_URL": "mysql://u:hunter22@db/x"}, env_file="")
    assert "hunter22" not in str(info.value)


def test_lists_and_redis_url() -> None:
    s = load_settings(
        {
            "COMMAND_ALLOWLIST": " echo, /usr/bin/env ,,sleep",
            "REDIS_HOST": "cache",
            "REDIS_PORT": "6380",
            "REDIS_DB": "2",
            "REDIS_PASSWORD": "p@ss word",
        },
        env_file="",
    )
    assert s.command_allowlist == ("echo", "/usr/bin/env", "sleep")
    assert s.redis_url == "redis://:p%40ss%20word@cache:6380/2"
    assert load_settings({"REDIS_URL": "redis://r:1/3"}, env_file="").redis_url == "redis://r:1/3"


def test_public_view_masks_secrets() -> None:
    s = load_settings(
        {"API_TOKEN": "tok-123456", "DATABASE_URL": "postgresql://u:pw123@h/db"}, env_file=""
    )
    view = s.public_view()
    assert set(view) == set(VARIABLES)
    assert view["API_TOKEN"] == "***"
    assert "pw123" not in str(view) and "tok-123456" not in str(view)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: pytest.TempPathFactory) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("MAX_WORKERS=7\nLOCK_TIMEOUT=9\n")
    s = load_settings({"LOCK_TIMEOUT": "11"}, env_file=str(env_file))
    assert (s.max_workers, s.lock_timeout) == (7, 11)


def test_mask_url() -> None:
    assert mask_url("postgresql://u:secret@h:5/d") == "postgresql://u:***@h:5/d"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


SENTINELS = {"REDIS_SENTINELS": " 10.0.0.1:26379, sentinel-b:26380,[::1]:26381 "}


def test_sentinel_settings_and_their_split() -> None:
    s = load_settings(
        {**SENTINELS, "REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "s3nt"},
        env_file="",
    )
    assert s.redis_sentinels == ("10.0.0.1:26379", "sentinel-b:26380", "[::1]:26381")
    assert [split_host_port(e) for e in s.redis_sentinels] == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
        ("::1", 26381),
    ]
    view = s.public_view()
    assert view["REDIS_SENTINEL_PASSWORD"] == "***" and "s3nt" not in str(view)
    assert view["REDIS_SENTINELS"] == list(s.redis_sentinels)
    plain = load_settings({}, env_file="")
    assert (plain.redis_sentinels, plain.redis_sentinel_master) == ((), None)


@pytest.mark.parametrize("entry", ["sentinel-b", "h:0", "h:70000", "h:port", ":26379", "a b:1"])
def test_a_bad_sentinel_entry_is_named(entry: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(
            {"REDIS_SENTINELS": f"good:26379,{entry}", "REDIS_SENTINEL_MASTER": "m"}, env_file=""
        )
    message = str(info.value)
    assert message.startswith("REDIS_SENTINELS=") and f"{entry!r} is not one" in message


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (SENTINELS, "REDIS_SENTINEL_MASTER is missing"),
        ({"REDIS_SENTINEL_MASTER": "mymaster"}, "REDIS_SENTINEL_MASTER='mymaster' is set but"),
        (
            {**SENTINELS, "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "unix:///tmp/redis.sock"},
            "REDIS_URL (unix://) is invalid with REDIS_SENTINELS",
        ),
    ],
)
def test_sentinel_settings_that_cannot_work_together(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        load_settings(environ, env_file="")


def test_the_sentinel_and_redis_url_passwords_are_masked_in_logs() -> None:
    s = load_settings(
        {
            **SENTINELS,
            "REDIS_SENTINEL_MASTER": "m",
            "REDIS_SENTINEL_PASSWORD": "sentinel-s3cret",
            "REDIS_URL": "redis://:url-s3cret@ignored:6379/2",
        },
        env_file="",
    )
    assert {"sentinel-s3cret", "url-s3cret"} <= set(secrets_of(s))
