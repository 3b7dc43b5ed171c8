"""The generic profile streams' pages decoded straight into records (`ProfileRecords`): the
same records as the row by row path, which applies the stream's shape to each row."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from copernica_api.errors import CopernicaPagingError
from copernica_api.timeutil import zone
from copernica_emulator import Emulator
from tap_copernica import profile_records
from tap_copernica.profile_records import ProfileRecords, RecordLayout
from tap_copernica.schemas_dir import schema_dir
from tap_copernica.streams.profiles import STREAM_SPECS, ProfileSpec, ProfileStream
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for

SPECS = {s.name: s for s in STREAM_SPECS if isinstance(s, ProfileSpec)}
TZ = zone("Europe/Amsterdam")


def test_the_row_values_read_are_the_schema_s_properties() -> None:
    """`row_keys` and the schema agree: what both paths keep is what the schema declares
    (the partition's IDs are added to each record by the SDK)."""
    for name, spec in SPECS.items():
        properties = set(json.loads((schema_dir() / f"{name}.json").read_text())["properties"])
        assert set(spec.row_keys) <= properties, name
        assert properties - set(spec.row_keys) <= {"database_id", "collection_id"}, name


def records_of(stream: str, *, utc: bool = False) -> ProfileRecords:
    spec = SPECS[stream]
    layout = RecordLayout(
        entity_keys=spec.row_keys,
        fields=None,
        shape=spec.shape,
        declared=frozenset({*spec.row_keys, f"{spec.owner_kind}_id"}),
    )
    return ProfileRecords(layout, TZ, utc=utc)


def profile(profile_id: Any, **values: Any) -> dict[str, Any]:
    row = {
        "ID": profile_id,
        "fields": {"email": "a@example.com", "age": "42", "nested": {"kept": [1, 2]}},
        "interests": ["news"],
        "database": "1",
        "secret": "s3cret",
        "created": "2024-10-27 02:30:00",  # the hour that repeats
        "modified": "2025-01-02 03:04:05",
        "removed": False,
        "dataonly": "a key the schema does not declare",
    }
    row.update(values)
    return row


def subprofile(subprofile_id: Any, **values: Any) -> dict[str, Any]:
    row = {
        "ID": subprofile_id,
        "secret": "s3cret",
        "fields": {"order_id": "A-1", "amount": "9.95"},
        "profile": "17",
        "collection": "3",
        "created": "2025-03-30 01:59:59",
        "modified": "2025-03-30 03:00:00",  # just after the clocks went forward
        "removed": "2025-04-01 12:00:00",
    }
    row.update(values)
    return row


def page(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"start": 0, "limit": 1000, "count": len(rows), "data": rows}).encode()


def shaped(stream: str, row: dict[str, Any], *, utc: bool = False) -> dict[str, Any]:
    """What the stream emitted before pages were decoded into records: its shape applied
    to the row, the undeclared keys left out."""
    spec = SPECS[stream]
    record = spec.shape.apply(copy.deepcopy(row), TZ, utc=utc)
    declared = {*spec.row_keys, f"{spec.owner_kind}_id"}
    return {k: v for k, v in record.items() if k in declared}


@pytest.mark.parametrize("utc", [False, True])
@pytest.mark.parametrize(
    ("stream", "rows", "odd"),
    [
        (
            "profiles",
            [profile("1"), profile(2), profile("3", removed="2025-02-01 00:00:00", fields=[])],
            profile(True),  # an ID that is neither a string nor a number
        ),
        (
            "subprofiles",
            [subprofile("1"), subprofile("2", profile=18, created="")],
            subprofile("3", profile=None),
        ),
    ],
)
def test_a_page_reads_the_same_whether_or_not_it_fits_the_quick_path(
    monkeypatch: pytest.MonkeyPatch,
    stream: str,
    rows: list[dict[str, Any]],
    odd: dict[str, Any],
    utc: bool,
) -> None:
    records = records_of(stream, utc=utc)
    with monkeypatch.context() as patch:
        patch.setattr(profile_records, "plain_json", None)  # the plain decoder is not used
        quick = [records.finish(r) for r in records.decode(page(rows))["data"]]
    general = [records.finish(r) for r in records.decode(page([*rows, odd]))["data"]]
    expected = [shaped(stream, row, utc=utc) for row in rows]
    assert quick == general[: len(rows)] == expected
    assert [list(r) for r in quick] == [list(r) for r in expected]  # and the key order
    assert general[-1] == shaped(stream, odd, utc=utc)


def test_records_keep_the_api_strings_the_bookmark_compares_until_finished() -> None:
    """The cursor and bookmark read `ID` and the API's own `modified` from a page's records;
    `finish` then writes `modified` as the other timestamps are."""
    records = records_of("profiles")
    (record,) = records.decode(page([profile("5")]))["data"]
    assert (record["ID"], record["modified"]) == (5, "2025-01-02 03:04:05")
    assert records.finish(record)["modified"] == "2025-01-02T03:04:05+01:00"


def test_a_bare_array_of_rows_is_read_as_the_paging_wrapper_is() -> None:
    records = records_of("profiles")
    bare = json.dumps([profile("7"), "not a row"]).encode()
    assert [records.finish(r) for r in records.decode(bare)["data"]] == [
        shaped("profiles", profile("7"))
    ]


def test_a_row_whose_id_is_no_number_is_refused_whatever_path_emits_it() -> None:
    """A target keys on `ID`: a row without a numeric one stops the stream with the paging
    error (not a record with a null or text key), also where the cursor never reads it."""
    with Emulator(seed=1, profiles_per_database=5) as emu:
        stream = TapCopernica(config=config_for(emu)).streams["profiles"]
        assert isinstance(stream, ProfileStream)
        for odd in ("abc", "", "12.0", True, 12.5):  # 12.5: a JSON number, not cut to 12
            (record,) = stream.records.decode(page([profile(odd)]))["data"]
            with pytest.raises(CopernicaPagingError, match="not a number"):
                stream.post_process(record)
        (record,) = stream.records.decode(page([profile("12")]))["data"]
        assert (stream.post_process(record) or {})["ID"] == 12
