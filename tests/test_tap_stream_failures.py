"""A stream the API refuses for good ends that stream only: the others finish, exit code 3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, catalog_selecting, run_cli, script, sync

STREAMS = [
    "identity",
    "databases",
    "profiles",
    "views",
    "view_rules",
    "rule_conditions",
    "miniviews",
    "minirules",
    "profile_ids",
    "consumption",
]
#: A child of each kind refused (a miniview's rules under both of their paths, a view's
#: rules), and one database's ID list, which has a partition before it.
REFUSED = {
    "minirules": ("invalid_method", r"/miniview/\d+/(mini)?rules$"),
    "view_rules": ("forbidden403", r"/view/\d+/rules$"),
    "profile_ids": ("notfound404", r"/database/2/profileids$"),
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(seed=7, profiles_per_database=30) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def clean(emu: Emulator) -> SyncResult:
    result = sync(config_for(emu), streams=STREAMS)
    assert result.exit_code == 0
    return result


def refuse(emu: Emulator) -> None:
    emu.faults.clear()
    emu.requests.clear()
    for kind, path in REFUSED.values():
        emu.faults.add(kind, path=path)


def failure_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "failed: Copernica API refused" in line]


def test_refused_streams_end_alone_and_the_others_finish_exactly(
    emu: Emulator, clean: SyncResult, caplog: pytest.LogCaptureFixture
) -> None:
    refuse(emu)
    try:
        result = sync(config_for(emu), streams=STREAMS)
    finally:
        emu.faults.clear()
    assert result.exit_code == 3

    finished = set(STREAMS) - set(REFUSED) - {"rule_conditions"}  # conditions: via view_rules
    for stream in finished:
        assert result.records[stream] == clean.records[stream], stream
    assert "minirules" not in result.records
    assert "view_rules" not in result.records
    # The ID list's first database was read before the refusal: only it, and never the
    # signal that would make a target mark database 2's IDs deleted.
    customers = {r["profile_id"] for r in clean.records["profile_ids"]} & {
        int(p["ID"]) for p in emu.store.profiles("Customers")
    }
    assert {r["profile_id"] for r in result.records["profile_ids"]} == customers
    assert not [m for m in result.messages if m["type"] == "ACTIVATE_VERSION"]

    # A refused child is asked once, not once per parent record.
    paths = [r.path for r in emu.requests]
    assert sum("/rules" in p and p.startswith("/v4/view/") for p in paths) == 1
    assert sum(p.startswith("/v4/miniview/") for p in paths) == 2  # rules, then minirules

    # The final STATE holds every bookmark of the streams that finished.
    bookmarks = result.final_state["bookmarks"]
    assert bookmarks["consumption"] == clean.final_state["bookmarks"]["consumption"]
    partitions = bookmarks["profiles"]["partitions"]
    assert [p["context"] for p in partitions] == [{"database_id": d} for d in (1, 2, 3)]
    assert all(p["replication_key_value"] for p in partitions)

    # One line per failed stream at the end, with the API's message and the path.
    lines = failure_lines("\n".join(caplog.messages))
    assert len(lines) == 3
    assert any(
        line.startswith("Stream 'minirules' failed")
        and "GET /v4/miniview/" in line
        and "/minirules with HTTP 400: Invalid method" in line
        for line in lines
    )
    assert any(
        line.startswith("Stream 'view_rules' failed") and "HTTP 403" in line for line in lines
    )
    assert any(
        line.startswith("Stream 'profile_ids' failed")
        and "GET /v4/database/2/profileids with HTTP 404" in line
        for line in lines
    )


def test_fail_fast_stops_the_run_at_the_first_refusal(emu: Emulator) -> None:
    refuse(emu)
    try:
        result = sync(config_for(emu, fail_fast=True), streams=STREAMS)
    finally:
        emu.faults.clear()
    assert result.exit_code == 1
    # Streams run in name order: the views (children of the databases) before these.
    assert "identity" not in result.records
    assert "profile_ids" not in result.records


def test_the_cli_exits_3_and_lists_the_failed_streams(emu: Emulator, tmp_path: Path) -> None:
    config = config_for(emu)
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog_selecting(config, ["identity", "view_rules"])))
    emu.faults.clear()
    emu.faults.add("forbidden403", path=r"/view/\d+/rules$")
    try:
        result = run_cli(
            script("tap-copernica"),
            ["--catalog", str(catalog_file)],
            config=config,
            tmp_path=tmp_path,
        )
    finally:
        emu.faults.clear()
    assert result.exit_code == 3
    assert len(result.records["identity"]) == 1
    lines = failure_lines(result.stderr)
    assert len(lines) == 1
    assert "Stream 'view_rules' failed: Copernica API refused GET /v4/view/" in lines[0]
    assert "1 selected stream(s) failed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("setting", [{}, {"fail_fast": True}], ids=["default", "fail_fast"])
def test_fatal_errors_still_stop_everything(
    emu: Emulator, setting: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.clear()
    emu.faults.add("html503", path=r"/view/\d+/rules$")
    try:
        result = sync(config_for(emu, max_retries=1, **setting), streams=STREAMS)
    finally:
        emu.faults.clear()
    assert result.exit_code == 1
    assert "Gave up on GET /v4/view/" in caplog.text
    assert "identity" not in result.records
