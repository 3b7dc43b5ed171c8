"""Settings, routing and the record path of target-copernica (no API involved)."""

from __future__ import annotations

from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.sinks import Sink

from target_copernica.destination import Structure
from target_copernica.records import MAX_PLANS, RecordMapper, Rejected, new_field_type
from target_copernica.settings import Route, TargetSettings
from target_copernica.sinks import CopernicaSink

ROUTES = {
    "orders": {"collection": "Orders", "parent_key_property": "email", "key_fields": ["id2"]},
    "dim_*": "Dimensions",
    "*": {"database": "Everything", "key_fields": ["code_value"]},
}


def settings(**config: object) -> TargetSettings:
    return TargetSettings.from_config({"api_token": "t", **config})


def test_exact_route_beats_patterns_and_patterns_go_in_order() -> None:
    chosen = settings(database="Main", stream_routes=ROUTES)
    assert chosen.route_for("orders") == Route(
        database="Main",
        key_fields=("id2",),
        collection="Orders",
        parent_key_property="email",
        parent_key_field="email",
    )
    assert chosen.route_for("dim_city").database == "Dimensions"
    assert chosen.route_for("dim_city").key_fields == ("email",)
    assert chosen.route_for("other") == Route(database="Everything", key_fields=("code_value",))


def test_a_stream_without_destination_is_refused_by_name() -> None:
    with pytest.raises(ConfigValidationError, match="Stream 'loose' has no destination"):
        settings().route_for("loose")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"load_method": "overwrite"}, "would delete every profile"),
        ({"load_method": "merge"}, "not one of"),
        ({"write_path": "ftp"}, "`write_path`"),
        ({"key_fields": []}, "at least one field"),
        ({"stream_routes": {"o": {"collection": "Orders"}}}, "parent_key_property"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_settings_the_target_cannot_honour_are_refused(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigValidationError, match=message):
        settings(**config)


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        ({"type": ["integer", "null"]}, "integer"),
        ({"type": "boolean"}, "integer"),
        ({"type": "number"}, "float"),
        ({"type": "string", "format": "date"}, "empty_date"),
        ({"type": "string", "format": "date-time"}, "empty_datetime"),
        ({"type": "string", "maxLength": 5000}, "big"),
        ({"type": "string"}, "text"),
    ],
)
def test_new_fields_get_a_type_from_the_schema(schema: dict[str, object], kind: str) -> None:
    assert new_field_type(schema) == kind


# -- the record path's fast paths ----------------------------------------------------------
def _mapper(structure: Structure) -> RecordMapper:
    return RecordMapper(
        stream="people",
        route=Route("Bench", ("email",)),
        structure=structure,
        parent=None,
        tz=ZoneInfo("Europe/Amsterdam"),
    )


def _structure() -> Structure:
    types = {
        "email": "email",
        "Name": "text",
        "notes": "big",
        "age": "integer",
        "score": "float",
        "born": "date",
        "seen": "datetime",
        "fields": "text",
    }
    return Structure(
        "database",
        "1",
        "Bench",
        {k.casefold(): v for k, v in types.items()},
        {k.casefold(): k for k in types},
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Zoë",
        " 12 ",
        7,
        -3,
        2**53,
        2**53 + 1,
        -(2**60) - 1,
        True,
        False,
        1.5,
        2.0,
        float("inf"),
        "2024-05-06T07:08:09Z",
        "2024-05-06",
        "0000-00-00 00:00:00",
        {"a": 1},
        [1, "x"],
    ],
)
def test_mapped_values_are_what_convert_makes_of_them(value: object) -> None:
    """`map` converts common values inline; each must equal `convert`'s result, and a value
    `convert` refuses must be refused with the same reason."""
    structure = _structure()
    mapper = _mapper(structure)
    for name in ("Name", "notes", "age", "score", "born", "seen"):
        try:
            expected: object = mapper.convert(structure, name, value)
        except Rejected as exc:
            expected = exc.reason
        try:
            got: object = mapper.map(1, {"email": "a@b.nl", name: value}).fields[name]
        except Rejected as exc:
            got = exc.reason
        assert got == expected, name
        assert type(got) is type(expected)


def test_record_shapes_are_planned_once_and_replanned_when_fields_appear() -> None:
    structure = _structure()
    mapper = _mapper(structure)
    item = mapper.map(1, {"EMAIL": "a@b.nl", "name": "A", "interests": [], "_sdc_deleted_at": None})
    assert item.fields == {"email": "a@b.nl", "Name": "A"}  # as defined, without the extras
    assert mapper.map(2, {"EMAIL": "b@b.nl", "name": None}).fields == {
        "email": "b@b.nl",
        "Name": "",
    }
    with pytest.raises(Rejected, match=r"\['city', 'zip'\] do not exist"):
        mapper.map(3, {"email": "c@b.nl", "zip": "1", "city": "X"})
    structure.fields["city"], structure.names["city"] = "text", "City"  # a field was created
    with pytest.raises(Rejected, match=r"\['zip'\] do not exist"):
        mapper.map(4, {"email": "c@b.nl", "zip": "1", "city": "X"})
    assert mapper.map(5, {"email": "d@b.nl", "city": "X"}).fields == {
        "email": "d@b.nl",
        "City": "X",
    }
    for n in range(MAX_PLANS + 5):  # ever new shapes: the plans stay bounded
        with pytest.raises(Rejected):
            mapper.map(10 + n, {"email": "e@b.nl", f"x{n}": 1})
    assert len(mapper._plans) <= MAX_PLANS


def test_the_taps_shape_writes_its_nested_fields() -> None:
    del_fields = _structure()
    del del_fields.fields["fields"], del_fields.names["fields"]
    record = {"ID": 7, "modified": "x", "fields": {"email": "a@b.nl", "age": 3}, "interests": []}
    assert _mapper(del_fields).map(1, record).fields == {"email": "a@b.nl", "age": "3"}
    # A destination with a field called "fields": a flat record; the tap's metadata is skipped.
    with pytest.raises(Rejected, match="field 'age': an dict cannot"):
        _mapper(_structure()).map(1, {**record, "fields": {"x": 1}, "age": {"y": 1}})
    flat = _mapper(_structure()).map(1, {"ID": 7, "email": "a@b.nl", "fields": {"x": 1}})
    assert flat.fields == {"email": "a@b.nl", "fields": '{"x":1}'}


def test_records_without_date_like_properties_skip_the_sdks_timestamp_parsing() -> None:
    """`CopernicaSink._plain_properties` names the properties the SDK's (pinned)
    `_parse_timestamps_in_record` leaves alone: a record with only those is not passed to
    it. Fails if the SDK starts changing such records or warning about them."""
    schema = {
        "properties": {
            "email": {"type": "string"},
            "age": {"type": ["integer", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "day": {"type": ["string", "null"], "format": "date"},
            "at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
            "clock": {"type": "string", "format": "time"},
            "odd": True,
        }
    }
    warnings: list[str] = []
    stub = SimpleNamespace(
        schema=schema,
        _warned_missing_fields=set(),
        logger=SimpleNamespace(warning=lambda *args: warnings.append(args[1])),
    )
    plain = CopernicaSink._plain_properties.func(stub)  # type: ignore[attr-defined]
    assert plain == {"email", "age", "tags"}
    parse = Sink._parse_timestamps_in_record
    record = {"email": "a@b.nl", "age": 3, "tags": ["2024-01-01"]}
    parse(stub, record, schema, DatetimeErrorTreatmentEnum.ERROR)  # type: ignore[arg-type]
    assert record == {"email": "a@b.nl", "age": 3, "tags": ["2024-01-01"]}
    assert warnings == []
    for name, value in (("day", "2024-01-02"), ("at", "2024-01-02T03:04:05Z"), ("clock", "03:04")):
        parsed = {name: value}
        parse(stub, parsed, schema, DatetimeErrorTreatmentEnum.ERROR)  # type: ignore[arg-type]
        assert parsed[name] != value, f"the SDK parses {name}: it is not plain"
    parse(stub, {"extra": 1}, schema, DatetimeErrorTreatmentEnum.ERROR)  # type: ignore[arg-type]
    assert warnings == ["extra"], "an undeclared property is not plain either (it warns)"
