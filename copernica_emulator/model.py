"""Plain data classes for the emulated account: databases, collections, (sub)profiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class ApiError(Exception):
    """An error the API reports as HTTP 400 with ``{"error": {"message": ...}}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class FieldDef:
    """A database or collection field definition, as `rest-get-database-fields.md` lists it."""

    id: int
    name: str
    type: str
    value: str = ""
    displayed: bool = True
    ordered: bool = False
    length: int = 255
    textlines: int = 1
    hidden: bool = False
    index: bool = False


@dataclass
class Interest:
    id: int
    name: str
    group: str


@dataclass
class Collection:
    id: int
    name: str
    database_id: int
    fields: list[FieldDef] = field(default_factory=list)
    live_ids: list[int] = field(default_factory=list)  # non-removed subprofile IDs, ascending


@dataclass
class Database:
    id: int
    name: str
    description: str
    created: str
    archived: bool = False
    fields: list[FieldDef] = field(default_factory=list)
    interests: list[Interest] = field(default_factory=list)
    collection_ids: list[int] = field(default_factory=list)
    live_ids: list[int] = field(default_factory=list)  # non-removed profile IDs, ascending


@dataclass
class Profile:
    id: int
    database_id: int
    fields: dict[str, str]
    interests: list[str]
    secret: str
    created: str
    modified: str
    removed: str | None = None
    subprofile_ids: list[int] = field(default_factory=list)


@dataclass
class Subprofile:
    id: int
    profile_id: int
    collection_id: int
    fields: dict[str, str]
    secret: str
    created: str
    modified: str
    removed: str | None = None


def find_field(fields: Sequence[FieldDef], name: str) -> FieldDef | None:
    """Look a field up by name, case-insensitively (as the API does)."""
    wanted = name.casefold()
    for candidate in fields:
        if candidate.name.casefold() == wanted:
            return candidate
    return None
