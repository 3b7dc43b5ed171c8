"""Profiles read by ID ranges side by side also when only some rows are wanted: a first sync
from `start_date`, and an incremental run after a mass update. Exact, resumable, and no
change made while the ranges are read is lost."""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from copernica_emulator import Emulator, RequestLog
from tap_copernica.streams import ProfileStream
from tests.conftest import config_for
from tests.singer import SyncResult, sync

PAGE = 50


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """Enough profiles for a few dozen pages; each answer waits a little, as a remote API
    does, so the tap keeps several requests in flight."""
    with Emulator(seed=12, profiles_per_database=1500) as emulator:
        emulator.faults.latency_ms = 15
        yield emulator


def settings(emu: Emulator, **overrides: Any) -> dict[str, Any]:
    return config_for(emu, page_size=PAGE, database_ids=["Customers"], **overrides)


def profile_pages(emu: Emulator, since: int = 0) -> list[list[str]]:
    """The `fields[]` filters of each Customers profiles request after request `since`."""
    path = f"/v4/database/{emu.store.database_id('Customers')}/profiles"
    return [r.query.get("fields[]", []) for r in emu.requests[since:] if r.path == path]


def ranged_and_filtered(pages: list[list[str]]) -> list[list[str]]:
    """Requests for an ID range that the API also filtered on `modified`."""
    return [
        f
        for f in pages
        if any(x.startswith("id<=") for x in f) and any(x.startswith("modified>=") for x in f)
    ]


def by_id(result: SyncResult) -> dict[int, dict[str, Any]]:
    records = result.records.get("profiles", [])
    assert len({r["ID"] for r in records}) == len(records), "each ID at most once per run"
    return {r["ID"]: r for r in records}


def iso_of(local: str) -> str:
    """An API time (the account's local `YYYY-MM-DD hh:mm:ss`) as ISO 8601 with offset."""
    stamp = datetime.strptime(local, "%Y-%m-%d %H:%M:%S")
    return stamp.replace(tzinfo=ZoneInfo("Europe/Amsterdam")).isoformat()


def test_first_sync_from_start_date_reads_id_ranges_side_by_side_like_a_serial_run(
    emu: Emulator,
) -> None:
    profiles = emu.store.profiles("Customers")
    cut = sorted(p["modified"] for p in profiles)[len(profiles) // 3]
    wanted = {int(p["ID"]) for p in profiles if p["modified"] >= cut}
    start_date = iso_of(cut)

    serial = sync(
        settings(emu, start_date=start_date, max_parallel_requests=1), streams=["profiles"]
    )
    mark = len(emu.requests)
    parallel = sync(
        settings(emu, start_date=start_date, max_parallel_requests=4), streams=["profiles"]
    )

    assert set(by_id(parallel)) == wanted
    assert by_id(parallel) == by_id(serial)
    assert parallel.ids("profiles") == sorted(wanted), "ID order, as the ranges were read"
    pages = profile_pages(emu, mark)
    assert ranged_and_filtered(pages), "ID ranges, filtered by the API on `modified`"
    # The pages the rows fill, the highest-ID probe, and ranges planned 90 % full.
    assert math.ceil(len(wanted) / PAGE) <= len(pages) <= math.ceil(len(wanted) / PAGE) + 4
    bookmark = parallel.final_state["bookmarks"]["profiles"]["partitions"][0]
    assert "scan" not in bookmark, "the scan finished"
    assert bookmark["replication_key_value"] > start_date


def mass_update(emu: Emulator, step: int = 1) -> set[int]:
    """Change every `step`-th Customers profile at once (a bulk edit in Copernica)."""
    ids = [int(p["ID"]) for p in emu.store.profiles("Customers")][::step]
    for profile_id in ids:
        assert emu.store.update_profile(profile_id, {"city": f"Bulk{profile_id}"})
    return set(ids)


def test_an_incremental_run_after_a_mass_update_reads_each_change_once_in_parallel(
    emu: Emulator,
) -> None:
    first = sync(settings(emu), streams=["profiles"])
    changed = mass_update(emu, step=2)
    time.sleep(2.1)  # the changes fall behind `lookback_seconds` (1 s)
    mark = len(emu.requests)

    before = copy.deepcopy(first.final_state)
    result = sync(settings(emu), streams=["profiles"], state=first.final_state)

    records = by_id(result)
    assert set(records) == changed
    assert all(r["fields"]["city"] == f"Bulk{i}" for i, r in records.items())
    pages = profile_pages(emu, mark)
    assert ranged_and_filtered(pages), "the rest of the changes came by ID ranges"
    # One page by `modified` finds the mass update, then the changes fill their pages.
    assert len(pages) <= math.ceil(len(changed) / PAGE) + 5
    serial = sync(settings(emu, max_parallel_requests=1), streams=["profiles"], state=before)
    assert by_id(serial) == records
    nothing = sync(settings(emu), streams=["profiles"], state=result.final_state)
    assert "profiles" not in nothing.records, "nothing changed since"


def test_a_small_incremental_stays_one_request(emu: Emulator) -> None:
    first = sync(settings(emu), streams=["profiles"])
    changed = mass_update(emu, step=100)  # 15 profiles: less than a page
    time.sleep(2.1)
    mark = len(emu.requests)

    result = sync(settings(emu), streams=["profiles"], state=first.final_state)

    assert set(by_id(result)) == changed
    assert len(profile_pages(emu, mark)) == 1


def change_during_scan(emu: Emulator, after_pages: int) -> dict[str, list[int]]:
    """After the `after_pages`-th Customers page: modify profiles behind and ahead of the
    read position (changed by the mass update or not), insert some and delete some."""
    path = f"/v4/database/{emu.store.database_id('Customers')}/profiles"
    ids = [int(p["ID"]) for p in emu.store.profiles("Customers")]
    plan: dict[str, list[int]] = {
        "modified": ids[:4] + ids[1:9:2] + ids[-4:] + ids[-9:-4:2],
        "deleted": ids[20:22] + ids[-20:-18],
        "inserted": [],
    }
    pages = {"n": 0}

    def hook(log: RequestLog) -> None:
        if log.path != path or log.status != 200:
            return
        pages["n"] += 1
        if pages["n"] != after_pages:
            return
        for profile_id in plan["modified"]:
            emu.store.update_profile(profile_id, {"city": f"Late{profile_id}"})
        for profile_id in plan["deleted"]:
            emu.store.delete_profile(profile_id)
        for n in range(3):
            plan["inserted"].append(
                emu.store.create_profile("Customers", {"email": f"late{n}@example.org"})
            )

    emu.on_response(hook)
    return plan


def scan_case(emu: Emulator, case: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The STATE and settings a filtered scan starts from: a mass update after a first
    sync, or a first sync from a `start_date` a quarter into the profiles' changes."""
    if case == "after a mass update":
        state = sync(settings(emu), streams=["profiles"]).final_state
        mass_update(emu, step=2)
        time.sleep(2.1)
        return state, {}
    profiles = emu.store.profiles("Customers")
    return None, {"start_date": iso_of(sorted(p["modified"] for p in profiles)[len(profiles) // 4])}


@pytest.mark.parametrize("case", ["first sync from start_date", "after a mass update"])
def test_changes_made_while_the_ranges_are_read_are_never_lost(emu: Emulator, case: str) -> None:
    state, extra = scan_case(emu, case)
    cfg = settings(emu, **extra)
    plan = change_during_scan(emu, after_pages=4)

    during = sync(cfg, streams=["profiles"], state=state)
    assert plan["inserted"], "the hook ran during the scan"
    time.sleep(2.1)
    after = sync(cfg, streams=["profiles"], state=during.final_state)

    latest = {**by_id(during), **by_id(after)}
    for profile_id in plan["modified"]:
        assert latest[profile_id]["fields"]["city"] == f"Late{profile_id}", profile_id
    for profile_id in plan["inserted"]:
        assert profile_id in latest
    assert not set(by_id(after)) & set(plan["deleted"])
    assert ranged_and_filtered(profile_pages(emu))


@pytest.mark.parametrize("case", ["first sync from start_date", "after a mass update"])
def test_a_run_cut_mid_scan_resumes_to_exactly_the_missing_records(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setattr(ProfileStream, "STATE_MSG_FREQUENCY", 17)
    state, extra = scan_case(emu, case)
    whole = sync(settings(emu, **extra), streams=["profiles"], state=copy.deepcopy(state))
    everything = set(by_id(whole))

    # The API fails for good after a few pages: the run stops mid-scan.
    path = f"/database/{emu.store.database_id('Customers')}/profiles$"
    emu.faults.add("html503", path=path, after=7)
    cut = sync(settings(emu, max_retries=0, **extra), streams=["profiles"], state=state)
    assert cut.exit_code != 0
    last = max(i for i, m in enumerate(cut.messages) if m["type"] == "STATE")
    kept = [m["record"]["ID"] for m in cut.messages[:last] if m["type"] == "RECORD"]
    assert kept, "the cut run got some way"
    scan = cut.states[-1]["bookmarks"]["profiles"]["partitions"][0]["scan"]
    assert scan["after_id"] > 0

    emu.faults.clear()
    resumed = sync(settings(emu, **extra), streams=["profiles"], state=cut.states[-1])

    assert Counter(resumed.ids("profiles")) == Counter(everything - set(kept))
    assert set(kept) <= everything


def test_the_typed_stream_from_start_date_reads_like_a_serial_run(emu: Emulator) -> None:
    profiles = emu.store.profiles("Customers")
    start_date = iso_of(sorted(p["modified"] for p in profiles)[len(profiles) // 2])
    runs = {
        workers: sync(
            settings(emu, start_date=start_date, max_parallel_requests=workers),
            streams=["profiles_customers"],
        ).records["profiles_customers"]
        for workers in (1, 4)
    }
    assert sorted(runs[4], key=lambda r: r["ID"]) == sorted(runs[1], key=lambda r: r["ID"])
    assert len(runs[4]) >= len(profiles) // 2
    typed = {r["ID"]: r for r in runs[4]}
    for profile in profiles:
        if int(profile["ID"]) in typed:
            record = typed[int(profile["ID"])]
            assert record["age"] == (
                int(profile["fields"]["age"]) if profile["fields"]["age"] else None
            )
            assert record["city"] == profile["fields"]["city"]
