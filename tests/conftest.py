"""Shared fixtures: a Copernica emulator on a free local port, and tap configs for it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import singer_sdk.configuration._dict_config as sdk_env_config

from copernica_emulator import Emulator

#: Settings a developer's shell or `.env` may hold for their own pipelines (the README's
#: `meltano config set` writes `.env` in the repository root).
_PLUGIN_ENV_PREFIXES = ("TAP_COPERNICA_", "TARGET_COPERNICA_")


def pytest_configure(config: pytest.Config) -> None:
    """Tests see only the settings they give, from collection on (some test classes build
    a tap while being collected): no plugin variables from the environment, and no `.env`
    file, which the SDK otherwise finds by walking up from its own install folder (the
    repository's `.venv`) and loads into the environment."""
    for name in list(os.environ):
        if name.startswith(_PLUGIN_ENV_PREFIXES):
            del os.environ[name]
    sdk_env_config.find_dotenv = lambda *args, **kwargs: os.devnull


def config_for(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    """A tap config pointing at `emu`, with quick retries (the emulator's faults are brief)."""
    return {
        "api_token": emu.api_token,
        "api_url": emu.api_url,
        "auth_url": emu.auth_url,
        "retry_initial_wait_ms": 10,
        "max_retries": 6,
        # Changes this recent are read again by the next run; tests wait this out (sleeps).
        "lookback_seconds": 1,
        **overrides,
    }


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test (tests mutate its data)."""
    with Emulator(seed=7, profiles_per_database=120) as emu:
        yield emu


@pytest.fixture
def config(emulator: Emulator) -> dict[str, Any]:
    return config_for(emulator)
