"""Thread-safe in-memory account data with the mutation API tests use."""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from . import fieldtypes
from .clock import Clock
from .model import (
    ApiError,
    Collection,
    Database,
    FieldDef,
    Interest,
    Profile,
    Subprofile,
    find_field,
)
from .params import truthy
from .render import JSON, profile_json, subprofile_json

OwnerKind = Literal["database", "collection"]
InterestInput = Iterable[str] | Mapping[str, object]
Ref = int | str

NO_DATABASE = "No database with supplied ID"
NO_COLLECTION = "No collection with given ID"
NO_PROFILE = "No entity with supplied ID"
NO_SUBPROFILE = "No subprofile with supplied ID"

_T = TypeVar("_T", Database, Collection)


def _lookup(items: Mapping[int, _T], ref: Ref) -> _T | None:
    """Find by numeric ID, or by name (case-insensitive; names are never numeric)."""
    if isinstance(ref, int):
        return items.get(ref)
    if ref.isdigit():
        return items.get(int(ref))
    wanted = ref.casefold()
    for item in items.values():
        if item.name.casefold() == wanted:
            return item
    return None


def _row_id(ref: int | str) -> int | None:
    if isinstance(ref, int):
        return ref
    return int(ref) if ref.isdigit() else None


class Store:
    """All data of one emulated account. Every public method takes ``self.lock``."""

    def __init__(self, timezone: str = "Europe/Amsterdam", *, seed: int = 0) -> None:
        self.tz = ZoneInfo(timezone)
        self.clock = Clock(self.tz)
        self.lock = threading.RLock()
        self.databases: dict[int, Database] = {}
        self.collections: dict[int, Collection] = {}
        self.profile_rows: dict[int, Profile] = {}
        self.subprofile_rows: dict[int, Subprofile] = {}
        self._counters: dict[str, int] = {}
        self._secrets = random.Random(f"secrets:{seed}")
        #: State of optional emulator parts (bulk imports, write response style), by name.
        self.extensions: dict[str, Any] = {}

    # ------------------------------------------------------------------ clock
    def now(self) -> str:
        return self.clock.now()

    def set_clock(self, offset_seconds: float) -> None:
        self.clock.set_offset(offset_seconds)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ---------------------------------------------------------------- lookups
    def database(self, ref: Ref) -> Database:
        with self.lock:
            found = _lookup(self.databases, ref)
        if found is None:
            raise ApiError(NO_DATABASE)
        return found

    def collection(self, ref: Ref) -> Collection:
        with self.lock:
            found = _lookup(self.collections, ref)
        if found is None:
            raise ApiError(NO_COLLECTION)
        return found

    def profile(self, ref: int | str) -> Profile:
        row_id = _row_id(ref)
        with self.lock:
            found = self.profile_rows.get(row_id) if row_id is not None else None
        if found is None:
            raise ApiError(NO_PROFILE)
        return found

    def subprofile(self, ref: int | str) -> Subprofile:
        row_id = _row_id(ref)
        with self.lock:
            found = self.subprofile_rows.get(row_id) if row_id is not None else None
        if found is None:
            raise ApiError(NO_SUBPROFILE)
        return found

    def database_id(self, name: str) -> int:
        return self.database(name).id

    def collection_id(self, database: Ref, name: str) -> int:
        with self.lock:
            owner = self.database(database)
            for collection_id in owner.collection_ids:
                if self.collections[collection_id].name.casefold() == name.casefold():
                    return collection_id
        raise ApiError(NO_COLLECTION)

    def collections_of(self, database: Database) -> list[Collection]:
        with self.lock:
            return [self.collections[c] for c in database.collection_ids]

    # -------------------------------------------------------------- structure
    def _next_id(self, kind: str) -> int:
        value = self._counters.get(kind, 0) + 1
        self._counters[kind] = value
        return value

    def add_database(self, name: str, description: str = "", created: str | None = None) -> int:
        with self.lock:
            database_id = self._next_id("database")
            self.databases[database_id] = Database(
                database_id, name, description, created or self.now()
            )
            return database_id

    def add_interest(self, database: Ref, name: str, group: str = "") -> int:
        with self.lock:
            owner = self.database(database)
            interest_id = self._next_id("interest")
            owner.interests.append(Interest(interest_id, name, group))
            return interest_id

    def add_collection(self, database: Ref, name: str) -> int:
        with self.lock:
            owner = self.database(database)
            collection_id = self._next_id("collection")
            self.collections[collection_id] = Collection(collection_id, name, owner.id)
            owner.collection_ids.append(collection_id)
            return collection_id

    def add_field(
        self,
        kind: OwnerKind,
        owner: Ref,
        name: str,
        type: str,
        value: str = "",
        *,
        length: int = 255,
        index: bool = False,
    ) -> int:
        """Add a field; existing rows get "" / "0" / a zero date, not the default."""
        if type not in fieldtypes.ALL_TYPES:
            raise ValueError(f"unknown field type {type!r}")
        with self.lock:
            target = self.database(owner) if kind == "database" else self.collection(owner)
            if find_field(target.fields, name) is not None:
                raise ValueError(f"field {name!r} already exists")
            field_id = self._next_id("field")
            target.fields.append(FieldDef(field_id, name, type, value, length=length, index=index))
            filler = fieldtypes.default_for_existing_row(type)
            rows: Iterable[Profile | Subprofile]
            if kind == "database":
                rows = (p for p in self.profile_rows.values() if p.database_id == target.id)
            else:
                rows = (s for s in self.subprofile_rows.values() if s.collection_id == target.id)
            for row in rows:
                row.fields[name] = "" if row.removed is not None else filler
            return field_id

    # ----------------------------------------------------------- field values
    def _defaults(self, fields: list[FieldDef]) -> dict[str, str]:
        return {f.name: fieldtypes.default_for_new_row(f.type, f.value, self.tz) for f in fields}

    def _merge(
        self, fields: list[FieldDef], current: dict[str, str], incoming: Mapping[str, object]
    ) -> dict[str, str]:
        """Apply written values: names case-insensitive, unknown names ignored, last wins."""
        result = dict(current)
        for key, raw in incoming.items():
            target = find_field(fields, str(key))
            if target is not None:
                value = fieldtypes.coerce(target.type, raw, choices=target.value, tz=self.tz)
                if target.type in fieldtypes.LENGTH_LIMITED and target.length > 0:
                    # The docs give text fields a maximum `length` in characters; a longer value is
                    # assumed cut to it, as MySQL does in non-strict mode.
                    value = value[: target.length]
                result[target.name] = value
        return result

    def _interest_names(
        self, database: Database, current: list[str], incoming: InterestInput, *, replace: bool
    ) -> list[str]:
        chosen = set() if replace else set(current)
        items: Iterable[tuple[object, object]]
        if isinstance(incoming, Mapping):
            items = incoming.items()
        else:
            items = ((name, True) for name in incoming)
        for name, flag in items:
            match = next(
                (i.name for i in database.interests if i.name.casefold() == str(name).casefold()),
                None,
            )
            if match is not None:
                (chosen.add if truthy(flag) else chosen.discard)(match)
        return [i.name for i in database.interests if i.name in chosen]

    def _new_secret(self) -> str:
        return f"{self._secrets.getrandbits(128):032x}"

    # ------------------------------------------------------------- raw insert
    def insert_profile(
        self,
        database: Ref,
        values: Mapping[str, str],
        interests: Iterable[str],
        *,
        secret: str,
        created: str,
        modified: str,
    ) -> int:
        """Insert a profile with explicit timestamps and already valid values (seeding)."""
        with self.lock:
            owner = self.database(database)
            profile_id = self._next_id("profile")
            fields = self._defaults(owner.fields)
            fields.update({k: v for k, v in values.items() if k in fields})
            chosen = self._interest_names(owner, [], list(interests), replace=True)
            self.profile_rows[profile_id] = Profile(
                profile_id, owner.id, fields, chosen, secret, created, modified
            )
            bisect.insort(owner.live_ids, profile_id)
            return profile_id

    def insert_subprofile(
        self,
        profile_id: int,
        collection: Ref,
        values: Mapping[str, str],
        *,
        secret: str,
        created: str,
        modified: str,
    ) -> int:
        """Insert a subprofile with explicit timestamps and already valid values (seeding)."""
        with self.lock:
            parent = self.profile(profile_id)
            target = self.collection(collection)
            if target.database_id != parent.database_id or parent.removed is not None:
                raise ApiError("Subprofile could not be created")
            subprofile_id = self._next_id("subprofile")
            fields = self._defaults(target.fields)
            fields.update({k: v for k, v in values.items() if k in fields})
            self.subprofile_rows[subprofile_id] = Subprofile(
                subprofile_id, parent.id, target.id, fields, secret, created, modified
            )
            parent.subprofile_ids.append(subprofile_id)
            bisect.insort(target.live_ids, subprofile_id)
            return subprofile_id

    # ------------------------------------------------------------ live views
    def live_profiles(self, database: Ref) -> list[Profile]:
        with self.lock:
            owner = self.database(database)
            return [self.profile_rows[i] for i in owner.live_ids]

    def live_subprofiles(self, collection: Ref) -> list[Subprofile]:
        with self.lock:
            owner = self.collection(collection)
            return [self.subprofile_rows[i] for i in owner.live_ids]

    def profiles(self, database: Ref) -> list[JSON]:
        """Live profiles of a database, ascending by ID, as the API shows them."""
        with self.lock:
            owner = self.database(database)
            return [profile_json(p, owner) for p in self.live_profiles(owner.id)]

    def subprofiles(self, collection: Ref) -> list[JSON]:
        """Live subprofiles of a collection, ascending by ID, as the API shows them."""
        with self.lock:
            owner = self.collection(collection)
            return [subprofile_json(s, owner) for s in self.live_subprofiles(owner.id)]

    def get_profile(self, profile_id: int) -> JSON:
        """One profile as ``GET /profile/{id}`` shows it (also when removed)."""
        with self.lock:
            row = self.profile(profile_id)
            return profile_json(row, self.databases[row.database_id])

    def get_subprofile(self, subprofile_id: int) -> JSON:
        """One subprofile as ``GET /subprofile/{id}`` shows it (also when removed)."""
        with self.lock:
            row = self.subprofile(subprofile_id)
            return subprofile_json(row, self.collections[row.collection_id])

    # --------------------------------------------------------------- profiles
    def create_profile(
        self, database: Ref, fields: Mapping[str, object], interests: InterestInput = ()
    ) -> int:
        with self.lock:
            owner = self.database(database)
            now = self.now()
            values = self._merge(owner.fields, self._defaults(owner.fields), fields)
            chosen = self._interest_names(owner, [], interests, replace=True)
            return self.insert_profile(
                owner.id, values, chosen, secret=self._new_secret(), created=now, modified=now
            )

    def update_profile(
        self,
        profile_id: int,
        fields: Mapping[str, object],
        *,
        interests: InterestInput | None = None,
        secret: str | None = None,
    ) -> bool:
        """Update one profile; returns True when ``modified`` was bumped."""
        with self.lock:
            row = self.profile(profile_id)
            owner = self.databases[row.database_id]

            def set_interests() -> None:
                if interests is not None:
                    replace = not isinstance(interests, Mapping)
                    row.interests = self._interest_names(
                        owner, row.interests, interests, replace=replace
                    )

            return self._write(row, owner.fields, fields, secret, set_interests)

    def delete_profile(self, profile_id: int) -> None:
        """Mark removed, empty the fields, remove its subprofiles; ``modified`` is kept."""
        with self.lock:
            row = self.profile(profile_id)
            if row.removed is not None:
                raise ApiError("This profile has already been removed")
            now = self.now()
            row.removed = now
            row.fields = dict.fromkeys(row.fields, "")
            row.interests = []
            self.databases[row.database_id].live_ids.remove(row.id)
            for subprofile_id in row.subprofile_ids:
                if self.subprofile_rows[subprofile_id].removed is None:
                    self._remove_subprofile(self.subprofile_rows[subprofile_id], now)

    # ------------------------------------------------------------ subprofiles
    def create_subprofile(
        self, profile_id: int, collection: Ref, fields: Mapping[str, object]
    ) -> int:
        with self.lock:
            try:
                target = self.collection(collection)
            except ApiError:
                raise ApiError("Subprofile could not be created") from None
            now = self.now()
            values = self._merge(target.fields, self._defaults(target.fields), fields)
            return self.insert_subprofile(
                profile_id, target.id, values, secret=self._new_secret(), created=now, modified=now
            )

    def update_subprofile(
        self, subprofile_id: int, fields: Mapping[str, object], *, secret: str | None = None
    ) -> bool:
        """Update one subprofile; returns True when ``modified`` was bumped."""
        with self.lock:
            row = self.subprofile(subprofile_id)
            return self._write(row, self.collections[row.collection_id].fields, fields, secret)

    def _write(
        self,
        row: Profile | Subprofile,
        definitions: Any,
        fields: Mapping[str, object],
        secret: str | None,
        before_fields: Callable[[], None] | None = None,
    ) -> bool:
        """The write rules profiles and subprofiles share, as the API behaves: a new secret code
        never changes `modified`, nor does a write that changes no value; a removed row keeps
        empty fields, yet a field write to it still bumps `modified`."""
        if secret is not None:
            row.secret = secret  # never bumps `modified`
        if row.removed is not None:
            # A removed row keeps empty fields, yet a field write bumps modified.
            if fields:
                row.modified = self.now()
            return bool(fields)
        if before_fields is not None:
            before_fields()
        merged = self._merge(definitions, row.fields, fields)
        if merged == row.fields:
            return False  # `modified` changes only when a value really changes
        row.fields = merged
        row.modified = self.now()
        return True

    def delete_subprofile(self, subprofile_id: int) -> None:
        with self.lock:
            row = self.subprofile(subprofile_id)
            if row.removed is not None:
                raise ApiError("This subprofile has already been removed")
            self._remove_subprofile(row, self.now())

    def _remove_subprofile(self, row: Subprofile, now: str) -> None:
        row.removed = now
        row.fields = dict.fromkeys(row.fields, "")
        self.collections[row.collection_id].live_ids.remove(row.id)
