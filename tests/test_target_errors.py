"""Failures a user fixes: one clear line and exit 1 instead of a traceback, or a rejected
record instead of a failed load."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.singer import run_cli, script
from tests.target_helpers import (
    CUSTOMER_SCHEMA,
    add_warehouse,
    profiles_by_email,
    records,
    run_target,
    schema,
    singer_lines,
    state,
    target_config,
)


def _messages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        schema("customers", CUSTOMER_SCHEMA, ["email"]),
        *records("customers", rows),
        state({"bookmarks": {"customers": 1}}),
    ]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"database": "Custmers"}, "`database`"),
        ({"stream_routes": {"cust*": {"database": 999}}}, "`stream_routes.cust*`"),
        ({"stream_routes": {"customers": "Custmers"}}, "`stream_routes.customers`"),
    ],
)
def test_an_unknown_database_ends_the_run_in_one_line_listing_the_databases(
    tmp_path: Path, overrides: dict[str, Any], setting: str
) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        db = add_warehouse(emu)
        config = {**target_config(emu, tmp_path), **overrides}
        rows = [{"email": "a@example.nl"}]
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(_messages(rows)),
        )
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        (line,) = _error_lines(result.stderr)
        assert setting in line
        assert "database_ids" not in line
        assert f"Warehouse (ID {db})" in line
        assert "Customers (ID 1)" in line
        assert result.states == []
        assert [r for r in emu.requests if r.method != "GET"] == [
            r for r in emu.requests if r.path.endswith("/authenticate")
        ], "nothing written"


def test_an_unknown_collection_lists_the_collections(tmp_path: Path) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        add_warehouse(emu)
        route = {"collection": "Ordres", "parent_key_property": "customer_email"}
        config = target_config(emu, tmp_path, stream_routes={"customers": route})
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(_messages([{"email": "a@example.nl"}])),
        )
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        (line,) = _error_lines(result.stderr)
        assert "'Ordres' does not exist" in line
        assert "Orders (ID " in line


def test_records_without_a_key_property_are_rejected_and_the_rest_lands(
    tmp_path: Path,
) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        add_warehouse(emu)
        rows: list[dict[str, Any]] = [
            {"email": f"user{i}@example.nl", "score": i} for i in range(300)
        ]
        for position in (0, 150, 299):
            rows.insert(position, {"firstname": f"keyless {position}"})
        config = target_config(emu, tmp_path, write_path="bulk")
        result = run_target(config, _messages(rows))
        assert result.exit_code == 0
        assert len(profiles_by_email(emu)) == 300
        assert result.summary("customers")["inserted"] == 300
        assert result.summary("customers")["rejected"] == 3
        assert sorted(r["record"]["firstname"] for r in result.rejected) == [
            "keyless 0",
            "keyless 150",
            "keyless 299",
        ]
        assert all("email" not in r["record"] for r in result.rejected)
        assert all("['email']" in r["reason"] for r in result.rejected)
        assert all("key_properties" in r["reason"] for r in result.rejected)
        assert result.states == [{"bookmarks": {"customers": 1}}]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_authentication_service_ends_in_one_line_as_retries_say(
    tmp_path: Path,
) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        add_warehouse(emu)
        config = target_config(
            emu,
            tmp_path,
            auth_url=f"http://127.0.0.1:{_closed_port()}/authenticate",
            max_retries=2,
            retry_initial_wait_ms=100,
        )
        started = time.monotonic()
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(_messages([{"email": "a@example.nl"}])),
            timeout=60,
        )
        assert time.monotonic() - started < 30
        assert result.exit_code == 1
        assert "Traceback" not in result.stderr
        (line,) = _error_lines(result.stderr)
        assert "authentication service" in line
        assert "3 tries" in line
        assert emu.store.profiles("Warehouse") == []
