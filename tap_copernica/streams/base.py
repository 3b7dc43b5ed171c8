"""The stream table's row type (`StreamSpec`) and the two simplest kinds of resource.

- `ObjectStream`: one object per call (`identity`); the base of every stream of the tap.
- `ListStream`: a small paged list (databases, fields, interests, collections).

Each resource is one `StreamSpec` (or a spec of a stream family, with that family's own
fields); `build_stream_classes` turns the table into the classes the SDK links by type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

from singer_sdk import SchemaDirectory, StreamSchema

from copernica_api.payloads import to_int
from copernica_api.timeutil import api_to_iso, api_to_utc
from tap_copernica.client import CopernicaStream
from tap_copernica.paging import StartLimitPaginator
from tap_copernica.schemas_dir import schema_dir

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

SCHEMAS = SchemaDirectory(schema_dir())


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


@dataclass(frozen=True)
class StreamSpec:
    """One row of the stream table: a resource, and the class that reads it.

    Stream families with settings of their own (profiles, mailings, rules) have a spec type
    of their own that adds them as typed fields.
    """

    name: str
    path: str
    base: type[ObjectStream]
    keys: tuple[str, ...] = ("ID",)
    parent: str | None = None
    shape: RecordShape = field(default_factory=RecordShape)
    #: child context key -> record field (or key of this stream's own context)
    child_keys: Mapping[str, str] = field(default_factory=dict)
    #: the SDK's replication key, for incremental streams whose class does not fix one
    replication_key: str | None = None


class ObjectStream(CopernicaStream):
    """A resource that answers with one object."""

    schema: ClassVar[StreamSchema] = StreamSchema(SCHEMAS)
    #: the stream's row of the stream table (set on each class `build_stream_classes` makes)
    spec: StreamSpec

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """Normalise IDs and timestamps (the API's strings) to typed values."""
        if self.selected:
            self.progress.record(self.name)
        return self.spec.shape.apply(row, self.settings.tz, utc=self.settings.utc_timestamps)

    def generate_child_contexts(
        self, record: dict, context: Context | None
    ) -> Iterable[Context | None]:
        """Contexts for child streams; none at all for a stream without children."""
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        """Path parameters for child streams."""
        values = {**(context or {}), **record}
        return {key: to_int(values[source]) for key, source in self.spec.child_keys.items()}


class ListStream(ObjectStream):
    """A small list paged with start/limit."""

    def get_new_paginator(self) -> BaseAPIPaginator:
        """Offset paging: structure lists are small and rarely change mid-run."""
        return StartLimitPaginator(self.settings.page_size)

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """start/limit from the paginator; no totals (they cost the API a count)."""
        return {**(next_page_token or {}), "limit": self.settings.page_size, "total": "false"}


def build_stream_classes(specs: Iterable[StreamSpec]) -> list[type[ObjectStream]]:
    """One class per spec, parents before children (the SDK links them by class)."""
    classes: dict[str, type[ObjectStream]] = {}
    for spec in specs:
        attrs: dict[str, Any] = {
            "name": spec.name,
            "path": spec.path,
            "primary_keys": list(spec.keys),
            "spec": spec,
            "__module__": spec.base.__module__,
        }
        if spec.replication_key is not None:
            attrs["replication_key"] = spec.replication_key
        if spec.parent:
            attrs["parent_stream_type"] = classes[spec.parent]
        class_name = "".join(part.capitalize() for part in spec.name.split("_")) + "Stream"
        classes[spec.name] = type(class_name, (spec.base,), attrs)
    return list(classes.values())
