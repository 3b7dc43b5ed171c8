"""The JWT: one per run, renewed before it expires and once when the API rejects it."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from copernica_api.auth import (
    AuthenticationRefusedError,
    AuthenticationUnavailableError,
    CopernicaAuthenticator,
)
from copernica_api.settings import ClientSettings
from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import sync


def test_one_jwt_serves_every_stream_of_a_run(emulator: Emulator, config: dict[str, Any]) -> None:
    result = sync(config)
    assert result.exit_code == 0
    assert emulator.tokens_issued == 1
    assert all(r.authorized for r in emulator.requests if r.path.startswith("/v4/"))


def test_short_lived_jwts_are_renewed_before_they_expire() -> None:
    # A 3 s JWT is renewed 0.6 s before it expires: room for a request delayed by a busy
    # machine (2 s left 0.4 s, which a loaded CI box exceeded once).
    with Emulator(seed=3, profiles_per_database=180, jwt_lifetime=3) as emu:
        emu.faults.latency_ms = 40  # about 0.04 s a request: the run outlives two JWTs
        started = time.monotonic()
        config = config_for(emu, page_size=5, max_parallel_requests=1)
        result = sync(config, streams=["profiles", "subprofiles"])
        assert time.monotonic() - started > 6
        assert result.exit_code == 0
        assert Counter(result.ids("profiles")) == Counter(
            int(p["ID"])
            for db in ("Customers", "Newsletter", "Legacy")
            for p in emu.store.profiles(db)
        )
        assert emu.tokens_issued >= 3
        rejected = [r for r in emu.requests if r.path.startswith("/v4/") and r.status == 401]
        assert rejected == [], "renewed ahead of expiry, never after a refusal"


@pytest.mark.parametrize("expired_status", [401, 400])
def test_a_rejected_jwt_is_renewed_once_and_the_request_retried(expired_status: int) -> None:
    with Emulator(seed=3, profiles_per_database=40, expired_status=expired_status) as emu:
        # Two rejections on different requests (one right after the other would be the
        # "refused twice in a row" case below).
        emu.faults.add("expire_jwt", path=r"/profiles$", times=1)
        emu.faults.add("expire_jwt", path=r"/profiles$", times=1, after=3)
        result = sync(config_for(emu, page_size=10), streams=["profiles"])
        assert result.exit_code == 0
        assert len(emu.faults.injected) == 2
        assert emu.tokens_issued == 3
        assert (
            len(result.ids("profiles"))
            == len(set(result.ids("profiles")))
            == sum(len(emu.store.profiles(db)) for db in ("Customers", "Newsletter", "Legacy"))
        )


def test_a_jwt_refused_twice_in_a_row_fails_with_a_clear_message() -> None:
    with Emulator(seed=3, profiles_per_database=10) as emu:
        emu.faults.add("expire_jwt", path=r"/identity$")
        result = sync(config_for(emu), streams=["identity"])
        assert result.exit_code == 1
        assert emu.tokens_issued == 2, "renewed once, not in a loop"


@pytest.mark.parametrize("shape", ["text", "json"])
def test_both_answer_shapes_of_the_authentication_service(shape: str) -> None:
    with Emulator(seed=3, profiles_per_database=5, auth_response=shape) as emu:
        result = sync(config_for(emu), streams=["identity"])
        assert result.exit_code == 0
        assert len(result.records["identity"]) == 1


def test_a_refused_api_token_raises_a_config_error_naming_the_fix(emulator: Emulator) -> None:
    auth = CopernicaAuthenticator(api_token="wrong", auth_url=emulator.auth_url)
    with pytest.raises(AuthenticationRefusedError) as caught:
        auth.current_jwt()
    message = str(caught.value)
    assert "refused the API token" in message
    assert "api_token" in message
    assert "Access tokens" in message
    assert "wrong" not in message


def test_an_authentication_outage_is_waited_out(emulator: Emulator) -> None:
    emulator.faults.auth_down_until = time.time() + 1.5
    auth = CopernicaAuthenticator(api_token=emulator.api_token, auth_url=emulator.auth_url)
    assert auth.current_jwt().count(".") == 2
    assert emulator.tokens_issued == 1


@pytest.mark.parametrize("plugin", ["tap", "target"])
def test_an_authentication_outage_is_retried_as_the_retry_settings_say(
    emulator: Emulator, plugin: str
) -> None:
    """Both plugins build their authenticator from `ClientSettings`: `max_retries` and
    `retry_initial_wait_ms` decide how long the authentication service is waited for."""
    emulator.faults.auth_down_until = time.time() + 120
    config = config_for(emulator, max_retries=2, retry_initial_wait_ms=50)
    auth = ClientSettings.from_config(config).authenticator(user_agent=f"{plugin}-copernica")
    started = time.monotonic()
    with pytest.raises(AuthenticationUnavailableError) as caught:
        auth.current_jwt()
    assert time.monotonic() - started < 5, "not the former fixed 300 s"
    tries = [r for r in emulator.requests if r.path.endswith("/authenticate")]
    assert len(tries) == 3, "the first try and `max_retries` retries"
    assert "3 tries" in str(caught.value)
    assert "max_retries" in str(caught.value)
