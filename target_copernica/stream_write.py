"""What the two write paths (`api_writer`, `bulk_import`) share: where one stream writes,
what it reports to, and how a write answer names what it created."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from copernica_api.http import CopernicaSession
from target_copernica.destination import KeyIndex, Structure
from target_copernica.journal import InsertJournal
from target_copernica.records import Item
from target_copernica.summary import StreamSummary


def created_id(response: requests.Response, kind: str) -> tuple[bool, int]:
    """(created, new ID or 0) from a write answer, in every documented and observed form."""
    header = response.headers.get("X-Created", "").strip()
    if header.isdigit():
        return True, int(header)
    location = response.headers.get("X-location") or response.headers.get("Location") or ""
    segments = [s for s in urlsplit(location).path.split("/") if s]
    new_id = (
        int(segments[-1])
        if len(segments) >= 2 and segments[-2] == kind and segments[-1].isdigit()
        else 0
    )
    if response.status_code == 201:
        return True, new_id
    if response.status_code == 303 and new_id:
        # v2 answers every PUT with 303; it points at the new entity only after a create.
        request_path = urlsplit(response.request.url or "").path if response.request else ""
        return f"/{kind}/{new_id}" not in request_path, new_id
    return False, 0


@dataclass
class StreamDestination:
    """Where a stream writes, with what it knows about it."""

    structure: Structure  # the database (profiles) or the collection (subprofiles)
    index: KeyIndex  # keys of the database's profiles (the parents, for subprofiles)
    key_fields: tuple[str, ...]

    @property
    def is_collection(self) -> bool:
        return self.structure.kind == "collection"


@dataclass(frozen=True)
class StreamWrite:
    """What both write paths (`api_writer`, `bulk_import`) work with for one stream."""

    session: CopernicaSession
    destination: StreamDestination
    load_method: str
    summary: StreamSummary
    reject: Callable[[Item, str], None]  # reports a record that cannot be written
    journal: InsertJournal | None = None  # append-only runs only
