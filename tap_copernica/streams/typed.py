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
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from copernica_api.fields import field_type
from tap_copernica.profile_records import RecordLayout
from tap_copernica.streams.profiles import STREAM_SPECS, ProfileSpec, ProfileStream

if TYPE_CHECKING:
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
        self.records.reader.report(self.logger, self.name)

    def record_layout(self) -> RecordLayout:
        """A column per field, typed, next to the row's other values."""
        columns = column_names((n for n, _ in self.table.fields), self.table.kind)
        return RecordLayout(
            entity_keys=tuple(key for key in self.spec.row_keys if key != "fields"),
            fields=tuple((name, columns[name], kind) for name, kind in self.table.fields),
            shape=self.spec.shape,
            declared=frozenset(self._typed_schema["properties"]),
        )
