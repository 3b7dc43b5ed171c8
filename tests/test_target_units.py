"""Settings and routing of target-copernica (no API involved)."""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError

from target_copernica.records import new_field_type
from target_copernica.settings import Route, TargetSettings

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
