"""A full sync against the emulator emits exactly the account's data, typed and linked."""

from __future__ import annotations

from collections import Counter
from typing import Any

from copernica_emulator import Emulator
from tests.singer import sync

CORE_STREAMS = [
    "identity",
    "databases",
    "database_fields",
    "database_interests",
    "collections",
    "collection_fields",
    "profiles",
    "subprofiles",
]


def live_profiles(emu: Emulator) -> dict[int, dict[str, Any]]:
    return {
        int(p["ID"]): p
        for db in ("Customers", "Newsletter", "Legacy")
        for p in emu.store.profiles(db)
    }


def live_subprofiles(emu: Emulator) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for db in ("Customers", "Newsletter", "Legacy"):
        for collection in emu.store.collections_of(emu.store.database(db)):
            out.update({int(s["ID"]): s for s in emu.store.subprofiles(collection.id)})
    return out


def test_every_core_stream_syncs_the_exact_record_set(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    result = sync(config)
    assert result.exit_code == 0
    for stream in CORE_STREAMS:
        assert result.records.get(stream), f"{stream} emitted nothing"

    profiles = live_profiles(emulator)
    ids = result.ids("profiles")
    assert Counter(ids) == Counter(list(profiles)), "each live profile exactly once"
    subprofiles = live_subprofiles(emulator)
    assert Counter(result.ids("subprofiles")) == Counter(list(subprofiles))
    assert sorted(result.ids("profile_ids")) == sorted(profiles)
    assert sorted(result.ids("subprofile_ids")) == sorted(subprofiles)

    assert [d["name"] for d in result.records["databases"]] == [
        "Customers",
        "Newsletter",
        "Legacy",
    ]
    assert len(result.records["identity"]) == 1


def test_profile_records_are_typed_and_carry_their_parents(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    result = sync(config, streams=["profiles", "subprofiles"])
    assert set(result.records) == {"profiles", "subprofiles"}, "parents are read, not emitted"
    source = live_profiles(emulator)
    customers = emulator.store.database_id("Customers")
    for record in result.records["profiles"]:
        api = source[record["ID"]]
        assert record["fields"] == api["fields"]
        assert record["interests"] == api["interests"]
        assert record["database_id"] == int(api["database"])
        assert record["modified"].startswith(api["modified"][:10])
        assert record["modified"][10] == "T"
        assert record["modified"][-6] in "+-"
        assert record["removed"] is None
    orders = emulator.store.collection_id(customers, "Orders")
    for record in result.records["subprofiles"]:
        assert isinstance(record["profile"], int)
        assert record["profile"] in source
        if record["collection_id"] == orders:
            assert record["database_id"] == customers
            assert set(record["fields"]) == {"order_id", "amount", "ordered_at", "quantity"}


def test_structure_streams_link_fields_to_databases_and_collections(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    result = sync(config, streams=["database_fields", "collection_fields", "collections"])
    customers = emulator.store.database_id("Customers")
    types = {
        f["name"]: f["type"]
        for f in result.records["database_fields"]
        if f["database_id"] == customers
    }
    assert types["email"] == "email"
    assert types["birthdate"] == "date"
    assert types["score"] == "float"
    assert all(isinstance(f["ID"], int) for f in result.records["database_fields"])
    names = {c["name"]: c for c in result.records["collections"]}
    assert names["Orders"]["database_id"] == customers
    orders = names["Orders"]["ID"]
    assert {
        f["name"] for f in result.records["collection_fields"] if f["collection_id"] == orders
    } == {
        "order_id",
        "amount",
        "ordered_at",
        "quantity",
    }


def test_database_ids_accepts_names_and_ids(emulator: Emulator, config: dict[str, Any]) -> None:
    newsletter = emulator.store.database_id("Newsletter")
    result = sync(
        {**config, "database_ids": ["customers", str(newsletter)]},
        streams=["databases", "profiles"],
    )
    assert {d["name"] for d in result.records["databases"]} == {"Customers", "Newsletter"}
    assert {r["database_id"] for r in result.records["profiles"]} == {
        emulator.store.database_id("Customers"),
        newsletter,
    }
    legacy = str(emulator.store.database_id("Legacy"))
    assert not any(legacy in r.path for r in emulator.requests if "/profiles" in r.path)
