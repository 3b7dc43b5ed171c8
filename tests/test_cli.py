"""The command line as a scheduler runs it: bad config, clear failures, no secret in any output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import run_cli, script

TAP = script("tap-copernica")


def data_requests(emu: Emulator) -> list[str]:
    """API requests other than the preflight's account lookup."""
    return [r.path for r in emu.requests if r.path.startswith("/v4/") and r.path != "/v4/databases"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"api_token": None}, "'api_token' is a required property"),
        ({"page_size": 5000}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"timezone": "Mars/Olympus"}, "`timezone`: unknown time zone 'Mars/Olympus'"),
        ({"start_date": "last tuesday"}, "start_date"),
        ({"database_ids": ["Customers", "Nope"]}, "`database_ids`: no database 'Nope'"),
    ],
)
def test_bad_config_fails_before_any_data_request_and_names_the_setting(
    emulator: Emulator, tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    config = {k: v for k, v in {**config_for(emulator), **change}.items() if v is not None}
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.records == {}
    assert data_requests(emulator) == []


def test_unknown_database_error_lists_the_databases_that_exist(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator, database_ids=["Nope"])
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert "Available: Customers (1), Newsletter (2), Legacy (3)" in result.stderr


def test_a_refused_token_ends_the_run_with_one_clear_line(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator, api_token="not-the-token")
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "refused the API token" in line]
    assert len(errors) == 1
    assert "api_token" in errors[0]
    assert "Access tokens" in errors[0]
    assert "Traceback" not in result.stderr
    assert "not-the-token" not in result.stderr + json.dumps(result.messages)
    assert data_requests(emulator) == []


def test_a_permanent_api_error_names_the_path_and_the_api_message(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator, api_url=emulator.api_url.replace("/v4", "/v9"))
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    assert "Copernica API refused GET /v9/" in result.stderr
    assert "Invalid method" in result.stderr
    assert "Traceback" not in result.stderr


def test_exhausted_retries_fail_clearly_and_leave_a_resumable_state(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.faults.add("html503", path=r"/database/2/profiles$")
    config = config_for(emulator, max_retries=2)
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code == 1
    assert "Gave up on GET /v4/database/2/profiles after 3 attempts" in result.stderr
    assert "HTTP 503" in result.stderr
    retries = [line for line in result.stderr.splitlines() if "Retrying GET" in line]
    # Each request that failed was tried three times (the scan may send two at once).
    second = [line for line in retries if "(attempt 2 of 3)" in line]
    third = [line for line in retries if "(attempt 3 of 3)" in line]
    assert second
    assert len(second) == len(third) == len(retries) / 2
    assert all("WARNING" in line for line in retries)
    assert "Traceback" not in result.stderr
    # Database 1 finished before the failure: its bookmark is in the last state.
    partitions = result.final_state["bookmarks"]["profiles"]["partitions"]
    done = [p for p in partitions if p["context"] == {"database_id": 1}]
    assert done
    assert done[0].get("replication_key_value")
    # The API is back: a rerun from that state finishes the job, nothing lost or doubled
    # beyond the profiles a resumed read sends again.
    emulator.faults.clear()
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(result.final_state))
    rerun = run_cli(TAP, ["--state", str(state_file)], config=config, tmp_path=tmp_path)
    assert rerun.exit_code == 0
    store = emulator.store
    everything = {int(p["ID"]) for db in store.databases for p in store.profiles(db)}
    emitted = [int(r["ID"]) for run in (result, rerun) for r in run.records.get("profiles", [])]
    assert set(emitted) == everything


def test_no_token_or_jwt_reaches_any_output_even_at_debug_level(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.faults.add("expire_jwt", path=r"/profiles$", times=1)  # a renewal too
    emulator.faults.add("html503", path=r"/subprofiles$", times=1)
    config = config_for(emulator)
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path, env={"LOGLEVEL": "DEBUG"})
    assert result.exit_code == 0
    assert "DEBUG" in result.stderr, "the run really logged at DEBUG"
    assert emulator.tokens_issued == 2
    everything = result.stderr + json.dumps(result.messages)
    assert emulator.api_token not in everything
    # Every JWT starts with a base64 JSON header: '{"' encodes to 'eyJ'.
    assert "eyJ" not in everything


def test_progress_lines_and_a_summary_a_person_can_read(emulator: Emulator, tmp_path: Path) -> None:
    emulator.faults.add("html503", path=r"/database/1/profiles$", times=1)
    config = config_for(emulator, progress_interval=0, page_size=50)
    result = run_cli(TAP, [], config=config, tmp_path=tmp_path)
    assert result.exit_code == 0
    progress = [line for line in result.stderr.splitlines() if "Progress: profiles" in line]
    assert progress
    assert "records/s" in progress[-1]
    emitted = sum(len(records) for records in result.records.values())
    summary = [line for line in result.stderr.splitlines() if "Run summary:" in line]
    assert len(summary) == 1
    assert f"Run summary: {emitted:,} records" in summary[0]
    assert "1 retries" in summary[0]
    profiles = len(result.records["profiles"])
    assert any(f"profiles: {profiles:,} records" in line for line in result.stderr.splitlines())
