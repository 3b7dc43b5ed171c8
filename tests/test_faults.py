"""Transient failures are retried until the record set is exactly the clean one."""

from __future__ import annotations

from collections import Counter

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, sync

# A read timeout costs a second each.
CAPPED = {"slow": 3}
STREAMS = ["databases", "database_fields", "collections", "profiles", "subprofiles", "profile_ids"]


def record_sets(result: SyncResult) -> dict[str, Counter[str]]:
    return {
        stream: Counter(repr(sorted(r.items())) for r in records)
        for stream, records in result.records.items()
    }


@pytest.fixture(scope="module")
def clean_run() -> dict[str, Counter[str]]:
    with Emulator(seed=11, profiles_per_database=90) as emu:
        return record_sets(sync(config_for(emu, page_size=10), streams=STREAMS))


@pytest.mark.parametrize(
    "kinds",
    [
        ["html503"],
        ["gateway504"],
        ["ratelimit429"],
        ["reset"],
        ["truncate"],
        ["slow"],
        ["expire_jwt"],
        ["html503", "gateway504", "ratelimit429", "reset", "truncate", "slow", "expire_jwt"],
    ],
    ids="+".join,
)
def test_ten_percent_faults_change_nothing_in_the_output(
    clean_run: dict[str, Counter[str]], kinds: list[str]
) -> None:
    with Emulator(seed=11, profiles_per_database=90) as emu:
        for n, kind in enumerate(kinds):
            if kind == "expire_jwt":
                # At set points: a JWT refused twice in a row is fatal by design, and a
                # random rate could hit the retry right after a renewal.
                for after in (15, 45, 75):
                    emu.faults.add(kind, after=after, times=1)
            else:
                emu.faults.add(kind, rate=0.1 / len(kinds), seed=n, times=CAPPED.get(kind))
        result = sync(config_for(emu, page_size=10, request_timeout=1), streams=STREAMS)
        assert result.exit_code == 0
        assert len(emu.faults.injected) >= 3, "the faults really happened"
        assert record_sets(result) == clean_run


def test_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    with Emulator(seed=11, profiles_per_database=10) as emu:
        emu.faults.add("ratelimit429", path=r"/identity$", times=1)
        result = sync(config_for(emu, retry_initial_wait_ms=0), streams=["identity"])
        assert result.exit_code == 0
        identity = [r for r in emu.requests if r.path == "/v4/identity"]
        assert [r.status for r in identity] == [429, 200]
        assert identity[1].at - identity[0].at >= 0.75, "waited about the 1 s Retry-After"
    assert any("Retrying GET /v4/identity (attempt 2 of" in m for m in caplog.messages)


def test_read_timeouts_are_retried() -> None:
    with Emulator(seed=11, profiles_per_database=10) as emu:
        emu.faults.add("slow", path=r"/identity$", times=1)
        result = sync(config_for(emu, request_timeout=1), streams=["identity"])
        assert result.exit_code == 0
        assert len(result.records["identity"]) == 1
