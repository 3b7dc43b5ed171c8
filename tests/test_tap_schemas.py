"""Every stream schema in `schemas/` declares its primary keys as non-null and required."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tap_copernica.schemas_dir import schema_dir
from tap_copernica.streams.base import StreamSpec
from tap_copernica.streams.mailings import MAILING_SPECS
from tap_copernica.streams.profiles import STREAM_SPECS
from tap_copernica.streams.reconciliation import RECONCILIATION_SPECS
from tap_copernica.streams.structure import STRUCTURE_SPECS

SPECS: dict[str, StreamSpec] = {
    s.name: s for s in (*STREAM_SPECS, *STRUCTURE_SPECS, *MAILING_SPECS, *RECONCILIATION_SPECS)
}
SCHEMA_FILES = sorted(p.stem for p in schema_dir().glob("*.json"))


def test_every_schema_belongs_to_a_stream() -> None:
    assert set(SCHEMA_FILES) == set(SPECS)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_primary_keys_are_non_null_and_required(name: str) -> None:
    schema: dict[str, Any] = json.loads((schema_dir() / f"{name}.json").read_text())
    for key in SPECS[name].keys:
        prop = schema["properties"].get(key)
        assert prop is not None, f"{name}: no property {key}"
        types = [prop["type"]] if isinstance(prop["type"], str) else prop["type"]
        assert "null" not in types, f"{name}.{key} is nullable"
        assert key in schema.get("required", []), f"{name}.{key} is not required"
