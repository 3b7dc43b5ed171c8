"""Page helpers (`page_helpers.py`): profile pages read by ID ranges turned into RECORD
lines in other processes. The output is what the tap writes alone, line for line; a helper
that dies or a page it cannot read costs speed, never a record."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from singer_sdk.contrib.msgspec import encoder as sdk_encoder

from copernica_emulator import Emulator
from tap_copernica import page_helpers
from tap_copernica.page_helpers import PageHelpers
from tap_copernica.settings import TapSettings
from tests.conftest import config_for
from tests.singer import SyncResult, sync

PAGE = 50
STREAMS = ["profiles", "profiles_customers"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """Dozens of pages per database, each answer a little late, as from a remote API: the
    tap reads ID ranges side by side, which is when pages go to helpers."""
    with Emulator(seed=31, profiles_per_database=1200) as emulator:
        emulator.faults.latency_ms = 15
        yield emulator


def settings(emu: Emulator, helpers: int, **overrides: Any) -> dict[str, Any]:
    return config_for(
        emu,
        page_size=PAGE,
        database_ids=["Customers"],
        max_parallel_requests=4,
        helper_processes=helpers,
        **overrides,
    )


def output(result: SyncResult) -> list[Any]:
    """The run's messages, with the times that are the run's own left out: extraction
    times, and where a finished scan leaves the bookmark (the time the scan began)."""
    assert result.exit_code == 0
    clock = re.compile(r'"(replication_key_value|started)": "[^"]*"')
    return [
        clock.sub(r'"\1": "<the run\'s clock>"', json.dumps(message))
        if message["type"] == "STATE"
        else {k: v for k, v in message.items() if k != "time_extracted"}
        for message in result.messages
    ]


@pytest.fixture(autouse=True)
def tap_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tap-copernica")


def helper_pages(caplog: pytest.LogCaptureFixture) -> int:
    """Pages the run's helpers turned into lines, from the line the tap logs at its end."""
    lines = [r.getMessage() for r in caplog.records if "page helper process" in r.getMessage()]
    counts = [int(m.split(" pages ")[0].rsplit(" ", 1)[-1]) for m in lines]
    return sum(counts)


@pytest.mark.parametrize("start_date", [None, "2000-01-01T00:00:00Z"])
def test_helpers_write_the_lines_and_state_the_tap_writes_alone(
    emu: Emulator, caplog: pytest.LogCaptureFixture, start_date: str | None
) -> None:
    extra = {"start_date": start_date} if start_date else {}
    alone = sync(settings(emu, 0, **extra), streams=STREAMS)
    assert helper_pages(caplog) == 0
    caplog.clear()
    helped = sync(settings(emu, 1, **extra), streams=STREAMS)

    customers = len(emu.store.profiles("Customers"))
    assert helper_pages(caplog) >= customers // PAGE - 5, "nearly every page went to a helper"
    assert output(helped) == output(alone)
    assert sorted(helped.ids("profiles")) == sorted(
        int(p["ID"]) for p in emu.store.profiles("Customers")
    )
    assert all(r["database_id"] for r in helped.records["profiles"]), "partition keys added"
    assert all(
        message.get("time_extracted") for message in helped.messages if message["type"] == "RECORD"
    )


def test_values_that_do_not_fit_their_type_are_counted_once(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [int(p["ID"]) for p in emu.store.profiles("Customers")][::300]
    for profile_id in ids:
        emu.store.profile(profile_id).fields["age"] = "twelve"
    result = sync(settings(emu, 1), streams=["profiles_customers"])

    by_id = {r["ID"]: r for r in result.records["profiles_customers"]}
    assert [by_id[i]["age"] for i in ids] == [None] * len(ids)
    assert helper_pages(caplog) > 0
    warnings = [m for m in caplog.messages if "did not fit its type" in m]
    assert len(warnings) == 1
    assert f"{len(ids)} value(s) of field 'age'" in warnings[0]


@pytest.mark.parametrize("how", ["killed", "broken socket"])
def test_a_helper_that_dies_leaves_the_rest_to_the_tap_and_loses_no_record(
    emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    alone = sync(settings(emu, 0), streams=["profiles"])
    calls = 0
    real_encode = page_helpers._Helper.encode

    def killed_at_the_fifth_page(self: page_helpers._Helper, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5 and how == "killed":  # as the OOM killer or a stray `kill` would
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        elif calls == 5:  # any other failure mid-message: the helper is not used again
            raise TypeError("'NoneType' object cannot be interpreted as an integer")
        return real_encode(self, *args)

    monkeypatch.setattr(page_helpers._Helper, "encode", killed_at_the_fifth_page)
    helped = sync(settings(emu, 1), streams=["profiles"])

    assert output(helped) == output(alone)
    assert calls >= 5
    assert helper_pages(caplog) == 4, "the pages before it died"
    assert any("Decoding pages in the tap from here on" in m for m in caplog.messages)


def test_a_page_cut_short_is_fetched_again_as_without_helpers(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    alone = sync(settings(emu, 0), streams=["profiles"])
    emu.faults.add("truncate", path=r"/profiles$", after=6, times=2)
    mark = len(emu.requests)
    helped = sync(settings(emu, 1), streams=["profiles"])

    assert output(helped) == output(alone)
    assert [kind for kind, _ in emu.faults.injected] == ["truncate", "truncate"]
    asked = Counter(
        json.dumps(r.query, sort_keys=True)
        for r in emu.requests[mark:]
        if r.path.endswith("/profiles")
    )
    again = [query for query, times in asked.items() if times > 1]
    assert len(again) == 2, "each cut page asked once more"
    assert all("id<=" in query for query in again), "range pages, which went to the helper"
    assert helper_pages(caplog) > 0


def test_helpers_end_with_the_run(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[page_helpers._Helper] = []
    real_init = page_helpers._Helper.__init__

    def recorded(self: page_helpers._Helper) -> None:
        real_init(self)
        started.append(self)

    monkeypatch.setattr(page_helpers._Helper, "__init__", recorded)
    sync(settings(emu, 2), streams=["profiles"])

    assert len(started) == 2
    assert all(helper.process.poll() == 0 for helper in started)


def test_how_many_helpers_a_run_gets() -> None:
    def count(**config: Any) -> int:
        base = {"api_token": "t", **config}
        helpers = PageHelpers.for_run(TapSettings.from_config(base))
        return 0 if helpers is None else helpers.count

    cores = len(os.sched_getaffinity(0))
    assert count() == min(2, cores - 1)
    assert count(helper_processes=3) == 3
    assert count(helper_processes=0) == 0
    assert count(helper_processes=2, max_parallel_requests=1) == 0, "no pages side by side"


def test_helper_lines_encode_values_as_the_sdk_writer_does() -> None:
    record = {
        "ID": 7,
        "amount": decimal.Decimal("12.50"),
        "at": dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 3, 1),
        "fields": {"name": "Zoë", "nested": [1, 2.5, None, True]},
    }
    assert page_helpers._encoder.encode(record) == sdk_encoder.encode(record)
