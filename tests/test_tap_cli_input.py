"""What a person writes in a config, state or catalog file, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import catalog_selecting, run_cli, script

TAP = script("tap-copernica")


def catalog_file(config: dict[str, object], streams: list[str], tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_selecting(config, streams)))
    return path


def test_ids_written_as_numbers_are_accepted(emulator: Emulator, tmp_path: Path) -> None:
    newsletter = emulator.store.database_id("Newsletter")
    # As meltano.yml or a JSON config writes them: numbers, mixed with names and strings.
    config = config_for(emulator, database_ids=[newsletter, "customers"], webhook_ids=[3, "1"])
    catalog = catalog_file(config, ["databases", "webhooks"], tmp_path)
    result = run_cli(TAP, ["--catalog", str(catalog)], config=config, tmp_path=tmp_path)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert {d["name"] for d in result.records["databases"]} == {"Customers", "Newsletter"}
    assert [w["ID"] for w in result.records["webhooks"]] == [3, 1]


@pytest.mark.parametrize("setting", ["emailing_ids", "destination_ids"])
def test_a_bare_number_where_a_product_is_needed_is_refused(
    emulator: Emulator, tmp_path: Path, setting: str
) -> None:
    config = config_for(emulator, **{setting: [123]})
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    assert setting in result.stderr
    assert "Traceback" not in result.stderr


def log_lines(stderr: str, level: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"| {level}" in line]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"bookmarks": {', "is not valid JSON (Expecting property name"),
        ("bookmarks: {}", "is not valid JSON (Expecting value at line 1, column 1)"),
        ("[1, 2]", "is not a JSON object"),
    ],
)
def test_a_state_file_that_is_not_json_is_one_line_before_any_request(
    emulator: Emulator, tmp_path: Path, text: str, problem: str
) -> None:
    state_file = tmp_path / "s.json"
    state_file.write_text(text)
    result = run_cli(
        TAP, ["--state", str(state_file)], config=config_for(emulator), tmp_path=tmp_path
    )
    assert result.exit_code == 1
    errors = log_lines(result.stderr, "ERROR")
    assert len(errors) == 1
    assert f"The state file {state_file} {problem}" in errors[0]
    assert "--state" in errors[0]
    assert "meltano state clear" in errors[0]
    assert "Traceback" not in result.stderr
    assert emulator.requests == []


def test_a_refused_token_is_not_called_a_config_validation_failure(
    emulator: Emulator, tmp_path: Path
) -> None:
    result = run_cli(TAP, [], config=config_for(emulator, api_token="nope"), tmp_path=tmp_path)
    assert result.exit_code == 1
    errors = log_lines(result.stderr, "ERROR")
    assert len(errors) == 1
    assert "refused the API token" in errors[0]
    assert "Config validation failed" not in result.stderr


def test_a_bad_state_or_catalog_entry_is_not_called_a_config_validation_failure(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator)
    catalog = catalog_selecting(config, ["profiles", "profiles_customers"])
    assert catalog is not None
    renamed = next(s for s in catalog["streams"] if s["tap_stream_id"] == "profiles_customers")
    renamed["tap_stream_id"] = renamed["stream"] = "profiles_old_crm"
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    partition = {"context": {"database_id": 1}, "scan": {"after_id": "12"}}
    state = {"bookmarks": {"profiles": {"partitions": [partition]}}}
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(state))
    args = ["--catalog", str(catalog_path), "--state", str(state_path)]
    result = run_cli(TAP, args, config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    errors = log_lines(result.stderr, "ERROR")
    assert len(errors) == 2
    assert "The catalog selects streams this account does not have" in errors[0]
    assert "state of stream 'profiles'" in errors[1]
    assert "Config validation failed" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_entry_of_the_wrong_shape_gets_one_line_not_a_traceback(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator)
    catalog = catalog_file(config, ["profiles"], tmp_path)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps({"bookmarks": {"profiles": {"partitions": "all"}}}))
    args = ["--catalog", str(catalog), "--state", str(state_path)]
    result = run_cli(TAP, args, config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    (error,) = log_lines(result.stderr, "ERROR")
    assert "state of stream 'profiles': partitions must be a list of objects" in error
    assert "Fix or remove that entry" in error
    assert "Traceback" not in result.stderr


def test_the_config_heading_stays_for_config_errors(emulator: Emulator, tmp_path: Path) -> None:
    result = run_cli(TAP, [], config=config_for(emulator, page_size=0), tmp_path=tmp_path)
    assert result.exit_code == 1
    assert "Config validation failed" in result.stderr


def test_each_retry_is_logged_once(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.add("html503", path=r"/identity$", times=1)
    config = config_for(emulator)
    catalog = catalog_file(config, ["identity"], tmp_path)
    result = run_cli(TAP, ["--catalog", str(catalog)], config=config, tmp_path=tmp_path)
    assert result.exit_code == 0
    about_the_retry = [
        line
        for line in result.stderr.splitlines()
        if "identity" in line and ("Backing off" in line or "Retrying" in line)
    ]
    assert len(about_the_retry) == 1
    assert "WARNING" in about_the_retry[0]
    assert "Retrying GET /v4/identity (attempt 2 of 7)" in about_the_retry[0]
