"""Suite-wide set-up: no stray configuration from the developer's shell leaks into tests."""

from __future__ import annotations

import os

import pytest

from services.config import VARIABLES, set_settings


@pytest.fixture(autouse=True, scope="session")
def _clean_environment() -> None:
    for name in (*VARIABLES, "ENV_FILE"):
        os.environ.pop(name, None)
    # Tests never read the developer's .env.
    os.environ["ENV_FILE"] = ""


@pytest.fixture(autouse=True)
def _forget_settings() -> object:
    yield
    set_settings(None)
