"""Bookmarks per database / collection: later runs fetch only changes, filtered by the API."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from copernica_emulator import Emulator
from tap_copernica.streams import ProfileStream
from tests.singer import SyncResult, sync


def profile_requests(emu: Emulator, since: int, database: int) -> list[list[str]]:
    """The `fields[]` filters of each profiles request sent after request number `since`."""
    return [
        r.query.get("fields[]", [])
        for r in emu.requests[since:]
        if r.path == f"/v4/database/{database}/profiles"
    ]


def live_ids(emu: Emulator, database: str) -> list[int]:
    return [int(p["ID"]) for p in emu.store.profiles(database)]


def test_second_run_fetches_only_changed_profiles_with_server_side_filters(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    first = sync(config, streams=["profiles"])
    customers = emulator.store.database_id("Customers")
    newsletter = emulator.store.database_id("Newsletter")
    changed = live_ids(emulator, "Customers")[5:8] + live_ids(emulator, "Newsletter")[:1]
    for profile_id in changed:
        assert emulator.store.update_profile(profile_id, {"email": f"new{profile_id}@example.org"})
    time.sleep(2.1)  # let the change fall behind `lookback_seconds` (1 s in the tests)
    mark = len(emulator.requests)

    second = sync(config, streams=["profiles"], state=first.final_state)

    assert sorted(second.ids("profiles")) == sorted(changed)
    for record in second.records["profiles"]:
        assert record["fields"]["email"] == f"new{record['ID']}@example.org"
    for database in (customers, newsletter):
        filters = profile_requests(emulator, mark, database)
        assert len(filters) == 1, "one small page, not a re-read of the database"
        assert any(f.startswith("modified>=") for f in filters[0])

    # Nothing changed since: the third run emits no profile at all.
    third = sync(config, streams=["profiles"], state=second.final_state)
    assert third.records.get("profiles", []) == []


def test_database_with_a_field_called_modified_stays_exact(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    legacy = emulator.store.database_id("Legacy")
    first = sync(config, streams=["profiles"])
    assert Counter(r["ID"] for r in first.records["profiles"] if r["database_id"] == legacy) == (
        Counter(live_ids(emulator, "Legacy"))
    )
    target = live_ids(emulator, "Legacy")[3]
    # Writing the custom `modified` field must not fool the tap: it filters the timestamp.
    assert emulator.store.update_profile(target, {"email": "moved@example.org"})
    time.sleep(2.1)
    mark = len(emulator.requests)
    second = sync(config, streams=["profiles"], state=first.final_state)
    assert [r["ID"] for r in second.records["profiles"] if r["database_id"] == legacy] == [target]
    filters = profile_requests(emulator, mark, legacy)
    assert filters
    assert all(not any("modified" in f for f in page) for page in filters)


def test_records_sharing_a_timestamp_across_page_boundaries_arrive_once(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    customers = emulator.store.database_id("Customers")
    modified = Counter(p["modified"] for p in emulator.store.profiles("Customers"))
    assert max(modified.values()) > 7, "the seed must have a tie group larger than a page"

    result = sync(
        # One request at a time: a first sync from `start_date` then pages by `modified`
        # (with more in flight it reads ID ranges, where ties do not arise).
        {
            **config,
            "page_size": 7,
            "start_date": "2000-01-01T00:00:00Z",
            "max_parallel_requests": 1,
        },
        streams=["profiles"],
    )

    emitted = [r["ID"] for r in result.records["profiles"] if r["database_id"] == customers]
    assert Counter(emitted) == Counter(live_ids(emulator, "Customers"))
    filters = [f for page in profile_requests(emulator, 0, customers) for f in page]
    assert any(f.startswith("modified==") for f in filters), "a tie group was paged by ID"
    order = [r["modified"] for r in result.records["profiles"] if r["database_id"] == customers]
    assert order == sorted(order), "records come in bookmark order"


@pytest.mark.parametrize("start_date", [None, "2000-01-01T00:00:00Z"], ids=["scan", "keyset"])
def test_a_run_resumed_from_any_state_message_repeats_and_loses_nothing(
    emulator: Emulator,
    config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    start_date: str | None,
) -> None:
    monkeypatch.setattr(ProfileStream, "STATE_MSG_FREQUENCY", 13)
    cfg = {**config, "page_size": 10, **({"start_date": start_date} if start_date else {})}
    full = sync(cfg, streams=["profiles"])
    everything = Counter(full.ids("profiles"))
    assert sum(everything.values()) == len(everything)

    checked = 0
    for index, message in enumerate(full.messages):
        if message["type"] != "STATE" or index % 3:
            continue
        before = SyncResult.parse("", "")
        before.records = {"profiles": []}
        for earlier in full.messages[:index]:
            if earlier["type"] == "RECORD":
                before.records["profiles"].append(earlier["record"])
        resumed = sync(cfg, streams=["profiles"], state=message["value"])
        combined = Counter(before.ids("profiles")) + Counter(resumed.ids("profiles"))
        assert combined == everything, f"resuming from state message {index}"
        checked += 1
    assert checked >= 3
