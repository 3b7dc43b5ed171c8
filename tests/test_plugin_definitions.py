"""The Meltano definitions (meltano.yml, the Hub file) match what the plugins declare."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from tests.singer import REPO, script

KINDS = {
    "string": "string",
    "integer": "integer",
    "number": "decimal",
    "array": "array",
    "boolean": "boolean",
}


def about(executable: str) -> dict[str, Any]:
    out = subprocess.run(
        [script(executable), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def own_settings(about_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plugin's own settings (the SDK adds stream_maps, flattening, batch, ...)."""
    builtin: tuple[str, ...] = (
        "stream_map",
        "flattening",
        "batch_config",
        "faker",
        "emit_activate",
        "add_record",
    )
    builtin += ("load_method", "batch_size", "hard_delete", "validate_records", "process_")
    return {
        name: spec
        for name, spec in about_json["settings"]["properties"].items()
        if not name.startswith(builtin)
    }


def test_hub_and_meltano_definitions_list_every_tap_setting_with_its_kind() -> None:
    settings = own_settings(about("tap-copernica"))
    hub = yaml.safe_load((REPO / "hub/extractors/tap-copernica/copernica.yml").read_text())
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    extractor = next(p for p in project["plugins"]["extractors"] if p["name"] == "tap-copernica")
    for definition in (hub["settings"], extractor["settings"]):
        by_name = {s["name"]: s for s in definition}
        assert set(by_name) == set(settings)
        for name, spec in settings.items():
            types = [t for t in spec["type"] if t != "null"]
            if spec.get("format") == "date-time":
                assert by_name[name]["kind"] == "date_iso8601", name
            else:
                assert by_name[name]["kind"] == KINDS[types[0]], name
            assert bool(by_name[name].get("sensitive")) == bool(spec.get("secret")), name
    assert set(hub["capabilities"]) == set(about("tap-copernica")["capabilities"])


def test_the_targets_hub_definition_lists_its_settings_and_capabilities() -> None:
    target = about("target-copernica")
    hub = yaml.safe_load((REPO / "hub/loaders/target-copernica/copernica.yml").read_text())
    by_name = {s["name"]: s for s in hub["settings"]}
    assert set(own_settings(target)) <= set(by_name)
    for name in ("load_method", "batch_size_rows", "hard_delete", "validate_records"):
        assert name in by_name, name
    for name, spec in target["settings"]["properties"].items():
        if name in by_name:
            types = [t for t in spec["type"] if t != "null"]
            assert (
                by_name[name]["kind"]
                == {**KINDS, "boolean": "boolean", "object": "object"}[types[0]]
            ), name
            assert bool(by_name[name].get("sensitive")) == bool(spec.get("secret")), name
    assert set(hub["capabilities"]) == set(target["capabilities"])
