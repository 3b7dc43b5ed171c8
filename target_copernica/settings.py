"""The target's settings: their JSON Schema (for --about and validation) and a typed view.

Where the SDK already names a concept, its name and meaning are used: `load_method`
(upsert / append-only, plus `update-only`), `batch_size_rows`, `hard_delete`,
`validate_records`. Values the target cannot honour are refused with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.settings import CONNECTION_SETTINGS, REQUEST_SETTINGS
from copernica_api.timeutil import zone

UPSERT = "upsert"
INSERT = "append-only"
UPDATE_ONLY = "update-only"
LOAD_METHODS = (UPSERT, INSERT, UPDATE_ONLY)
WRITE_PATHS = ("auto", "api", "bulk")
DEFAULT_BATCH_SIZE = 10000

#: An ID or a name: users write IDs as numbers (`database: 1201`) as often as strings.
_ID_OR_NAME = th.CustomType({"type": ["string", "integer"]})

_ROUTE = th.ObjectType(
    th.Property("database", _ID_OR_NAME, description="Database ID or name."),
    th.Property(
        "collection",
        _ID_OR_NAME,
        description="Collection ID or name: the stream's records become subprofiles.",
    ),
    th.Property(
        "parent_key_property",
        th.StringType,
        description="Record property holding the parent profile's key (subprofiles only).",
    ),
    th.Property(
        "parent_key_field",
        th.StringType,
        description="Profile field that property matches (default: the first `key_fields`).",
    ),
    th.Property(
        "key_fields",
        th.ArrayType(th.StringType),
        description="Key fields of this stream (for subprofiles: fields of the collection).",
    ),
)
#: A route entry: the object above, or just the database (ID or name).
_ROUTE_ENTRY = th.CustomType({**_ROUTE.to_dict(), "type": ["object", "string", "integer"]})

SETTINGS = th.PropertiesList(
    *CONNECTION_SETTINGS,
    *REQUEST_SETTINGS,
    th.Property(
        "database",
        _ID_OR_NAME,
        description="Default destination database (ID or name) for streams without a route.",
    ),
    th.Property(
        "stream_routes",
        th.ObjectType(additional_properties=_ROUTE_ENTRY),
        description="Per stream (name or glob such as `*`): the destination database (ID or "
        "name), or an object: database, or collection plus the property naming the parent "
        "profile's key.",
    ),
    th.Property(
        "key_fields",
        th.ArrayType(th.StringType),
        default=["email"],
        description="Fields that identify a profile (checked against the database first).",
    ),
    th.Property(
        "load_method",
        th.StringType(allowed_values=[*LOAD_METHODS, "overwrite"]),
        default=UPSERT,
        description="`upsert` updates the profiles matching the key and creates missing ones; "
        "`append-only` always creates; `update-only` never creates. `overwrite` is refused.",
    ),
    th.Property(
        "write_path",
        th.StringType(allowed_values=list(WRITE_PATHS)),
        default="auto",
        description="`api`: one request per record; `bulk`: POST /imports; `auto`: bulk "
        "import when a batch has at least `bulk_threshold_rows` rows.",
    ),
    th.Property(
        "bulk_threshold_rows",
        th.IntegerType(minimum=1),
        default=1000,
        description="With `write_path: auto`, the batch size from which imports are used.",
    ),
    th.Property(
        "batch_size_rows",
        th.IntegerType(minimum=1),
        default=DEFAULT_BATCH_SIZE,
        description="Maximum number of rows in each batch.",
    ),
    th.Property(
        "max_parallel_requests",
        th.IntegerType(minimum=1, maximum=32),
        default=8,
        description="Write requests in flight at once; records with the same key are "
        "still written in input order.",
    ),
    th.Property(
        "hard_delete",
        th.BooleanType,
        default=False,
        description="Delete the matching (sub)profiles of records with `_sdc_deleted_at`. "
        "Off: such records are skipped and counted.",
    ),
    th.Property(
        "create_missing_fields",
        th.BooleanType,
        default=False,
        description="Create fields (typed from the stream schema) and interests the "
        "destination lacks, instead of rejecting records that name them.",
    ),
    th.Property(
        "truncate_long_values",
        th.BooleanType,
        default=False,
        description="Cut text longer than its field's `length` to fit, counted as "
        "`truncated` in the summary. Off: such records are rejected (Copernica would cut "
        "them without a word).",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description="Validate, resolve keys and count what would be written; write nothing.",
    ),
    th.Property(
        "rejected_records_path",
        th.StringType,
        default="rejected_records.jsonl",
        description="JSONL file for records that could not be written (stream, record, reason).",
    ),
    th.Property(
        "insert_journal_path",
        th.StringType,
        default="insert_journal.jsonl",
        description="append-only: file listing the records written since the last STATE "
        "the target emitted, so a rerun after a crash does not insert them again. Keep it on "
        "storage that outlives the run; give each append-only pipeline its own path.",
    ),
    th.Property(
        "fail_on_rejected",
        th.BooleanType,
        default=False,
        description="Exit with status 2 at the end of a run in which any record was rejected.",
    ),
    th.Property(
        "import_timeout_seconds",
        th.IntegerType(minimum=1),
        default=3600,
        description="How long to wait for one bulk import before retrying its rows "
        "through the API path.",
    ),
).to_dict()


@dataclass(frozen=True)
class Route:
    """Where one stream's records go."""

    database: str
    key_fields: tuple[str, ...]
    collection: str | None = None
    parent_key_property: str | None = None
    parent_key_field: str | None = None
    # The setting that chose the database, for messages (not part of what a route is).
    origin: str = field(default="`database`", compare=False)


@dataclass(frozen=True)
class TargetSettings:
    """The settings, checked once."""

    load_method: str
    write_path: str
    bulk_threshold_rows: int
    max_parallel_requests: int
    hard_delete: bool
    create_missing_fields: bool
    truncate_long_values: bool
    dry_run: bool
    rejected_records_path: str
    insert_journal_path: str
    fail_on_rejected: bool
    tz: ZoneInfo
    import_timeout_seconds: float
    key_fields: tuple[str, ...]
    default_database: str | None
    routes: tuple[tuple[str, Mapping[str, Any]], ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TargetSettings:
        """Check and type the config; raise ConfigValidationError naming the setting."""
        errors: list[str] = []
        load_method = str(config.get("load_method") or UPSERT)
        if load_method == "overwrite":
            errors.append(
                "`load_method: overwrite` would delete every profile of the database "
                "before loading; target-copernica does not do that. Use `upsert` "
                "(default), `append-only` or `update-only`."
            )
        elif load_method not in LOAD_METHODS:
            errors.append(f"`load_method`: {load_method!r} is not one of {list(LOAD_METHODS)}.")
        write_path = str(config.get("write_path") or "auto")
        if write_path not in WRITE_PATHS:
            errors.append(f"`write_path`: {write_path!r} is not one of {list(WRITE_PATHS)}.")
        configured = config.get("key_fields")
        key_fields = tuple(str(k) for k in (["email"] if configured is None else configured))
        if not key_fields or any(not k.strip() for k in key_fields):
            errors.append("`key_fields` must name at least one field.")
        routes = config.get("stream_routes") or {}
        if not isinstance(routes, Mapping):
            errors.append("`stream_routes` must be an object keyed by stream name or pattern.")
            routes = {}
        for pattern, route in routes.items():
            if isinstance(route, (str, int)) and not isinstance(route, bool):
                continue
            if not isinstance(route, Mapping):
                errors.append(f"`stream_routes.{pattern}` must be an object or a database name.")
                continue
            if route.get("collection") and not route.get("parent_key_property"):
                errors.append(
                    f"`stream_routes.{pattern}` names a collection but no "
                    f"`parent_key_property` (the record property holding the parent "
                    f"profile's key)."
                )
        try:
            tz = zone(str(config.get("timezone") or "Europe/Amsterdam"))
        except ValueError as exc:
            errors.append(str(exc))
            tz = ZoneInfo("UTC")
        if errors:
            raise ConfigValidationError("; ".join(errors), errors=errors)
        database = config.get("database")
        return cls(
            load_method=load_method,
            write_path=write_path,
            bulk_threshold_rows=int(config.get("bulk_threshold_rows", 1000)),
            max_parallel_requests=int(config.get("max_parallel_requests", 8)),
            hard_delete=bool(config.get("hard_delete", False)),
            create_missing_fields=bool(config.get("create_missing_fields", False)),
            truncate_long_values=bool(config.get("truncate_long_values", False)),
            dry_run=bool(config.get("dry_run", False)),
            rejected_records_path=str(
                config.get("rejected_records_path") or "rejected_records.jsonl"
            ),
            insert_journal_path=str(config.get("insert_journal_path") or "insert_journal.jsonl"),
            fail_on_rejected=bool(config.get("fail_on_rejected", False)),
            tz=tz,
            import_timeout_seconds=float(config.get("import_timeout_seconds", 3600)),
            key_fields=key_fields,
            default_database=_id_or_name(database),
            routes=tuple((str(k), v) for k, v in routes.items()),
        )

    def route_for(self, stream: str) -> Route:
        """The route of `stream`: its exact entry, else the first matching pattern, else
        the default database."""
        chosen: Mapping[str, Any] | str | None = None
        matched = ""
        for pattern, route in self.routes:
            if pattern == stream:
                chosen, matched = route, pattern
                break
        if chosen is None:
            for pattern, route in self.routes:
                if fnmatchcase(stream, pattern):
                    chosen, matched = route, pattern
                    break
        if isinstance(chosen, (str, int)):
            chosen = {"database": chosen}
        chosen = chosen or {}
        routed = _id_or_name(chosen.get("database"))
        database = routed or self.default_database
        origin = f"`stream_routes.{matched}`" if routed else "`database`"
        if not database:
            msg = (
                f"Stream '{stream}' has no destination: set `database`, or add a "
                f"`stream_routes` entry for it (or a catch-all `*`)."
            )
            raise ConfigValidationError(msg, errors=[msg])
        collection = _id_or_name(chosen.get("collection"))
        keys = chosen.get("key_fields")
        return Route(
            database=str(database),
            key_fields=tuple(str(k) for k in keys) if keys else self.key_fields,
            collection=collection,
            parent_key_property=chosen.get("parent_key_property"),
            parent_key_field=(chosen.get("parent_key_field") or self.key_fields[0])
            if collection
            else None,
            origin=f"Stream '{stream}': {origin}",
        )


def _id_or_name(value: Any) -> str | None:
    """An ID or a name as the API takes it in a path (`1201` and `"1201"` alike); None when
    not given."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None
