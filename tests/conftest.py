"""Shared fixtures: a Copernica emulator on a free local port, and tap configs for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulator import Emulator


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
