"""A validated schedule configuration as the parameters of the statements that write it, and
what the database's refusal of such a write means for the configuration."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg.types.json import Jsonb

from services.errors import DatabaseError, InvalidScheduleError
from services.model.schedule_config import CONFIG_FIELDS

# `schedules.profile_id REFERENCES scan_profiles`: the one configuration rule only the database
# can check (a profile may be deleted at any moment, so a read beforehand would be a race).
PROFILE_FOREIGN_KEY = "schedules_profile_id_fkey"


def config_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every configuration column by name, JSON columns wrapped for jsonb."""
    params = {key: config.get(key) for key in CONFIG_FIELDS}
    params["time_config"] = Jsonb(params["time_config"])
    params["payload"] = Jsonb(params["payload"] or {})
    params["tags"] = list(params["tags"] or [])
    params["notify"] = Jsonb(params["notify"] or {})
    return params


@contextmanager
def writing_config(config: Mapping[str, Any]) -> Iterator[None]:
    """Around the statement that writes `config`: a profile_id naming no scan profile is an
    invalid configuration (InvalidScheduleError naming the field), not a database failure."""
    try:
        yield
    except DatabaseError as exc:
        if exc.constraint != PROFILE_FOREIGN_KEY:
            raise
        reason = f"profile_id {config.get('profile_id')} is not the id of a scan profile"
        raise InvalidScheduleError(reason) from None
