"""How an API row becomes a record (`RecordShape`): kept free of the SDK, since the page
helper processes (`page_helpers.py`) build profile records with it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.payloads import to_int
from copernica_api.timeutil import api_to_iso, api_to_utc


@dataclass(frozen=True)
class RecordShape:
    """How an API row becomes a record: which values are IDs, timestamps, or dropped."""

    integers: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()

    def apply(self, row: dict[str, Any], tz: ZoneInfo, *, utc: bool = False) -> dict[str, Any]:
        """Convert `row` in place (each value once) and return it; timestamps are the
        account's local times (`tz`), written with its offset or, with `utc`, in UTC."""
        if "ID" not in row and "id" in row:  # identity documents `ID`, its example has `id`
            row["ID"] = row.pop("id")
        for key in self.drop:
            row.pop(key, None)
        for key in self.integers:
            if key in row:
                row[key] = to_int(row[key])
        convert = api_to_utc if utc else api_to_iso
        for key in self.timestamps:
            if key in row:
                row[key] = convert(row[key], tz)
        return row
