"""Deletes reach the warehouse: target-postgres marks a removed profile as deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.emulator import Emulator
from tests.warehouse import fresh_schema, query, tap_to_postgres

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
