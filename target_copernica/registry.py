"""The run's destinations: every read of and change to their structure goes through here.

Databases and collections are read once per run, and so are the keys of a database's
profiles (`KeyIndex`). With `create_missing_fields` the fields and interests a stream needs
are created here (in a dry run only logged). Sinks share one registry, so two streams
writing to one database share its structure and its key index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from copernica_api.errors import CopernicaAPIError
from copernica_api.http import CopernicaSession
from target_copernica.destination import (
    KeyIndex,
    Structure,
    load_collection,
    load_database,
    matching_ids,
    profile_rows,
)
from target_copernica.journal import Lookup


class DestinationRegistry:
    """Databases, collections and key indexes of one run (thread-safe)."""

    def __init__(self, session: CopernicaSession, *, dry_run: bool, logger: logging.Logger) -> None:
        self.session = session
        self.dry_run = dry_run
        self.logger = logger
        self._lock = threading.RLock()
        self._databases: dict[str, Structure] = {}
        self._collections: dict[tuple[str, str], Structure] = {}
        self._indexes: dict[tuple[str, tuple[str, ...]], KeyIndex] = {}
        self._loaded: set[int] = set()

    def database(self, ref: str, named_by: str = "") -> Structure:
        """A database by ID or name (names match case-insensitively); `named_by` says which
        setting named it, for the message when it does not exist."""
        with self._lock:
            if ref.casefold() not in self._databases:
                self._databases[ref.casefold()] = load_database(self.session, ref, named_by)
            return self._databases[ref.casefold()]

    def collection(self, database: Structure, ref: str) -> Structure:
        """A collection of `database` by ID or name."""
        with self._lock:
            key = (database.id, ref.casefold())
            if key not in self._collections:
                self._collections[key] = load_collection(self.session, database, ref)
            return self._collections[key]

    def key_index(self, database: Structure, key_fields: tuple[str, ...]) -> KeyIndex:
        """The index of a database's profiles by these key fields (its keys not read yet)."""
        with self._lock:
            key = (database.id, tuple(k.casefold() for k in key_fields))
            if key not in self._indexes:
                self._indexes[key] = KeyIndex(database, key_fields)
            return self._indexes[key]

    def ensure_index(self, index: KeyIndex) -> None:
        """Read the index's keys at its first use (after parents have been written)."""
        with self._lock:
            if id(index) in self._loaded:
                return
            index.load(self.session)
            self._loaded.add(id(index))

    def create_fields(self, structure: Structure, wanted: dict[str, str]) -> None:
        """Create missing fields (`create_missing_fields`); in a dry run only pretend."""
        with self._lock:
            for name, kind in wanted.items():
                if structure.field_name(name):
                    continue
                if self.dry_run:
                    self.logger.info("Dry run: would create %s field '%s'.", kind, name)
                else:
                    self.session.request(
                        "POST",
                        f"{structure.kind}/{structure.id}/fields",
                        body={"name": name, "type": kind},
                    )
                    self.logger.info(
                        "Created %s field '%s' in %s '%s'.",
                        kind,
                        name,
                        structure.kind,
                        structure.name,
                    )
                structure.fields[name.casefold()] = kind
                structure.names[name.casefold()] = name

    def create_interest(self, database: Structure, name: str) -> str | None:
        """Create a missing interest (`create_missing_fields`); returns its name."""
        with self._lock:
            known = database.interest_name(name)
            if known is not None:
                return known
            if not name.strip():
                return None
            if not self.dry_run:
                self.session.request(
                    "POST", f"database/{database.id}/interests", body={"name": name}
                )
            self.logger.info("Created interest '%s' in database '%s'.", name, database.name)
            database.interests[name.casefold()] = name
            return name

    def count_matches(self, lookup: Lookup) -> int:
        """How many profiles (or subprofiles) a list path returns for a selector now."""
        return len(matching_ids(self.session, *lookup))

    # -- what the mirror reads and changes (`mirror.py`) ----------------------------------
    def profiles(
        self, database: Structure, conditions: Sequence[tuple[str, str]] = ()
    ) -> Iterator[dict[str, Any]]:
        """The live profiles of a database matching a selector, read page by page."""
        return profile_rows(self.session, database, conditions)

    def delete_profile(self, profile_id: int) -> None:
        """Delete one profile (one already removed counts as done)."""
        try:
            self.session.request("DELETE", f"profile/{profile_id}")
        except CopernicaAPIError as exc:
            if "already been removed" not in exc.api_message.lower():
                raise

    def update_profile(self, profile_id: int, body: dict[str, Any]) -> None:
        """Change one profile's fields or interests (`PUT profile/{id}`)."""
        self.session.request("PUT", f"profile/{profile_id}", body=body)
