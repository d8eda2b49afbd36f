"""A validated schedule configuration as the parameters of the statements that write it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from services.model.schedule_config import CONFIG_FIELDS


def config_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every configuration column by name, JSON columns wrapped for jsonb."""
    params = {key: config.get(key) for key in CONFIG_FIELDS}
    params["time_config"] = Jsonb(params["time_config"])
    params["payload"] = Jsonb(params["payload"] or {})
    params["tags"] = list(params["tags"] or [])
    params["notify"] = Jsonb(params["notify"] or {})
    return params
