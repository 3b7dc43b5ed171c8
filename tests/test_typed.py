"""Typed tables: one column per Copernica field, typed from the field's definition."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from copernica_emulator import Emulator
from tap_copernica.streams.typed import unique_names
from tap_copernica.tap import TapCopernica
from tests.singer import catalog_selecting, sync
from tests.warehouse import fresh_schema, query, tap_to_postgres

EXPECTED_TYPES = {
    "firstname": {"type": ["string", "null"]},
    "email": {"type": ["string", "null"]},
    "mobile": {"type": ["string", "null"]},
    "fax": {"type": ["string", "null"]},
    "segment": {"type": ["string", "null"]},
    "notes": {"type": ["string", "null"]},
    "age": {"type": ["integer", "null"]},
    "score": {"type": ["number", "null"]},
    "birthdate": {"type": ["string", "null"], "format": "date"},
    "last_order_date": {"type": ["string", "null"], "format": "date"},
    "signup_at": {"type": ["string", "null"], "format": "date-time"},
    "last_login_at": {"type": ["string", "null"], "format": "date-time"},
    "account_ref": {"type": ["integer", "null"]},
}


def catalog(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tap = TapCopernica(config=config)
    return {entry["tap_stream_id"]: entry for entry in tap.catalog_dict["streams"]}


def test_discovery_types_every_field_from_its_definition(config: dict[str, Any]) -> None:
    streams = catalog(config)
    assert {
        "profiles_customers",
        "profiles_newsletter",
        "profiles_legacy",
        "subprofiles_customers_orders",
        "subprofiles_customers_tickets",
        "subprofiles_legacy_notes",
    } <= set(streams)
    properties = streams["profiles_customers"]["schema"]["properties"]
    for name, schema in EXPECTED_TYPES.items():
        assert properties[name] == schema, name
    assert properties["modified"]["format"] == "date-time"
    assert streams["profiles_customers"]["key_properties"] == ["ID"]
    assert streams["profiles_customers"]["replication_key"] == "modified"
    orders = streams["subprofiles_customers_orders"]["schema"]["properties"]
    assert orders["amount"] == {"type": ["number", "null"]}
    assert orders["quantity"] == {"type": ["integer", "null"]}
    assert orders["profile"] == {"type": ["integer", "null"]}
    # Legacy's own field `modified` gets its own column beside the timestamp.
    legacy = streams["profiles_legacy"]["schema"]["properties"]
    assert legacy["modified_field"] == {"type": ["string", "null"]}
    assert legacy["modified"]["format"] == "date-time"


def test_sync_emits_values_of_the_declared_types(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    streams = catalog(config)
    result = sync(config, streams=["profiles_customers", "subprofiles_customers_orders"])
    raw = {int(p["ID"]): p["fields"] for p in emulator.store.profiles("Customers")}
    assert sorted(r["ID"] for r in result.records["profiles_customers"]) == sorted(raw)
    for stream in ("profiles_customers", "subprofiles_customers_orders"):
        schema = streams[stream]["schema"]
        for record in result.records[stream]:
            jsonschema.validate(record, schema)
    for record in result.records["profiles_customers"]:
        fields = raw[record["ID"]]
        assert record["age"] == int(fields["age"])
        assert record["score"] == pytest.approx(float(fields["score"]))
        assert record["email"] == fields["email"]
        if fields["birthdate"] in ("", "0000-00-00"):
            assert record["birthdate"] is None
        else:
            assert record["birthdate"] == fields["birthdate"]
        if fields["signup_at"].startswith("0000") or not fields["signup_at"]:
            assert record["signup_at"] is None
        else:
            parsed = dt.datetime.fromisoformat(record["signup_at"])
            assert parsed.strftime("%Y-%m-%d %H:%M:%S") == fields["signup_at"]
            assert parsed.utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2))
        assert "fields" not in record


def test_a_field_added_in_copernica_appears_at_the_next_discovery(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    assert "tier" not in catalog(config)["profiles_customers"]["schema"]["properties"]
    emulator.store.add_field("database", "Customers", "tier", "integer")
    assert catalog(config)["profiles_customers"]["schema"]["properties"]["tier"] == {
        "type": ["integer", "null"]
    }
    result = sync(config, streams=["profiles_customers"])
    assert all(r["tier"] == 0 for r in result.records["profiles_customers"])


def test_unreadable_values_become_null_and_are_counted_per_field(
    emulator: Emulator, config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ids = [int(p["ID"]) for p in emulator.store.profiles("Customers")][:3]
    for profile_id in ids:  # what a broken export could leave behind
        emulator.store.profile(profile_id).fields["age"] = "twelve"
    result = sync(config, streams=["profiles_customers"])
    by_id = {r["ID"]: r for r in result.records["profiles_customers"]}
    assert [by_id[i]["age"] for i in ids] == [None, None, None]
    assert all(r["age"] is not None for i, r in by_id.items() if i not in ids)
    warnings = [m for m in caplog.messages if "did not fit its type" in m]
    assert len(warnings) == 1
    assert "3 value(s) of field 'age'" in warnings[0]
    assert "twelve" in warnings[0]


def test_typed_streams_alone_do_not_page_the_generic_streams(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    mark = len(emulator.requests)
    result = sync({**config, "page_size": 25}, streams=["profiles_customers"])
    assert set(result.records) == {"profiles_customers"}
    paths = [r.path for r in emulator.requests[mark:]]
    customers = len(emulator.store.profiles("Customers"))
    # Pages of 25 (ID ranges planned 90 % full), plus the scan's probe for the highest ID and
    # its last check for profiles added meanwhile: one pass, not a second read.
    assert customers // 25 <= paths.count("/v4/database/1/profiles") <= customers // 22 + 4
    assert "/v4/database/2/profiles" not in paths
    assert not any(p.endswith("/subprofiles") or p.endswith("profileids") for p in paths)


def test_typed_streams_are_incremental_like_the_generic_ones(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    first = sync(config, streams=["profiles_newsletter"])
    changed = int(emulator.store.profiles("Newsletter")[4]["ID"])
    emulator.store.update_profile(changed, {"name": "Renamed"})
    second = sync(config, streams=["profiles_newsletter"], state=first.final_state)
    assert [(r["ID"], r["name"]) for r in second.records["profiles_newsletter"]] == [
        (changed, "Renamed")
    ]


def test_stream_names_are_safe_and_collisions_resolved_deterministically() -> None:
    assert unique_names([(1, "Customers"), (2, "Klanten & Leads!"), (3, "news-letter")]) == {
        1: "customers",
        2: "klanten_leads",
        3: "news_letter",
    }
    assert unique_names([(7, "A-B"), (3, "a b"), (4, "C")]) == {7: "a_b_7", 3: "a_b_3", 4: "c"}


@pytest.mark.postgres
def test_postgres_gets_typed_columns(config: dict[str, Any], tmp_path: Path) -> None:
    with fresh_schema() as schema:
        tap_to_postgres(
            config,
            schema,
            tmp_path,
            streams=["profiles_customers", "subprofiles_customers_orders"],
        )
        types = dict(
            query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'profiles_customers'",
                schema,
            )
        )
        assert types["age"] == "bigint"
        assert types["score"] == "numeric" or types["score"] == "double precision"
        assert types["birthdate"] == "date"
        assert types["signup_at"].startswith("timestamp")
        assert types["modified"].startswith("timestamp")
        assert types["email"] in ("character varying", "text")
        count = query(f'SELECT count(*) FROM "{schema}".profiles_customers')[0][0]
        assert count > 0


def test_a_field_removed_since_discovery_does_not_break_the_sync(
    emulator: Emulator, config: dict[str, Any]
) -> None:
    """A catalog from before a field was deleted in Copernica still syncs (Meltano caches)."""
    catalog = catalog_selecting(config, ["profiles_customers"])
    assert catalog is not None
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "profiles_customers")
    entry["schema"]["properties"]["retired_field"] = {"type": ["string", "null"]}
    result = sync(config, catalog=catalog)
    assert result.exit_code == 0
    schema = next(m for m in result.messages if m["type"] == "SCHEMA")
    assert "retired_field" in schema["schema"]["properties"]
    assert len(result.records["profiles_customers"]) == len(emulator.store.profiles("Customers"))
    assert all(r.get("retired_field") is None for r in result.records["profiles_customers"])
