"""Typed warehouse tables: `profiles_<database>` and `subprofiles_<database>_<collection>`.

Each has one column per Copernica field, typed from the field's definition
(`copernica_api.fields`), next to the entity columns (`ID`, `created`, `modified`, ...).
They are read by the same `ProfileStream` machinery as the generic `profiles` /
`subprofiles` streams (same exact paging, same bookmarks, kept under their own stream
names), and do not need those selected.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from copernica_api.fields import FieldReader, field_type
from tap_copernica.streams.profiles import STREAM_SPECS, ProfileSpec, ProfileStream

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_copernica.client import StreamServices

_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_ENTITY_COLUMNS: dict[str, dict[str, dict[str, Any]]] = {
    "database": {
        "ID": {"type": "integer"},
        "database_id": {"type": ["integer", "null"]},
        "interests": {"type": ["array", "null"], "items": {"type": "string"}},
        "secret": {"type": ["string", "null"]},
        "created": _TIMESTAMP,
        "modified": _TIMESTAMP,
        "removed": _TIMESTAMP,
    },
    "collection": {
        "ID": {"type": "integer"},
        "profile": {"type": ["integer", "null"]},
        "database_id": {"type": ["integer", "null"]},
        "collection_id": {"type": ["integer", "null"]},
        "secret": {"type": ["string", "null"]},
        "created": _TIMESTAMP,
        "modified": _TIMESTAMP,
        "removed": _TIMESTAMP,
    },
}
#: A field whose name is taken by an entity column gets this suffix (e.g. `modified_field`).
CLASH_SUFFIX = "_field"


def safe_name(text: str) -> str:
    """Lower case, runs of other characters as one `_` (stream names stay SQL friendly)."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return name or "unnamed"


def unique_names(items: list[tuple[int, str]]) -> dict[int, str]:
    """Safe names for (id, name) pairs; names that collide all get their ID appended."""
    safe = {item_id: safe_name(name) for item_id, name in items}
    counts = Counter(safe.values())
    return {i: (n if counts[n] == 1 else f"{n}_{i}") for i, n in safe.items()}


def column_names(field_names: Iterable[str], kind: str) -> dict[str, str]:
    """Field name -> column name; a field named like an entity column gets a suffix."""
    taken = {c.lower() for c in _ENTITY_COLUMNS[kind]}
    return {n: (f"{n}{CLASH_SUFFIX}" if n.lower() in taken else n) for n in field_names}


@dataclass(frozen=True)
class TypedTable:
    """What discovery learned about one database or collection."""

    name: str
    kind: Literal["database", "collection"]
    context: dict[str, int]
    fields: tuple[tuple[str, str], ...]  # (field name, Copernica type)

    def schema(self) -> dict[str, Any]:
        """Entity columns plus one typed column per field."""
        columns = column_names((n for n, _ in self.fields), self.kind)
        properties = dict(_ENTITY_COLUMNS[self.kind])
        for name, kind in self.fields:
            properties[columns[name]] = field_type(kind).schema
        return {"type": "object", "properties": properties, "required": ["ID"]}


def _generic_spec(kind: str) -> ProfileSpec:
    """The spec of the generic stream that reads the same rows (`profiles`, `subprofiles`)."""
    return next(s for s in STREAM_SPECS if isinstance(s, ProfileSpec) and s.owner_kind == kind)


class TypedProfileStream(ProfileStream):
    """Profiles of one database (or subprofiles of one collection) with typed columns."""

    primary_keys: ClassVar[list[str]] = ["ID"]

    def __init__(self, tap: Tap, services: StreamServices, table: TypedTable) -> None:
        generic = _generic_spec(table.kind)
        self.spec = dataclasses.replace(generic, name=table.name, parent=None)
        self.table = table
        self._typed_schema = table.schema()
        self._columns = column_names((n for n, _ in table.fields), table.kind)
        self._reader = FieldReader(
            dict(table.fields), services.settings.tz, utc=services.settings.utc_timestamps
        )
        # The hot path, per record: text fields are the API's strings as they are; the
        # others go through their reader once per distinct value (see `build_record`).
        self._text_columns = [
            (n, self._columns[n]) for n, kind in table.fields if field_type(kind) is TEXT
        ]
        # All text values of a row in one call (a tuple: only for two fields or more).
        self._text_values = (
            itemgetter(*(n for n, _ in self._text_columns)) if len(self._text_columns) > 1 else None
        )
        self._text_names = tuple(c for _, c in self._text_columns)
        tz = services.settings.tz
        self._typed_columns = [
            (n, self._columns[n], _known_values(kind, tz), self._reader.direct(n))
            for n, kind in table.fields
            if field_type(kind) is not TEXT
        ]
        super().__init__(
            tap, services, name=table.name, schema=self._typed_schema, path=generic.path
        )

    @property
    def schema(self) -> dict[str, Any]:  # type: ignore[override]
        """Built from the field definitions at discovery."""
        return self._typed_schema

    @property
    def partitions(self) -> list[dict[str, Any]]:
        """The one database or collection this table holds."""
        return [dict(self.table.context)]

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The generic reader; afterwards one warning per field with unreadable values."""
        yield from super().get_records(context)
        self._reader.report(self.logger, self.name)

    def build_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Each field in its own column, typed.

        Runs for every profile, so the typed stream costs about what the generic one does:
        a text value is copied, an empty one is null, a number goes through `int`/`float`,
        and a date is read once per distinct value and looked up after that. An unreadable
        value is never remembered, so each one is counted.
        """
        values = record.pop("fields", None) or {}
        try:  # the usual row: every field present, text as strings (the API sends no other)
            texts = self._text_values(values) if self._text_values else None
        except KeyError:
            texts = None
        if texts is not None and _STRINGS.issuperset(map(type, texts)):
            record.update(zip(self._text_names, texts))  # noqa: B905 (lengths equal by construction)
        else:
            for name, column in self._text_columns:
                value = values.get(name)
                record[column] = value if value is None or value.__class__ is str else str(value)
        read = self._reader.read
        for name, column, known, direct in self._typed_columns:
            value = values.get(name)
            if value is None or value == "":  # no value, for every type
                record[column] = None
                continue
            if known is not None:
                typed = known.get(value, _UNKNOWN)
                if typed is not _UNKNOWN:
                    record[column] = typed
                    continue
            typed = None
            if value.__class__ is str:
                try:
                    typed = direct(value)
                except (ValueError, TypeError, OverflowError):
                    typed = None
            if typed is None:  # empty, or unreadable (null, and counted): `read` decides
                typed = read(name, value)
            if known is not None and typed is not None and len(known) < MAX_KNOWN_VALUES:
                known[value] = typed
            record[column] = typed
        return record


#: Distinct values remembered per typed column (bounds memory on unique values).
MAX_KNOWN_VALUES = 4096
_UNKNOWN = object()
_STRINGS = {str}
#: The field type read as the API's string itself.
TEXT = field_type("text")


def _known_values(kind: str, tz: ZoneInfo) -> dict[Any, Any] | None:
    """A column's remembered readings, where reading costs more than a lookup (dates repeat
    across profiles: birthdays, order days); None for the others (numbers are read as fast
    as they are looked up, and date-times are mostly distinct). It starts with the API's
    empty values that read as null (never counted as unreadable) for this type."""
    reader = field_type(kind)
    if reader.schema.get("format") != "date":
        return None
    known: dict[Any, Any] = {}
    for empty in ("0000-00-00", "0000-00-00 00:00:00"):
        try:
            known[empty] = reader.read(empty, tz)
        except ValueError:
            continue
    return {value: typed for value, typed in known.items() if typed is None}
