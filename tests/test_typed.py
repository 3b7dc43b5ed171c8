"""Typed tables: one column per Copernica field, typed from the field's definition."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from copernica_api.timeutil import zone
from copernica_emulator import Emulator
from tap_copernica import profile_records
from tap_copernica.profile_records import ProfileRecords, RecordLayout
from tap_copernica.streams.base import RecordShape
from tap_copernica.streams.typed import TypedTable, column_names, unique_names
from tap_copernica.tap import TapCopernica
from tests.singer import catalog_selecting, sync
from tests.test_profile_records import profile
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


# -- pages decoded straight into records (`ProfileRecords`) --------------------------------------
#: Field names a struct attribute could not carry, and every type (the column of `modified`
#: takes the clash suffix, as discovery names it).
AWKWARD_FIELDS = (
    ("class", "text"),
    ("first name", "text"),
    ("e-mail", "email"),
    ("naïve", "integer"),
    ("score", "float"),
    ("born", "date"),
    ("seen", "empty_datetime"),
    ("ref", "foreign_key"),
    ("modified", "text"),
)


def _records(
    *, utc: bool = False, fields: tuple[tuple[str, str], ...] = AWKWARD_FIELDS
) -> tuple[ProfileRecords, dict[str, str]]:
    table = TypedTable("profiles_awkward", "database", {"database_id": 1}, fields)
    columns = column_names((n for n, _ in fields), "database")
    layout = RecordLayout(
        entity_keys=("ID", "interests", "secret", "created", "modified", "removed"),
        fields=tuple((name, columns[name], kind) for name, kind in fields),
        shape=RecordShape(("ID",), ("created", "modified", "removed"), ("database",)),
        declared=frozenset(table.schema()["properties"]),
    )
    return ProfileRecords(layout, zone("Europe/Amsterdam"), utc=utc), columns


def _row(profile_id: int, **values: Any) -> dict[str, Any]:
    fields = {
        "class": "A",
        "first name": "Anna",
        "e-mail": "a@example.com",
        "naïve": "42",
        "score": "7.5",
        "born": "1990-02-03",
        "seen": "2024-03-31 02:30:00",  # the hour the clocks skip in Amsterdam
        "ref": "0",
        "modified": "own value",
    }
    fields.update(values)
    return profile(str(profile_id), fields=fields)  # the API's row, as the generic tests have it


def _page(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"start": 0, "limit": 1000, "count": len(rows), "data": rows}).encode()


def test_a_page_reads_the_same_whether_or_not_it_fits_the_quick_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual page is decoded into structs (never as plain JSON); a page with a value
    that is not a string goes row by row; the rows they share become the same records."""
    usual = [
        _row(1),
        _row(2, **{"naïve": "", "score": "", "born": "0000-00-00", "seen": "", "ref": "17"}),
        _row(3, seen="0000-00-00 00:00:00", born="2000-12-31 00:00:00"),
        _row(4, **{"class": "", "extra field": "ignored"}),
    ]
    del usual[3]["fields"]["first name"]  # a field the API left out: null
    records, columns = _records()
    with monkeypatch.context() as patch:
        patch.setattr(profile_records, "plain_json", None)  # the plain decoder is not used
        quick = records.decode(_page(usual))["data"]
    general = records.decode(_page([*usual, _row(5, **{"naïve": 5})]))["data"]
    assert [records.finish(r) for r in quick] == [records.finish(r) for r in general[:4]]
    assert [list(r) for r in quick] == [list(r) for r in general[:4]]  # and column order
    first, second, third, fourth = quick
    assert first == {
        "ID": 1,
        "interests": ["news"],
        "secret": "s3cret",
        "created": "2024-10-27T02:30:00+02:00",
        "modified": "2025-01-02T03:04:05+01:00",
        "removed": None,
        "class": "A",
        "first name": "Anna",
        "e-mail": "a@example.com",
        "naïve": 42,
        "score": 7.5,
        "born": "1990-02-03",
        "seen": "2024-03-31T02:30:00+01:00",  # as zoneinfo reads a skipped time
        "ref": None,
        columns["modified"]: "own value",
    }
    assert (second["naïve"], second["score"], second["born"], second["seen"]) == (None,) * 4
    assert second["ref"] == 17
    assert (third["seen"], third["born"]) == (None, "2000-12-31")
    assert (fourth["class"], fourth["first name"], "extra field" in fourth) == ("", None, False)
    assert general[4]["naïve"] == 5
    assert not records.reader.unreadable


def test_a_value_only_the_general_path_can_read_is_read_there_and_counted() -> None:
    """`int` refuses " 12 " and "12.0", which the field's reader takes; a value that does
    not fit is null, and counted once its record is emitted: a row the run leaves out (a
    scan's row changed before `start_date`) is not counted."""
    records, _ = _records()
    rows = [
        _row(1, **{"naïve": " 12 "}),
        _row(2, **{"naïve": "12.0"}),
        _row(3, born="31-12"),
        _row(4, born="32-12"),
    ]
    page = records.decode(_page(rows))["data"]
    assert not records.reader.unreadable  # nothing is loaded yet
    emitted = [records.finish(r) for r in page[:3]]
    assert [r["naïve"] for r in emitted] == [12, 12, 42]
    assert [r["born"] for r in emitted] == ["1990-02-03", "1990-02-03", None]
    assert all(set(r) == set(page[0]) for r in emitted)  # no key of the count's own
    assert records.reader.unreadable == {"born": 1}
    assert records.reader.examples == {"born": "31-12"}


def test_a_page_cut_short_is_an_error_to_retry_not_a_page_of_fewer_records() -> None:
    records, _ = _records()
    with pytest.raises(msgspec.DecodeError):
        records.decode(_page([_row(1), _row(2)])[:-40])


@pytest.mark.parametrize("utc", [False, True])
def test_the_quick_path_writes_timestamps_as_the_setting_asks(utc: bool) -> None:
    records, _ = _records(utc=utc)
    (record,) = records.decode(_page([_row(1)]))["data"]
    record = records.finish(record)
    if utc:
        assert (record["created"], record["modified"]) == (
            "2024-10-27T00:30:00Z",
            "2025-01-02T02:04:05Z",
        )
        assert record["seen"] == "2024-03-31T01:30:00Z"
    else:
        assert record["modified"] == "2025-01-02T03:04:05+01:00"


def test_a_field_name_with_a_quote_is_read_row_by_row() -> None:
    """msgspec cannot match a name holding `"` or a backslash: that table reads every page
    the general way, with the same records."""
    quoted = 'it\'s "quoted"'
    records, _ = _records(fields=(*AWKWARD_FIELDS, (quoted, "integer")))
    (record,) = records.decode(_page([_row(1, **{quoted: "3"})]))["data"]
    assert (record[quoted], record["naïve"], record["e-mail"]) == (3, 42, "a@example.com")


def test_random_rows_read_the_same_whichever_path_reads_them() -> None:
    """Seeded random rows of every awkward kind: a page read the quick way (with a row by
    row fallback where needed) gives exactly what reading every row by row gives."""
    rng = random.Random(12)
    choices: dict[str, list[Any]] = {
        "naïve": ["", " 7 ", "12.0", "1_000", "x", "-3", "007", None],
        "score": ["", "1e3", "inf", " 2.5", "abc", "0"],
        "born": ["", "0000-00-00", "2024-02-29", "2023-02-29", "2024-01-01 10:00:00", "01-02"],
        "seen": [
            "",
            "0000-00-00 00:00:00",
            "2024-10-27 02:30:00",
            "2024-03-31 02:30:00",
            "2024-13-01 00:00:00",
            "2024-06-01 24:00:00",
            "2024-06-01T10:00:00",
        ],
        "ref": ["", "0", "12", "-1", "1.5"],
        "class": ["", "x", None],
    }
    for utc in (False, True):
        records, _ = _records(utc=utc)
        rows = []
        for n in range(400):
            values = {k: rng.choice(v) for k, v in choices.items()}
            row = _row(n + 1, **{k: v for k, v in values.items() if v is not None})
            rows.append(row)
        quick = [records.finish(r) for r in records.decode(_page(rows))["data"]]
        quick_counts = dict(records.reader.unreadable)
        slow, _ = _records(utc=utc)
        general = [
            slow.finish(r) for r in slow.decode(_page([*rows, {**_row(0), "ID": True}]))["data"]
        ]
        assert quick == general[:-1]
        assert quick_counts == dict(slow.reader.unreadable)
        assert quick_counts  # the rows did hold values that do not fit
