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

#: What Copernica trims from the end of a `fields[]` expression (PHP's `trim` set).
SELECTOR_TRIM = " \t\n\r\0\x0b"

UPSERT = "upsert"
INSERT = "append-only"
UPDATE_ONLY = "update-only"
LOAD_METHODS = (UPSERT, INSERT, UPDATE_ONLY)
WRITE_PATHS = ("auto", "api", "bulk")
DEFAULT_BATCH_SIZE = 10000
MIRROR_OFF = "off"
MIRROR_DELETE = "delete"
MIRROR_UNSUBSCRIBE = "unsubscribe"
MIRROR_MODES = (MIRROR_OFF, MIRROR_DELETE, MIRROR_UNSUBSCRIBE)

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

_MIRROR_SCOPE = th.ObjectType(
    th.Property(
        "database",
        _ID_OR_NAME,
        description="A database the target owns: only streams writing to it are mirrored, "
        "and any profile in it may be removed (unless a marker narrows it). Without a marker "
        "field it must be one only the mirrored stream is routed to, not the default `database`.",
    ),
    th.Property(
        "field",
        th.StringType,
        description="Marker field: only profiles whose field holds the stream's marker "
        "value are in scope; the target writes that value into it on every profile of the "
        "stream. Each mirrored stream has its own value: its name, or `values`.",
    ),
    th.Property(
        "values",
        th.ObjectType(additional_properties=th.StringType),
        description="Per stream name: its marker value (default: the stream name); "
        "each stream's must differ.",
    ),
    th.Property(
        "value",
        th.StringType,
        description="Refused: one value shared by several streams would let one stream's "
        "full table remove another's profiles; use `values`.",
    ),
    th.Property(
        "interest",
        th.StringType,
        description="Marker interest: only profiles with it are in scope; the target sets "
        "it on every profile of a mirrored stream. Shared by the streams, so only with a "
        "`database` one stream is routed to.",
    ),
)
_MIRROR_UNSUBSCRIBE = th.ObjectType(
    th.Property("field", th.StringType, description="Field set to `value` on absent profiles."),
    th.Property(
        "value",
        th.CustomType({"type": ["string", "integer", "boolean"]}),
        description="The field's value; with `interest`, 1 (default) sets the interest, 0 "
        "removes it.",
    ),
    th.Property("interest", th.StringType, description="Interest switched on absent profiles."),
)

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
        "through the API path. An append-only load stops instead (the server may still add "
        "those rows): its rerun waits for the import and writes each record once.",
    ),
    th.Property(
        "mirror_mode",
        th.StringType(allowed_values=list(MIRROR_MODES)),
        default=MIRROR_OFF,
        description="When a stream's full table ends (`ACTIVATE_VERSION` after its records), "
        "`delete` or `unsubscribe` the profiles in `mirror_scope` it did not contain. "
        "`off`: ACTIVATE_VERSION changes nothing.",
    ),
    th.Property(
        "mirror_scope",
        _MIRROR_SCOPE,
        description="The profiles mirror may remove (required with `mirror_mode`), each "
        "mirrored stream its own: `database`, one only that stream is routed to, and/or a "
        "marker the target sets on every profile it writes: `field` (its value: the stream "
        "name, or `values`), or `interest`.",
    ),
    th.Property(
        "mirror_unsubscribe",
        _MIRROR_UNSUBSCRIBE,
        description="`mirror_mode: unsubscribe`: set `field` to `value`, or switch "
        "`interest` on (`value` 0: off), on absent profiles instead of deleting them.",
    ),
    th.Property(
        "mirror_max_delete_fraction",
        th.NumberType,
        default=0.1,
        description="From 0 to 1: above this share of the profiles in scope before the "
        "version (in unsubscribe mode, not unsubscribed already), mirror removes nothing and "
        "the run exits with status 3, saying how many would have gone.",
    ),
    th.Property(
        "mirror_dry_run",
        th.BooleanType,
        default=False,
        description="List the profiles mirror would remove (log and summary), remove none; "
        "records are still written. `dry_run` implies it.",
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
class MirrorScope:
    """Which profiles a mirror may remove: those of `database` (any when None) that carry
    the stream's marker field value or the marker interest (every one when neither is set).

    Each mirrored stream's scope is its own, decided from the config before any write: with
    a marker field every stream writes its own value (`value_for`); without one, the scope's
    database must be one only that stream is routed to (`TargetSettings.from_config`)."""

    database: str | None = None
    field: str | None = None
    values: tuple[tuple[str, str], ...] = ()  # stream -> marker value, when not its name
    interest: str | None = None

    def value_for(self, stream: str) -> str:
        """The marker field value of a stream's profiles: its own, by default its name."""
        return dict(self.values).get(stream, stream)

    def describe(self, stream: str) -> str:
        parts = [f"database '{self.database}'"] if self.database else []
        if self.field:
            parts.append(f"{self.field} == {self.value_for(stream)!r}")
        if self.interest:
            parts.append(f"interest '{self.interest}'")
        return ", ".join(parts)


@dataclass(frozen=True)
class MirrorSettings:
    """The mirror mode, checked once (`TargetSettings.mirror` is None when it is off)."""

    mode: str  # MIRROR_DELETE or MIRROR_UNSUBSCRIBE
    scope: MirrorScope
    max_fraction: float
    dry_run: bool
    unsubscribe_field: str | None = None
    unsubscribe_value: str = ""
    unsubscribe_interest: str | None = None
    unsubscribe_interest_on: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any], errors: list[str]) -> MirrorSettings | None:
        """The mirror settings, or None when it is off; problems go to `errors`, one line
        each naming the fix (the run then stops before any request)."""
        mode = str(config.get("mirror_mode") or MIRROR_OFF)
        if mode not in MIRROR_MODES:
            errors.append(f"`mirror_mode`: {mode!r} is not one of {list(MIRROR_MODES)}.")
            return None
        raw_fraction = config.get("mirror_max_delete_fraction", 0.1)
        fraction = _share(raw_fraction)
        if fraction is None:
            errors.append(
                f"`mirror_max_delete_fraction`: {str(raw_fraction)!r} is not a share between 0 "
                f"and 1; set e.g. 0.1 to allow removing up to a tenth of the profiles in scope."
            )
            fraction = 0.1
        if mode == MIRROR_OFF:
            return None
        scope = _mirror_scope(config.get("mirror_scope"), mode, errors)
        _single_writer(scope, config, errors)
        unsubscribe = config.get("mirror_unsubscribe") or {}
        if not isinstance(unsubscribe, Mapping):
            unsubscribe = {}
        field_name = _text(unsubscribe.get("field"))
        interest = _text(unsubscribe.get("interest"))
        raw_value = unsubscribe.get("value")
        if mode == MIRROR_UNSUBSCRIBE and bool(field_name) == bool(interest):
            errors.append(
                "`mirror_mode: unsubscribe` needs `mirror_unsubscribe` with either a `field` "
                'and its `value` (`{"field": "status", "value": "unsubscribed"}`) or an '
                '`interest` (`{"interest": "unsubscribed"}`).'
            )
        if mode == MIRROR_UNSUBSCRIBE and field_name and raw_value in (None, ""):
            errors.append(
                f"`mirror_unsubscribe.value`: give the value to write into field "
                f"'{field_name}' of absent profiles."
            )
        interest_on = True
        if interest and raw_value is not None:
            interest_on = str(raw_value).strip().lower() not in ("0", "false", "")
        return cls(
            mode=mode,
            scope=scope,
            max_fraction=fraction,
            dry_run=bool(config.get("mirror_dry_run", False)) or bool(config.get("dry_run")),
            unsubscribe_field=field_name,
            unsubscribe_value="" if raw_value is None or interest else str(raw_value),
            unsubscribe_interest=interest,
            unsubscribe_interest_on=interest_on,
        )


def _share(value: Any) -> float | None:
    """A number from 0 to 1 (the SDK may hand numbers over as Decimal), else None."""
    if isinstance(value, (bool, str)):
        return None
    try:
        share = float(value)
    except (TypeError, ValueError):
        return None
    return share if 0 <= share <= 1 else None


def _text(value: Any) -> str | None:
    """A name from the config, None when not given or blank."""
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


def _mirror_scope(raw: Any, mode: str, errors: list[str]) -> MirrorScope:
    fix = (
        f"`mirror_mode: {mode}` removes profiles, so it needs `mirror_scope`: a database the "
        f'target owns (`{{"database": "Customers"}}`) or a marker it sets on what it writes '
        f'(`{{"field": "source"}}` or `{{"interest": "warehouse"}}`).'
    )
    if not isinstance(raw, Mapping):
        errors.append(fix)
        return MirrorScope()
    database = _id_or_name(raw.get("database"))
    field_name = _text(raw.get("field"))
    interest = _text(raw.get("interest"))
    if not (database or field_name or interest):
        errors.append(fix)
    if field_name and interest:
        errors.append("`mirror_scope`: name one marker, a `field` or an `interest`, not both.")
    if raw.get("value") is not None:
        errors.append(
            "`mirror_scope.value`: one marker value shared by several streams would let one "
            "stream's full table remove the profiles of another. Drop it (each mirrored "
            "stream writes its own name into the marker field) or give each stream its own "
            'value with `mirror_scope.values` (`{"customers": "warehouse"}`).'
        )
    raw_values = raw.get("values") or {}
    values: list[tuple[str, str]] = []
    if not isinstance(raw_values, Mapping):
        errors.append("`mirror_scope.values`: give an object, stream name -> marker value.")
        raw_values = {}
    elif raw_values and not field_name:
        errors.append("`mirror_scope.values` needs `mirror_scope.field`, the marker field.")
    for stream, value in raw_values.items():
        text = "" if value is None or isinstance(value, bool) else str(value)
        if text.strip() == "":
            errors.append(
                f"`mirror_scope.values.{stream}`: give the value the target writes into "
                f"marker field '{field_name}' (profiles where it is empty would never be "
                f"told apart)."
            )
        elif text != text.strip(SELECTOR_TRIM):
            errors.append(
                f"`mirror_scope.values.{stream}` starts or ends with whitespace, which "
                f"Copernica's selectors cut off: remove it."
            )
        values.append((str(stream), text))
    taken: dict[str, str] = {}
    for stream, value in values:
        other = taken.get(value.casefold())
        if other is not None:
            errors.append(
                f"`mirror_scope.values`: streams '{other}' and '{stream}' share marker value "
                f"{value!r}; each mirrored stream needs its own."
            )
        taken[value.casefold()] = stream
    return MirrorScope(database, field_name, tuple(values), interest)


def _single_writer(scope: MirrorScope, config: Mapping[str, Any], errors: list[str]) -> None:
    """Without a marker field, the scope's database must be written by one stream only, as
    far as the config tells: not the default `database` (any stream without a route lands
    there) and named by one `stream_routes` entry for profiles, not a pattern."""
    if scope.field:
        # A value given to one stream must not be another named stream's default (its name).
        named = {str(k) for k in (config.get("stream_routes") or {})} | {s for s, _ in scope.values}
        for stream, value in scope.values:
            if value != stream and value in named:
                errors.append(
                    f"`mirror_scope.values.{stream}` is {value!r}, the marker value of stream "
                    f"'{value}' (its name): give '{stream}' another."
                )
    if scope.field or not scope.database:
        if not scope.field and scope.interest:
            errors.append(
                "`mirror_scope`: an `interest` alone is shared by every stream, so one "
                "stream's full table would remove the profiles of another. Add a `database` "
                "only one stream is routed to, or use a marker `field` instead (each stream "
                "writes its own value)."
            )
        return
    name = scope.database.casefold()
    fix = (
        "use a marker `field` (each mirrored stream writes its own value into it) or a "
        "database only that stream is routed to"
    )
    default = _id_or_name(config.get("database"))
    if default is not None and default.casefold() == name:
        errors.append(
            f"`mirror_scope.database` '{scope.database}' is also the default `database`, "
            f"which every stream without a route writes into, so one stream's full table "
            f"would remove the profiles of another: {fix}."
        )
        return
    routes = config.get("stream_routes") or {}
    writers: list[str] = []
    if isinstance(routes, Mapping):
        for pattern, route in routes.items():
            entry = {"database": route} if isinstance(route, (str, int)) else route
            if not isinstance(entry, Mapping) or entry.get("collection"):
                continue  # subprofiles are never mirrored
            routed = _id_or_name(entry.get("database"))
            if routed is not None and routed.casefold() == name:
                writers.append(str(pattern))
    patterns = [w for w in writers if any(c in w for c in "*?[")]
    if len(writers) > 1 or patterns:
        errors.append(
            f"`mirror_scope.database` '{scope.database}' is routed to by "
            f"{'pattern(s) ' + str(patterns) if patterns else 'streams ' + str(writers)}, "
            f"so one stream's full table would remove the profiles of another: {fix}."
        )


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
    mirror: MirrorSettings | None = None

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
        mirror = MirrorSettings.from_config(config, errors)
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
            mirror=mirror,
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
