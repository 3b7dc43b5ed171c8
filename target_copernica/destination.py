"""What the target needs to know about a destination before its first write.

- `Structure`: a database's (or collection's) fields and interests, read once per run; key
  fields are checked against them, because the API silently ignores a selector condition on
  an unknown field and would then update every profile.
- `KeyIndex`: the key values of the database's profiles and their IDs, read once per run.
  It finds profiles for deletes and subprofile parents, says whether an upsert will create
  or update, reports keys that match several profiles, and tells whether a retried insert
  already landed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from copernica_api.errors import CopernicaAPIError
from copernica_api.http import CopernicaSession
from copernica_api.payloads import dict_rows, payload_of

logger = logging.getLogger("target_copernica.destination")
PAGE = 1000
_NUMERIC = frozenset({"integer", "float", "foreign_key"})
_EXACT = frozenset({"select", "date", "empty_date", "datetime", "empty_datetime"})
_LIMITED = frozenset({"text", "email", "phone", "phone_fax", "phone_gsm"})  # `length` applies

Key = tuple[str, ...]


def read_all(session: CopernicaSession, path: str) -> list[dict[str, Any]]:
    """Every row of a small list resource (fields, interests, collections)."""
    rows: list[dict[str, Any]] = []
    while True:
        page = dict_rows(
            payload_of(
                session.request("GET", path, params={"start": str(len(rows)), "limit": str(PAGE)})
            )
        )
        rows.extend(page)
        if len(page) < PAGE:
            return rows


@dataclass
class Structure:
    """Fields (name -> type) and interests of a database or collection."""

    kind: str  # "database" or "collection"
    id: str
    name: str
    fields: dict[str, str]  # casefolded name -> type
    names: dict[str, str]  # casefolded name -> name as defined
    interests: dict[str, str] = field(default_factory=dict)  # casefolded -> name
    lengths: dict[str, int] = field(default_factory=dict)  # casefolded -> max characters
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # select fields

    def max_length(self, name: str) -> int | None:
        """How many characters a field holds, for the types whose values are cut there."""
        if self.field_type(name) not in _LIMITED:
            return None
        return self.lengths.get(name.casefold()) or None

    def choices_of(self, name: str) -> tuple[str, ...] | None:
        """The values a select field takes (Copernica stores any other value as "")."""
        if self.field_type(name) != "select":
            return None
        return self.choices.get(name.casefold(), ())

    def field_name(self, name: str) -> str | None:
        """The field's defined name (names match case-insensitively, like the API)."""
        return self.names.get(name.casefold())

    def field_type(self, name: str) -> str:
        return self.fields.get(name.casefold(), "text")

    def interest_name(self, name: str) -> str | None:
        return self.interests.get(name.casefold())

    def require_key_fields(self, key_fields: Sequence[str], stream: str) -> None:
        """Refuse to start when a key field does not exist (it would match everything)."""
        missing = [k for k in key_fields if self.field_name(k) is None]
        if missing:
            known = ", ".join(sorted(self.names.values())) or "(none)"
            msg = (
                f"Stream '{stream}': key field(s) {missing} do not exist in {self.kind} "
                f"'{self.name}' (fields: {known}). Copernica ignores a selector on an unknown "
                f"field and would update every profile, so nothing was written. Fix "
                f"`key_fields` (or the route's `key_fields`)."
            )
            raise ConfigValidationError(msg, errors=[msg])

    def normalize(self, name: str, value: str) -> str:
        """A key value as the API compares it: numbers numerically, text case-insensitively."""
        return self.normalizer(name)(value)

    def normalizer(self, name: str) -> Callable[[str], str]:
        """`normalize` for one field, looked up once (it runs for every record's key)."""
        kind = self.field_type(name)
        if kind in _NUMERIC:
            return _number_key
        if kind in _EXACT:
            return str.strip
        # As Copernica's selectors compare text: case-insensitively, whitespace before the
        # value included (a key is written without the whitespace after it).
        return str.casefold


def _number_key(value: str) -> str:
    try:
        return repr(float(value.strip() or 0))
    except ValueError:
        return "0"


def select_choices(spec: Any) -> tuple[str, ...]:
    """A select field's choices: the lines of its definition's `value` (CRLF or LF
    separated), without trailing spaces, empty lines left out (contract g.1, g.2)."""
    lines = str(spec or "").replace("\r\n", "\n").split("\n")
    return tuple(line.rstrip() for line in lines if line.strip())


@dataclass
class _Definitions:
    types: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def structure(self, kind: str, id_: str, name: str, interests: dict[str, str]) -> Structure:
        return Structure(
            kind, id_, name, self.types, self.names, interests, self.lengths, self.choices
        )


def _definitions(rows: Iterable[Mapping[str, Any]]) -> _Definitions:
    found = _Definitions()
    for row in rows:
        name = str(row.get("name", ""))
        if name:
            kind = str(row.get("type", "text")).lower()
            found.types[name.casefold()] = kind
            found.names[name.casefold()] = name
            length = str(row.get("length") or "").strip()
            if length.isdigit() and int(length) > 0:
                found.lengths[name.casefold()] = int(length)
            if kind == "select":
                found.choices[name.casefold()] = select_choices(row.get("value"))
    return found


def load_database(session: CopernicaSession, ref: str, named_by: str = "") -> Structure:
    """A database's fields and interests (the database may be named by ID or name).

    One that does not exist ends the run before anything is written, with a message naming
    the setting (`named_by`) and listing the account's databases."""
    try:
        info = payload_of(session.request("GET", f"database/{ref}"))
    except CopernicaAPIError:
        databases = read_all(session, "databases")
        if any(_is(row, ref) for row in databases):
            raise  # it exists: the refusal is about something else
        known = ", ".join(_listed(row) for row in databases) or "(none)"
        msg = (
            f"{named_by or 'The target'} names database {ref!r}, which does not exist in "
            f"this account. Its databases: {known}. Nothing was written; set the database's "
            f"name or ID."
        )
        raise ConfigValidationError(msg, errors=[msg]) from None
    database_id = str(info.get("ID") or info.get("id") or ref)
    definitions = _definitions(read_all(session, f"database/{database_id}/fields"))
    interests = {
        str(row.get("name", "")).casefold(): str(row.get("name", ""))
        for row in read_all(session, f"database/{database_id}/interests")
    }
    name = str(info.get("name", ref))
    return definitions.structure("database", database_id, name, interests)


def load_collection(session: CopernicaSession, database: Structure, ref: str) -> Structure:
    """A collection of `database`, by ID or name."""
    collections = read_all(session, f"database/{database.id}/collections")
    for row in collections:
        if _is(row, ref):
            collection_id = str(row.get("ID") or row.get("id"))
            definitions = _definitions(read_all(session, f"collection/{collection_id}/fields"))
            name = str(row.get("name", ref))
            return definitions.structure("collection", collection_id, name, {})
    known = ", ".join(_listed(row) for row in collections) or "(none)"
    msg = (
        f"Collection {ref!r} does not exist in database '{database.name}'. Its collections: "
        f"{known}. Nothing was written."
    )
    raise ConfigValidationError(msg, errors=[msg])


def _is(row: Mapping[str, Any], ref: str) -> bool:
    """Whether a database or collection row is the one `ref` names (ID, or name in any case)."""
    return (
        str(row.get("ID") or row.get("id")) == ref
        or str(row.get("name", "")).casefold() == ref.casefold()
    )


def _listed(row: Mapping[str, Any]) -> str:
    return f"{row.get('name', '?')} (ID {row.get('ID') or row.get('id')})"


def row_id(row: Mapping[str, Any]) -> int:
    """A listed (sub)profile's ID."""
    return int(row.get("ID") or row.get("id") or 0)


def row_values(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, str]:
    """Some field values of a listed profile, "" for those it lacks."""
    raw = row.get("fields")
    fields: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    return {name: str(fields.get(name, "")) for name in names}


def profile_rows(
    session: CopernicaSession,
    structure: Structure,
    conditions: Sequence[tuple[str, str]] = (),
) -> Iterator[dict[str, Any]]:
    """Every live profile of a database matching a selector (`fields[]` conditions), 1000
    per request: keyset paging on the ID, or offsets when the database has a field called
    `id` (the API would then apply a `fields[]=id>…` filter to that field, not to the
    profile ID)."""
    by_offset = structure.field_name("id") is not None
    after = 0
    count = 0
    while True:
        params = [*conditions, ("limit", str(PAGE)), ("dataonly", "true"), ("total", "false")]
        if by_offset:
            params.append(("start", str(count)))
        else:
            params += [("orderby", "id"), ("fields[]", f"id>{after}")]
        path = f"database/{structure.id}/profiles"
        rows = dict_rows(payload_of(session.request("GET", path, params=params)))
        highest = after
        for row in rows:
            highest = max(highest, row_id(row))
            count += 1
            yield row
        if len(rows) < PAGE or (not by_offset and highest == after):
            return
        after = highest


class KeyIndex:
    """Key values -> profile IDs of one database (thread-safe)."""

    def __init__(self, structure: Structure, key_fields: Sequence[str]) -> None:
        self.structure = structure
        self.key_fields = tuple(structure.field_name(k) or k for k in key_fields)
        self._ids: dict[Key, list[int]] = {}
        self._lock = threading.Lock()

    def key_of(self, values: Mapping[str, str]) -> Key:
        """The normalized key of API-ready values (by defined field name)."""
        return tuple(self.structure.normalize(k, values.get(k, "")) for k in self.key_fields)

    def load(self, session: CopernicaSession) -> None:
        """Read every live profile's key fields (`profile_rows`)."""
        count = 0
        for row in profile_rows(session, self.structure):
            self.add(self.key_of(row_values(row, self.key_fields)), row_id(row))
            count += 1
        logger.info("Read the keys of %d profiles of database '%s'.", count, self.structure.name)

    def ids(self, key: Key) -> list[int]:
        with self._lock:
            return list(self._ids.get(key, ()))

    def count(self, key: Key) -> int:
        with self._lock:
            return len(self._ids.get(key, ()))

    def note_written(self, keys: Sequence[Key], *, inserts: bool) -> list[int]:
        """For keys written in input order (an import): how many profiles each had just
        before its row, remembering the profiles the rows created (one lock for all)."""
        before: list[int] = []
        with self._lock:
            for key in keys:
                ids = self._ids.setdefault(key, [])
                before.append(len(ids))
                if inserts or not ids:
                    ids.append(0)
        return before

    def add(self, key: Key, profile_id: int) -> None:
        """Remember a profile (ID 0: one exists, its ID unknown)."""
        with self._lock:
            ids = self._ids.setdefault(key, [])
            if profile_id == 0 or profile_id not in ids:
                ids.append(profile_id)

    def discard(self, key: Key, removed: Iterable[int]) -> None:
        """Forget profiles that were removed."""
        gone = set(removed)
        with self._lock:
            ids = [i for i in self._ids.get(key, ()) if i not in gone]
            if ids:
                self._ids[key] = ids
            else:
                self._ids.pop(key, None)

    def replace(self, key: Key, ids: Sequence[int]) -> None:
        with self._lock:
            if ids:
                self._ids[key] = list(ids)
            else:
                self._ids.pop(key, None)

    def lookup(self, session: CopernicaSession, key: Key, values: Mapping[str, str]) -> list[int]:
        """IDs of the profiles with this key; asks the API when the index does not know
        them (unknown IDs after an import, or a profile written by someone else)."""
        ids = self.ids(key)
        if ids and 0 not in ids:
            return ids
        found = find_profiles(session, self.structure.id, selector(self.key_fields, values))
        self.replace(key, found)
        return found


def selector(key_fields: Sequence[str], values: Mapping[str, str]) -> list[tuple[str, str]]:
    """`fields[]=<key>==<value>` conditions; requests URL-encodes each value (`==` → %3D%3D,
    `&`, `%`, `+`, `#` …), which is all the escaping the API asks for."""
    return [("fields[]", f"{name}=={values.get(name, '')}") for name in key_fields]


def matching_ids(
    session: CopernicaSession,
    path: str,
    conditions: Sequence[tuple[str, str]],
    *,
    dataonly: bool = False,
) -> list[int]:
    """IDs of the live profiles (or subprofiles) a list path returns for a selector."""
    params = [*conditions, ("limit", str(PAGE)), ("total", "false")]
    if dataonly:
        params.append(("dataonly", "true"))
    rows = dict_rows(payload_of(session.request("GET", path, params=params)))
    return [row_id(row) for row in rows]


def find_profiles(
    session: CopernicaSession, database_id: str, conditions: list[tuple[str, str]]
) -> list[int]:
    """IDs of the live profiles matching a selector."""
    return matching_ids(session, f"database/{database_id}/profiles", conditions, dataonly=True)


def find_subprofiles(
    session: CopernicaSession,
    profile_id: int,
    collection_id: str,
    conditions: list[tuple[str, str]],
) -> list[int]:
    """IDs of a profile's live subprofiles in a collection matching a selector."""
    return matching_ids(session, f"profile/{profile_id}/subprofiles/{collection_id}", conditions)
