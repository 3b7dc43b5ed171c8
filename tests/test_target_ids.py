"""IDs and names as users write them in target settings: numbers or strings, and the
documented short form of a route (`stream_routes: {stream: Database}`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.singer import run_cli, script
from tests.target_helpers import (
    CUSTOMER_SCHEMA,
    ORDER_SCHEMA,
    add_warehouse,
    records,
    schema,
    singer_lines,
    state,
    target_config,
)


def _customers(stream: str = "customers") -> list[dict[str, Any]]:
    return [
        schema(stream, CUSTOMER_SCHEMA, ["email"]),
        *records(stream, [{"email": "a@example.nl", "firstname": "Anna"}]),
        state({"bookmarks": {stream: 1}}),
    ]


@pytest.mark.parametrize("form", ["database_as_number", "route_as_name", "route_as_number"])
def test_cli_takes_database_ids_as_numbers_and_routes_as_a_database(
    tmp_path: Path, form: str
) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        db = add_warehouse(emu)
        config = target_config(emu, tmp_path)
        del config["database"]
        if form == "database_as_number":
            config["database"] = db
        elif form == "route_as_name":
            config["stream_routes"] = {"customers": "Warehouse"}  # as the README shows
        else:
            config["stream_routes"] = {"cust*": db}
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(_customers()),
        )
        assert result.exit_code == 0, result.stderr[-2000:]
        assert "is not of type" not in result.stderr
        assert result.states == [{"bookmarks": {"customers": 1}}]
        profiles = emu.store.profiles("Warehouse")
        assert [p["fields"]["firstname"] for p in profiles] == ["Anna"]


def test_cli_takes_route_database_and_collection_ids_as_numbers(tmp_path: Path) -> None:
    with Emulator(seed=3, profiles_per_database=2) as emu:
        db = add_warehouse(emu)
        database = emu.store.database(db)
        orders = next(c.id for c in emu.store.collections_of(database) if c.name == "Orders")
        config = target_config(emu, tmp_path)
        config["stream_routes"] = {
            "customers": {"database": db},
            "orders": {
                "database": db,
                "collection": orders,
                "parent_key_property": "customer_email",
                "key_fields": ["order_id"],
            },
        }
        messages = [
            *_customers(),
            schema("orders", ORDER_SCHEMA, ["order_id"]),
            *records("orders", [{"order_id": "o1", "customer_email": "a@example.nl"}]),
            state({"bookmarks": {"orders": 1}}),
        ]
        result = run_cli(
            script("target-copernica"),
            [],
            config=config,
            tmp_path=tmp_path,
            stdin=singer_lines(messages),
        )
        assert result.exit_code == 0, result.stderr[-2000:]
        assert "Stream 'orders': inserted=1" in result.stderr
