"""target-copernica as Meltano runs it: the console script, its exit status, its settings."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import REPO, run_cli, script
from tests.target_helpers import (
    CUSTOMER_SCHEMA,
    add_warehouse,
    records,
    schema,
    singer_lines,
    state,
    target_config,
)
from tests.test_plugin_definitions import about, own_settings


def test_cli_loads_reports_and_exits_2_on_rejects_without_leaking_secrets(
    tmp_path: Path,
) -> None:
    with Emulator(seed=3, profiles_per_database=5) as emu:
        add_warehouse(emu)
        rows: list[dict[str, Any]] = [
            {"email": "a@example.nl", "score": 1},
            {"firstname": "no key"},
        ]
        messages = [
            schema("customers", CUSTOMER_SCHEMA),
            *records("customers", rows),
            state({"bookmarks": {"customers": "x"}}),
        ]
        config = target_config(emu, tmp_path, fail_on_rejected=True)
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(messages),
        )
        assert result.exit_code == 2
        assert result.states == [{"bookmarks": {"customers": "x"}}]
        assert "Stream 'customers': inserted=1 updated=0 deleted=0 rejected=1" in result.stderr
        assert [p["fields"]["email"] for p in emu.store.profiles("Warehouse")] == ["a@example.nl"]
        rejected = (tmp_path / "rejected.jsonl").read_text()
        for text in (result.stderr, rejected):
            assert emu.api_token not in text
            assert "Bearer " not in text


def test_meltano_definition_lists_every_target_setting_with_its_kind() -> None:
    kinds = {"string": "string", "integer": "integer", "boolean": "boolean", "array": "array"}
    kinds |= {"object": "object", "number": "decimal"}
    settings = own_settings(about("target-copernica"))
    settings |= {
        k: v
        for k, v in about("target-copernica")["settings"]["properties"].items()
        if k in ("load_method", "batch_size_rows", "hard_delete", "validate_records")
    }
    project = yaml.safe_load((REPO / "meltano.yml").read_text())
    loader = next(p for p in project["plugins"]["loaders"] if p["name"] == "target-copernica")
    by_name = {s["name"]: s for s in loader["settings"]}
    assert set(by_name) == set(settings)
    for name, spec in settings.items():
        types = [t for t in spec["type"] if t != "null"]
        expected = "options" if "enum" in spec else kinds[types[0]]
        assert by_name[name]["kind"] == expected, name
        assert bool(by_name[name].get("sensitive")) == bool(spec.get("secret")), name
    assert set(loader["capabilities"]) == set(about("target-copernica")["capabilities"])


@pytest.mark.parametrize(
    ("bad_line", "complaint"),
    [
        ("this is not json", "line is not JSON"),
        ('["a", "list"]', "not a Singer message"),
        ('{"type": "RECORD", "stream": "people", "record": {"email": "a@b.c"}}', "before"),
        ('{"type": "WHATEVER"}', "Unknown message type"),
    ],
    ids=["not-json", "not-an-object", "record-before-schema", "unknown-type"],
)
def test_input_that_is_not_a_singer_stream_stops_with_one_clear_line(
    emulator: Emulator, tmp_path: Path, bad_line: str, complaint: str
) -> None:
    schema = {
        "type": "SCHEMA",
        "stream": "customers",
        "schema": {"properties": {"email": {"type": "string"}}},
        "key_properties": ["email"],
    }
    record = {"type": "RECORD", "stream": "customers", "record": {"email": "x@example.org"}}
    stdin = "\n".join([json.dumps(schema), json.dumps(record), bad_line]) + "\n"
    config = {**config_for(emulator), "database": "Customers"}
    result = run_cli(script("target-copernica"), [], config=config, tmp_path=tmp_path, stdin=stdin)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "not a valid Singer stream" in line]
    assert len(errors) == 1
    assert complaint in errors[0]
    assert "Traceback" not in result.stderr
    writes = [r for r in emulator.requests if r.method in ("PUT", "POST") and "/v4/" in r.path]
    assert writes == [], "nothing was written: no STATE covers the records before the bad line"


def test_version_and_about_report_the_distributions_version() -> None:
    shipped = version("tap-copernica")  # the distribution ships both plugins
    out = subprocess.run(
        [script("target-copernica"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"target-copernica v{shipped}," in out
    assert "could not be detected" not in out
    assert about("target-copernica")["version"] == shipped
