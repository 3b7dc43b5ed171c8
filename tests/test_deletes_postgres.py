"""Deletes reach the warehouse: target-postgres marks a removed profile as deleted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.singer import SyncResult, catalog_selecting, run_cli, script
from tests.warehouse import PG_URL, fresh_schema, query, tap_to_postgres

pytestmark = pytest.mark.postgres


def test_a_deleted_profile_is_marked_deleted_on_the_next_run(
    emulator: Emulator, config: dict[str, Any], tmp_path: Path
) -> None:
    streams = ["profiles", "profile_ids", "subprofile_ids"]
    customers = emulator.store.database_id("Customers")
    with fresh_schema() as schema:
        _first, state = tap_to_postgres(config, schema, tmp_path, streams=streams)
        live = {
            int(p["ID"])
            for db in ("Customers", "Newsletter", "Legacy")
            for p in emulator.store.profiles(db)
        }
        assert query(f'SELECT count(*) FROM "{schema}".profiles')[0][0] == len(live)

        victim = int(emulator.store.profiles("Customers")[10]["ID"])
        victim_subprofiles = {
            int(s["ID"])
            for c in emulator.store.collections_of(emulator.store.database(customers))
            for s in emulator.store.subprofiles(c.id)
            if int(s["profile"]) == victim
        }
        emulator.store.delete_profile(victim)

        second, _ = tap_to_postgres(config, schema, tmp_path, streams=streams, state=state)
        assert second.records.get("profiles", []) == [], "incremental: nothing changed"

        deleted = {
            row[0]
            for row in query(
                f'SELECT profile_id FROM "{schema}".profile_ids WHERE _sdc_deleted_at IS NOT NULL'
            )
        }
        assert deleted == {victim}
        kept = query(f'SELECT count(*) FROM "{schema}".profile_ids WHERE _sdc_deleted_at IS NULL')[
            0
        ][0]
        assert kept == len(live) - 1
        gone_subprofiles = {
            row[0]
            for row in query(
                f'SELECT subprofile_id FROM "{schema}".subprofile_ids '
                "WHERE _sdc_deleted_at IS NOT NULL"
            )
        }
        assert gone_subprofiles == victim_subprofiles


def tap_output(config: dict[str, Any], streams: list[str], tmp_path: Path) -> SyncResult:
    """A complete run of the tap CLI, not loaded anywhere yet."""
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog_selecting(config, streams)))
    tap = run_cli(
        script("tap-copernica"), ["--catalog", str(catalog_file)], config=config, tmp_path=tmp_path
    )
    assert tap.exit_code == 0, tap.stderr[-2000:]
    return tap


def load_into_postgres(messages: list[dict[str, Any]], schema: str, tmp_path: Path) -> None:
    """Pipe tap output (possibly cut short) into target-postgres."""
    raw = "\n".join(json.dumps(m) for m in messages)
    config = {"sqlalchemy_url": PG_URL, "default_target_schema": schema}
    target = run_cli(
        script("target-postgres"), [], config=config, tmp_path=tmp_path, stdin=raw, timeout=300
    )
    assert target.exit_code == 0, target.stderr[-3000:]


def marked_deleted(schema: str) -> set[int]:
    rows = query(f'SELECT profile_id FROM "{schema}".profile_ids WHERE _sdc_deleted_at IS NOT NULL')
    return {row[0] for row in rows}


def test_a_run_cut_off_mid_list_marks_no_live_profile_deleted(
    emulator: Emulator, config: dict[str, Any], tmp_path: Path
) -> None:
    streams = ["profile_ids"]
    store = emulator.store
    live = {
        int(p["ID"]) for db in ("Customers", "Newsletter", "Legacy") for p in store.profiles(db)
    }
    with fresh_schema() as schema:
        first, _ = tap_to_postgres(config, schema, tmp_path, streams=streams)
        # The signal comes once, after the complete list (every database), with its version.
        kinds = [m["type"] for m in first.messages if m["type"] in ("RECORD", "ACTIVATE_VERSION")]
        assert kinds == ["RECORD"] * len(live) + ["ACTIVATE_VERSION"]
        version = next(m["version"] for m in first.messages if m["type"] == "ACTIVATE_VERSION")
        assert {m["version"] for m in first.messages if m["type"] == "RECORD"} == {version}
        assert set(first.ids("profile_ids")) == live
        assert marked_deleted(schema) == set()

        time.sleep(1.1)  # the version is the run's start in seconds: the next one is newer
        second = tap_output(config, streams, tmp_path)
        # Cut off after 40 of the IDs: no ACTIVATE_VERSION reaches the target.
        records = [i for i, m in enumerate(second.messages) if m["type"] == "RECORD"]
        cut = second.messages[: records[39] + 1]
        load_into_postgres(cut, schema, tmp_path)
        assert query(f'SELECT count(*) FROM "{schema}".profile_ids')[0][0] == len(live)
        assert marked_deleted(schema) == set(), "a cut-off run marks no live profile deleted"

        victim = int(store.profiles("Newsletter")[5]["ID"])
        store.delete_profile(victim)
        time.sleep(1.1)
        third = tap_output(config, streams, tmp_path)
        load_into_postgres(third.messages, schema, tmp_path)
        assert marked_deleted(schema) == {victim}
