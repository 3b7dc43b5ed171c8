"""Helpers for the target tests: a warehouse-shaped destination and an in-process runner."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copernica_emulator import Emulator
from target_copernica.target import TargetCopernica
from tests.conftest import config_for

CUSTOMER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "firstname": {"type": ["string", "null"]},
        "score": {"type": ["integer", "null"]},
        "balance": {"type": ["number", "null"]},
        "birthdate": {"type": ["string", "null"], "format": "date"},
        "last_order_at": {"type": ["string", "null"], "format": "date-time"},
        "interests": {"type": ["array", "object", "null"]},
        "_sdc_deleted_at": {"type": ["string", "null"]},
    },
}
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "customer_email": {"type": "string"},
        "amount": {"type": ["number", "null"]},
        "_sdc_deleted_at": {"type": ["string", "null"]},
    },
}


def add_warehouse(emu: Emulator, name: str = "Warehouse") -> int:
    """An empty database shaped like a warehouse model, with an Orders collection."""
    store = emu.store
    db = store.add_database(name, "Loaded by target-copernica")
    for fname, ftype in (
        ("email", "email"),
        ("firstname", "text"),
        ("score", "integer"),
        ("balance", "float"),
        ("birthdate", "empty_date"),
        ("last_order_at", "empty_datetime"),
    ):
        store.add_field("database", db, fname, ftype, index=fname == "email")
    for interest in ("news", "offers"):
        store.add_interest(db, interest, "mail")
    orders = store.add_collection(db, "Orders")
    store.add_field("collection", orders, "order_id", "text")
    store.add_field("collection", orders, "amount", "float")
    return db


def target_config(emu: Emulator, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        **config_for(emu),
        "database": "Warehouse",
        "rejected_records_path": str(tmp_path / "rejected.jsonl"),
        "insert_journal_path": str(tmp_path / "insert_journal.jsonl"),
        **overrides,
    }


def schema(
    stream: str, properties: dict[str, Any], keys: list[str] | None = None
) -> dict[str, Any]:
    return {"type": "SCHEMA", "stream": stream, "schema": properties, "key_properties": keys or []}


def records(stream: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "RECORD", "stream": stream, "record": row} for row in rows]


def state(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


@dataclass
class TargetRun:
    states: list[dict[str, Any]]
    exit_code: int
    target: TargetCopernica
    rejected: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def summary(self, stream: str) -> dict[str, int]:
        return dict(self.target.summaries.for_stream(stream).counts)


def singer_lines(messages: list[dict[str, Any]]) -> str:
    """Singer messages as the target reads them: one JSON object a line."""
    return "".join(json.dumps(m) + "\n" for m in messages)


def run_target(
    config: dict[str, Any], messages: list[dict[str, Any]], *, catch: bool = False
) -> TargetRun:
    """Feed `messages` to a target in this process; collect STATE output and rejects.

    With `catch`, a failure of the run is returned in `error` instead of raised."""
    logging.getLogger("target_copernica").setLevel(logging.INFO)  # as the CLI does
    target = TargetCopernica(config=config, validate_config=True)
    stdin = io.StringIO(singer_lines(messages))
    out = io.StringIO()
    exit_code = 0
    error: BaseException | None = None
    with redirect_stdout(out):
        try:
            target.listen(stdin)
        except SystemExit as exc:
            exit_code = int(exc.code or 0)
        except Exception as exc:
            if not catch:
                raise
            error, exit_code = exc, 1
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    path = Path(config["rejected_records_path"])
    rejected = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return TargetRun(states, exit_code, target, rejected, error)


def profiles_by_email(emu: Emulator, database: str = "Warehouse") -> dict[str, dict[str, Any]]:
    return {p["fields"]["email"]: p for p in emu.store.profiles(database)}


def copy_structure(emu: Emulator, source: str, name: str) -> int:
    """A new, empty database with the fields, interests and collections of `source`."""
    store = emu.store
    original = store.database(source)
    copy = store.add_database(name, f"Copy of {source}")
    for spec in original.fields:
        store.add_field(
            "database", copy, spec.name, spec.type, spec.value, length=spec.length, index=spec.index
        )
    for interest in original.interests:
        store.add_interest(copy, interest.name, interest.group)
    for collection in store.collections_of(original):
        new = store.add_collection(copy, collection.name)
        for spec in collection.fields:
            store.add_field("collection", new, spec.name, spec.type, spec.value, length=spec.length)
    return copy
