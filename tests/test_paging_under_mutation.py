"""Paging stays exact while the database changes under the tap (offsets would not)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from copernica_emulator import Emulator, RequestLog
from tests.singer import sync


def mutate_after_page(emu: Emulator, path: str, page: int) -> dict[str, list[int]]:
    """After the `page`-th answer on `path`, delete, modify and insert profiles."""
    ids = [int(p["ID"]) for p in emu.store.profiles("Customers")]
    plan = {
        "deleted": ids[:3] + ids[-2:],  # some already read, some not yet
        "modified": ids[5:7] + ids[-6:-4],
        "inserted": [],
    }
    seen = {"n": 0}

    def hook(log: RequestLog) -> None:
        if log.path != path or log.status != 200:
            return
        seen["n"] += 1
        if seen["n"] != page:
            return
        for profile_id in plan["deleted"]:
            emu.store.delete_profile(profile_id)
        for profile_id in plan["modified"]:
            emu.store.update_profile(profile_id, {"city": f"Changed{profile_id}"})
        for n in range(4):
            plan["inserted"].append(
                emu.store.create_profile("Customers", {"email": f"late{n}@example.org"})
            )

    emu.on_response(hook)
    return plan


@pytest.mark.parametrize(
    ("start_date", "workers"),
    [(None, 4), ("2000-01-01T00:00:00Z", 1), ("2000-01-01T00:00:00Z", 4)],
    # A first sync from `start_date` reads by `modified` one request at a time, or by ID
    # ranges filtered on `modified` with several in flight.
    ids=["scan", "keyset", "filtered-ranges"],
)
def test_profiles_unchanged_during_the_run_arrive_exactly_once(
    emulator: Emulator, config: dict[str, Any], start_date: str | None, workers: int
) -> None:
    customers = emulator.store.database_id("Customers")
    before = {int(p["ID"]) for p in emulator.store.profiles("Customers")}
    plan = mutate_after_page(emulator, f"/v4/database/{customers}/profiles", page=3)
    cfg = {
        **config,
        "page_size": 10,
        "database_ids": ["Customers"],
        "max_parallel_requests": workers,
    }
    if start_date:
        cfg["start_date"] = start_date

    result = sync(cfg, streams=["profiles"])

    emitted = Counter(result.ids("profiles"))
    untouched = before - set(plan["deleted"]) - set(plan["modified"])
    assert {i: emitted[i] for i in untouched} == dict.fromkeys(untouched, 1)
    for profile_id in plan["inserted"]:
        assert emitted[profile_id] >= 1, "a profile inserted mid-run is read in that run"
    # A change made behind the read position arrives in this run (keyset) or the next.
    follow_up = sync(cfg, streams=["profiles"], state=result.final_state)
    last_seen = {
        r["ID"]: r for r in result.records["profiles"] + follow_up.records.get("profiles", [])
    }
    for profile_id in plan["modified"]:
        assert last_seen[profile_id]["fields"]["city"] == f"Changed{profile_id}"
    for profile_id in plan["deleted"][-2:]:
        assert profile_id not in emitted, "deleted before it was reached"


def test_profile_ids_stay_exact_when_profiles_are_deleted_mid_paging(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    customers = emulator.store.database_id("Customers")
    before = {int(p["ID"]) for p in emulator.store.profiles("Customers")}
    plan = mutate_after_page(emulator, f"/v4/database/{customers}/profileids", page=2)

    cfg = {**config, "page_size": 10, "database_ids": ["Customers"]}
    result = sync(cfg, streams=["profile_ids"])

    emitted = Counter(result.ids("profile_ids"))
    survivors = before - set(plan["deleted"])
    assert {i: emitted[i] for i in survivors} == dict.fromkeys(survivors, 1)
    assert set(emitted) <= before | set(plan["inserted"])
    assert max(emitted.values()) == 1


def test_parallel_id_ranges_give_the_same_records_in_the_same_order(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    # Gaps in the ID space: deleted profiles, and other databases' IDs in between.
    for profile in emulator.store.profiles("Customers")[10:40:3]:
        emulator.store.delete_profile(int(profile["ID"]))
    runs = {
        workers: sync(
            {**config, "page_size": 7, "max_parallel_requests": workers},
            streams=["profiles", "profiles_newsletter"],
        )
        for workers in (1, 4, 8)
    }
    expected = [
        int(p["ID"])
        for db in ("Customers", "Newsletter", "Legacy")
        for p in sorted(emulator.store.profiles(db), key=lambda p: int(p["ID"]))
    ]
    for workers, result in runs.items():
        assert result.ids("profiles") == expected, f"max_parallel_requests={workers}"
        assert result.records["profiles_newsletter"] == runs[1].records["profiles_newsletter"]
    ranged = [r for r in emulator.requests if any("id<=" in f for f in r.query.get("fields[]", []))]
    assert ranged, "the parallel runs read ID ranges"
