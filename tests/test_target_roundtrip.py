"""tap-copernica's own output loads back: its typed tables (`profiles_<db>`,
`subprofiles_<db>_<collection>`) and its generic `profiles` stream, read from one database
and written into a copy of it, leave the same field values, interests and subprofiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, sync
from tests.target_helpers import copy_structure, run_target, target_config

ORDERS = "subprofiles_customers_orders"


@pytest.fixture(scope="module")
def source() -> Any:
    """One account: the seeded Customers database and the tap's output of it."""
    with Emulator(seed=5, profiles_per_database=25) as emu:
        result = sync(
            config_for(emu, database_ids=["Customers"]),
            streams=["profiles_customers", "profiles", ORDERS],
        )
        assert result.exit_code == 0
        yield emu, result


def messages_of(result: SyncResult, stream: str) -> list[dict[str, Any]]:
    """The tap's SCHEMA, RECORD and STATE messages of one stream, in order."""
    return [
        m
        for m in result.messages
        if (m["type"] in ("SCHEMA", "RECORD") and m["stream"] == stream) or m["type"] == "STATE"
    ]


def by_email(emu: Emulator, database: str) -> dict[str, tuple[dict[str, str], list[str]]]:
    return {
        p["fields"]["email"]: (p["fields"], sorted(p["interests"]))
        for p in emu.store.profiles(database)
    }


def orders_by_email(emu: Emulator, database: str) -> dict[str, list[dict[str, str]]]:
    emails = {p["ID"]: p["fields"]["email"] for p in emu.store.profiles(database)}
    found: dict[str, list[dict[str, str]]] = {}
    collection = next(
        c.id for c in emu.store.collections_of(emu.store.database(database)) if c.name == "Orders"
    )
    for row in emu.store.subprofiles(collection):
        found.setdefault(emails[row["profile"]], []).append(row["fields"])
    return {k: sorted(v, key=lambda f: f["order_id"]) for k, v in found.items()}


@pytest.mark.parametrize("stream", ["profiles_customers", "profiles"])
def test_the_taps_profiles_load_into_a_copy_of_their_database(
    source: tuple[Emulator, SyncResult], tmp_path: Path, stream: str
) -> None:
    emu, result = source
    copy = f"Copy {stream}"
    copy_structure(emu, "Customers", copy)
    config = target_config(emu, tmp_path, database=copy, write_path="api")
    run = run_target(config, messages_of(result, stream))
    assert run.exit_code == 0
    assert run.rejected == []
    expected = by_email(emu, "Customers")
    assert run.summary(stream) == {"inserted": len(expected)}
    assert any(interests for _, interests in expected.values()), "the seed has interests"
    assert by_email(emu, copy) == expected
    # Loaded again: nothing changes.
    before = emu.store.profiles(copy)
    again = run_target(config, messages_of(result, stream))
    assert again.summary(stream) == {"updated": len(expected)}
    assert emu.store.profiles(copy) == before


def test_the_taps_subprofiles_load_with_a_parent_key_and_say_why_without_one(
    source: tuple[Emulator, SyncResult], tmp_path: Path
) -> None:
    emu, result = source
    copy_structure(emu, "Customers", "Copy orders")
    config = target_config(emu, tmp_path, database="Copy orders", write_path="api")
    run_target(config, messages_of(result, "profiles_customers"))
    orders = messages_of(result, ORDERS)
    assert [m for m in orders if m["type"] == "RECORD"]

    # Without a route to the collection: rejected, saying why.
    unrouted = run_target(config, orders)
    assert unrouted.exit_code == 0
    assert unrouted.rejected
    assert all("`profile` is the parent's ID" in r["reason"] for r in unrouted.rejected)
    assert "stream_routes" in unrouted.rejected[0]["reason"]

    # Routed, but the records hold no parent key: rejected, saying what to add.
    route = {"collection": "Orders", "parent_key_property": "customer_email"}
    routed = {**config, "stream_routes": {ORDERS: {**route, "key_fields": ["order_id"]}}}
    routed["rejected_records_path"] = str(tmp_path / "rejected_routed.jsonl")
    keyless = run_target(routed, orders)
    assert keyless.rejected
    reason = keyless.rejected[0]["reason"]
    assert "parent key property 'customer_email' is missing" in reason
    assert "source account" in reason
    assert orders_by_email(emu, "Copy orders") == {}

    # With the parent's key added (as a stream map or a warehouse join would):
    emails = {r["ID"]: r["email"] for r in result.records["profiles_customers"]}
    with_parent = [
        {**m, "record": {**m["record"], "customer_email": emails[m["record"]["profile"]]}}
        if m["type"] == "RECORD"
        else m
        for m in orders
    ]
    routed["rejected_records_path"] = str(tmp_path / "rejected_keyed.jsonl")
    loaded = run_target(routed, with_parent)
    assert loaded.rejected == []
    assert loaded.summary(ORDERS) == {"inserted": len(result.records[ORDERS])}
    assert orders_by_email(emu, "Copy orders") == orders_by_email(emu, "Customers")


def test_a_field_named_like_an_entity_column_loads_back_from_its_renamed_column(
    tmp_path: Path,
) -> None:
    """The Legacy database has a field `modified`: the tap's column is `modified_field`."""
    with Emulator(seed=5, profiles_per_database=8) as emu:
        result = sync(config_for(emu, database_ids=["Legacy"]), streams=["profiles_legacy"])
        assert "modified_field" in result.records["profiles_legacy"][0]
        copy_structure(emu, "Legacy", "Copy legacy")
        config = target_config(emu, tmp_path, database="Copy legacy", write_path="api")
        run = run_target(config, messages_of(result, "profiles_legacy"))
        assert run.rejected == []
        expected = by_email(emu, "Legacy")
        assert any(fields["modified"] for fields, _ in expected.values())
        assert by_email(emu, "Copy legacy") == expected
