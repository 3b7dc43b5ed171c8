"""From a Singer record to a write: field values in the API's format, interests, the key.

Three record shapes are accepted:
- flat: `{"email": "a@b.nl", "firstname": "Anna", "interests": ["news"]}`;
- the tap's generic `profiles` / `subprofiles` shape: `{"ID": 1, "fields": {...},
  "interests": [...], ...}`;
- the tap's typed tables (`profiles_<db>`, `subprofiles_<db>_<collection>`): flat, with the
  entity columns `ID`, `secret`, `created`, `modified`, ... next to one column per field (a
  field named like an entity column is the column `<name>_field`).
The tap's entity columns describe the source row and are not written, so the tap's output
loads back unchanged. A tap subprofile names its parent by `profile`, the parent's ID in the
source account, which identifies nothing in the destination: subprofiles are written only
through a route with a collection and a `parent_key_property` holding the parent's key.
Values are converted with the destination field's writer from `copernica_api.fields`.
A record that cannot be written raises `Rejected` with the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.fields import field_type
from target_copernica.destination import Key, Structure
from target_copernica.settings import SELECTOR_TRIM, Route

DELETED_AT = "_sdc_deleted_at"
TAP_SHAPE_META = frozenset(
    {
        "ID",
        "id",
        "database_id",
        "collection_id",
        "profile",
        "secret",
        "created",
        "modified",
        "removed",
    }
)
#: The entity columns of the tap's typed tables: a flat record with all of these is the tap's.
TAP_TYPED_MARKERS = frozenset({"ID", "secret", "created", "modified"})
#: Suffix the tap gives a field named like an entity column (`modified` -> `modified_field`).
TAP_CLASH_SUFFIX = "_field"
_TAP_CLASHES = frozenset(
    name.casefold() for name in (*TAP_SHAPE_META, "interests", "collection", "fields")
)

#: Names Copernica accepts for new fields: a letter, then letters, digits, underscores.
FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
RESERVED_FIELD_NAMES = frozenset({"id", "code"})

Interests = list[str] | dict[str, int]


class Rejected(Exception):  # noqa: N818 (an outcome, reported per record)
    """The record cannot be written; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Item:
    """One record, ready to write."""

    seq: int
    record: dict[str, Any]
    delete: bool
    fields: dict[str, str]  # defined field name -> API value (key fields included)
    interests: Interests | None
    key_values: dict[str, str]  # defined key field name -> API value
    key: Key
    version: int | None = None  # the full-table version of its RECORD (mirror mode)
    parent_values: dict[str, str] | None = None  # subprofiles: parent key field -> value
    parent_key: Key | None = None
    epoch: int = 0  # how many STATE messages the target had read before this record
    truncated: int = 0  # values cut to their field's length (`truncate_long_values`)

    @property
    def group(self) -> tuple[Key | None, Key]:
        """Records in one group are written one after another, in input order."""
        return (self.parent_key, self.key)


def fingerprint_of(stream: str, item: Item) -> str:
    """What makes two records the same write: their stream and what is written (values,
    interests, parent)."""
    written = [stream, item.fields, item.interests, item.parent_values]
    text = json.dumps(written, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Plan:
    """How records of one shape (the same property names in the same order) are mapped."""

    nested: bool  # the values are in record["fields"] (the tap's shape)
    unknown: list[str]  # names the destination lacks, sorted: such records are rejected
    columns: tuple[tuple[str, str, str], ...]  # (source name, defined field, writer class)
    # (defined field, max characters or None, choices or None) of the columns whose values
    # Copernica would change: cut at the field's length, or a select's unknown choice emptied.
    checks: tuple[tuple[str, int | None, tuple[str, ...] | None], ...] = ()
    tap_subprofile: bool = False  # a subprofile as the tap emits it (parent by source ID)


# Writer classes `map` converts inline; _SLOW ones always go through `convert`.
_TEXT, _INTEGER, _FLOAT, _SLOW = "text", "integer", "float", "slow"
_FAST_WRITERS = {
    field_type("text").write: _TEXT,
    field_type("integer").write: _INTEGER,
    field_type("float").write: _FLOAT,
}
#: Integers the integer writer (which goes through float) writes as str(value).
_EXACT_INT = 2**53
MAX_PLANS = 256


def is_deleted(record: Mapping[str, Any]) -> bool:
    """Whether a record marks a delete (`_sdc_deleted_at` set)."""
    value = record.get(DELETED_AT)
    return value not in (None, "", False)


class RecordMapper:
    """Maps the records of one stream onto one destination."""

    def __init__(
        self,
        *,
        stream: str,
        route: Route,
        structure: Structure,
        parent: Structure | None,
        tz: ZoneInfo,
        ensure_interest: Callable[[str], str | None] | None = None,
        truncate: bool = False,
    ) -> None:
        self.stream = stream
        self.truncate = truncate  # cut too long text instead of rejecting the record
        self.route = route
        self.structure = structure
        self.parent = parent
        self.tz = tz
        self.key_fields = tuple(structure.field_name(k) or k for k in route.key_fields)
        # Per key field, looked up once: how values compare, and the field's length.
        self._key_rules = [
            (k, structure.normalizer(k), structure.max_length(k)) for k in self.key_fields
        ]
        self._ensure_interest = ensure_interest
        self.parent_field = (
            parent.field_name(route.parent_key_field or "") if parent is not None else None
        )
        # Column plans by record shape; see `_plan`.
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._plans_for = -1  # len(structure.names) the plans were made with
        self._fields_is_field = False  # the destination has a field called "fields"

    # -- values ------------------------------------------------------------------------
    def _plan(self, record: Mapping[str, Any], nested: Any) -> _Plan:
        """The plan for records of this shape: made once, then looked up (most streams have
        one or a few shapes); remade when fields were created since."""
        structure = self.structure
        if self._plans_for != len(structure.names):
            self._plans.clear()
            self._plans_for = len(structure.names)
            self._fields_is_field = structure.field_name("fields") is not None
        tap_shape = isinstance(nested, dict)
        from_nested = tap_shape and not self._fields_is_field
        shape = (tap_shape, tuple(nested if from_nested else record))
        plan = self._plans.get(shape)
        if plan is not None:
            return plan
        typed = not tap_shape and TAP_TYPED_MARKERS.issubset(record)
        tap_subprofile = (tap_shape or typed) and "profile" in record
        renamed: dict[str, str] = {}  # the typed tables' `<name>_field` columns -> field
        if from_nested:
            names = list(shape[1])  # the tap's shape: every nested field is written
        else:
            skip = {"interests", self.route.parent_key_property}
            names = [
                k
                for k in shape[1]
                if not k.startswith("_sdc_")
                and k not in skip
                and not ((tap_shape or typed) and k in TAP_SHAPE_META)
            ]
            if typed:
                renamed = {k: self._field_of_column(k) for k in names}
        unknown = sorted(
            renamed.get(k, k) for k in names if structure.field_name(renamed.get(k, k)) is None
        )
        columns = []
        checks = []
        for name in names:
            defined = structure.field_name(renamed.get(name, name)) or name
            writer = field_type(structure.field_type(defined)).write
            columns.append((name, defined, _FAST_WRITERS.get(writer, _SLOW)))
            choices = structure.choices_of(defined)
            # Key fields have their own length rule (`_key_value`): a cut key is never cut.
            limit = None if defined in self.key_fields else structure.max_length(defined)
            if choices is not None or limit is not None:
                checks.append((defined, limit, choices))
        if len(self._plans) >= MAX_PLANS:  # records of ever new shapes: keep memory flat
            self._plans.clear()
        plan = self._plans[shape] = _Plan(
            from_nested, unknown, tuple(columns), tuple(checks), tap_subprofile
        )
        return plan

    def _field_of_column(self, column: str) -> str:
        """The field a column of the tap's typed tables holds: `modified_field` is the field
        `modified` (the tap renames fields named like its entity columns), unless the
        destination has a field called `modified_field` itself."""
        base = column[: -len(TAP_CLASH_SUFFIX)]
        if (
            column.endswith(TAP_CLASH_SUFFIX)
            and base.casefold() in _TAP_CLASHES
            and self.structure.field_name(column) is None
        ):
            return base
        return column

    def _check(self, plan: _Plan, fields: dict[str, str]) -> int:
        """Refuse values Copernica would change without a word: text longer than its
        field (cut instead with `truncate_long_values`; returns how many were cut) and a
        select value that is not one of the field's choices (stored as empty)."""
        truncated = 0
        for name, limit, choices in plan.checks:
            value = fields[name]
            if choices is not None:
                if value and value not in choices:
                    msg = (
                        f"field '{name}': {value!r} is not one of the choices of this select "
                        f"field {list(choices)} (Copernica would store it as empty; choices "
                        f"match exactly, case included)"
                    )
                    raise Rejected(msg)
            elif limit is not None and len(value) > limit:
                if not self.truncate:
                    msg = (
                        f"field '{name}': the value has {len(value)} characters; the field "
                        f"holds at most {limit} (Copernica would cut it; lengthen the field, "
                        f"or set `truncate_long_values: true` to cut such values)"
                    )
                    raise Rejected(msg)
                fields[name] = value[:limit]
                truncated += 1
        return truncated

    def convert(self, structure: Structure, name: str, value: Any) -> str:
        """One value in the API's format for the field's type (Rejected if it cannot be).

        `map` converts null, text, integer and float values inline as this does; a change
        here must be made there too (`tests/test_target_units.py` compares the two)."""
        kind = structure.field_type(name)
        if isinstance(value, (dict, list)):
            if kind in ("text", "big"):
                return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            msg = f"field '{name}': an {type(value).__name__} cannot be written to a {kind} field"
            raise Rejected(msg)
        try:
            return field_type(kind).write(value, self.tz)
        except (ValueError, TypeError, OverflowError) as exc:
            raise Rejected(
                f"field '{name}': {value!r} is not a valid {kind} value ({exc})"
            ) from None

    def _interests(self, record: Mapping[str, Any]) -> Interests | None:
        if self.structure.kind != "database" or "interests" not in record:
            return None
        raw = record["interests"]
        if raw is None:
            return None
        if isinstance(raw, list):
            return [self._interest(str(name)) for name in raw]
        if isinstance(raw, dict):
            return {self._interest(str(name)): 1 if flag else 0 for name, flag in raw.items()}
        msg = "`interests` must be a list of names or an object of name -> true/false"
        raise Rejected(msg)

    def _interest(self, name: str) -> str:
        known = self.structure.interest_name(name)
        if known is None and self._ensure_interest is not None:
            known = self._ensure_interest(name)
        if known is None:
            msg = (
                f"interest '{name}' does not exist in database '{self.structure.name}' "
                f"(enable `create_missing_fields` to create it)"
            )
            raise Rejected(msg)
        return known

    @staticmethod
    def _key_value(name: str, value: str, limit: int | None) -> str:
        """A key value as it can be written and found again with a `fields[]` selector.

        Copernica trims the end of a selector expression (PHP `trim`), so a key ending in
        whitespace could never be found again: it is written without that whitespace.
        Whitespace before the value is part of the key, as Copernica's selectors compare it
        (`tests/test_selector_properties.py`). A key longer than its field is refused:
        Copernica would cut it, with the same result."""
        value = value.rstrip(SELECTOR_TRIM)
        if value.strip() == "":
            raise Rejected(f"key field '{name}' is missing or empty")
        if limit is not None and len(value) > limit:
            msg = (
                f"key field '{name}' holds {len(value)} characters; the field holds at most "
                f"{limit}, and a key cut to fit would never be found again (lengthen the "
                f"field in Copernica, or use another key)"
            )
            raise Rejected(msg)
        return value

    # -- the record --------------------------------------------------------------------
    def map(self, seq: int, record: dict[str, Any]) -> Item:
        """The write for one record; raises Rejected."""
        nested: Any = record.get("fields")
        plan = self._plan(record, nested)
        if plan.tap_subprofile and self.parent is None:
            msg = (
                f"a subprofile as tap-copernica emits it: its `profile` is the parent's ID in "
                f"the source account, which identifies no profile here. Route stream "
                f"'{self.stream}' to a collection (`stream_routes`: `collection`, and "
                f"`parent_key_property` naming a record property that holds the parent "
                f"profile's key, e.g. added with `stream_maps`)"
            )
            raise Rejected(msg)
        if plan.unknown:
            msg = (
                f"field(s) {plan.unknown} do not exist in {self.structure.kind} "
                f"'{self.structure.name}' (enable `create_missing_fields`, or drop them "
                f"with `stream_maps`)"
            )
            raise Rejected(msg)
        source = nested if plan.nested else record
        structure = self.structure
        fields: dict[str, str] = {}
        # The common values inline, exactly as their writers would convert them (this loop
        # runs for every value of every record); the rest through `convert`.
        for name, defined, kind in plan.columns:
            value = source[name]
            if value is None:
                fields[defined] = ""  # every writer writes None as ""
            elif kind is _TEXT and type(value) is str:
                fields[defined] = value
            elif kind is _INTEGER and type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
                fields[defined] = str(value)
            elif kind is _FLOAT and type(value) is float:
                fields[defined] = repr(value)
            else:
                fields[defined] = self.convert(structure, defined, value)
        delete = is_deleted(record)  # a delete writes no values: nothing to check
        truncated = self._check(plan, fields) if plan.checks and not delete else 0
        key_values: dict[str, str] = {}
        key_parts: list[str] = []
        for name, normalize, limit in self._key_rules:
            value = self._key_value(name, fields.get(name, ""), limit)
            fields[name] = key_values[name] = value
            key_parts.append(normalize(value))
        key = tuple(key_parts)
        item = Item(
            seq=seq,
            record=record,
            delete=delete,
            fields=fields,
            interests=None,
            key_values=key_values,
            key=key,
            truncated=truncated,
        )
        if not item.delete:
            item.interests = self._interests(record)
        if self.parent is not None:
            item.parent_values, item.parent_key = self._parent(record, plan)
        return item

    def key_of(self, record: Mapping[str, Any]) -> Key | None:
        """The normalized key of a record `map` rejected, as `map` would have made it; None
        when the record has no usable key (the mirror must then not guess)."""
        nested = record.get("fields")
        from_nested = isinstance(nested, dict) and self.structure.field_name("fields") is None
        source: Mapping[str, Any] = nested if isinstance(nested, dict) and from_nested else record
        typed = not from_nested and TAP_TYPED_MARKERS.issubset(record)
        by_field: dict[str, Any] = {}
        for name, value in source.items():
            if not isinstance(name, str) or name.startswith("_sdc_"):
                continue
            column = self._field_of_column(name) if typed else name
            defined = self.structure.field_name(column)
            if defined is not None:
                by_field.setdefault(defined, value)
        parts: list[str] = []
        try:
            for name, normalize, limit in self._key_rules:
                raw = by_field.get(name)
                value = "" if raw is None else self.convert(self.structure, name, raw)
                parts.append(normalize(self._key_value(name, value, limit)))
        except Rejected:
            return None
        return tuple(parts)

    def _parent(self, record: Mapping[str, Any], plan: _Plan) -> tuple[dict[str, str], Key]:
        prop = self.route.parent_key_property or ""
        assert self.parent is not None
        name = self.parent_field or ""
        raw = record.get(prop)
        if raw in (None, ""):
            msg = f"parent key property '{prop}' is missing or empty"
            if plan.tap_subprofile:
                msg += (
                    f" (a subprofile as tap-copernica emits it names its parent only by "
                    f"`profile`, the parent's ID in the source account, which identifies no "
                    f"profile here: add the parent's {name} to the records, e.g. with "
                    f"`stream_maps`, as '{prop}')"
                )
            raise Rejected(msg)
        value = self.convert(self.parent, name, raw).rstrip(SELECTOR_TRIM)
        return {name: value}, (self.parent.normalize(name, value),)


def last_writes(items: list[Item]) -> tuple[list[Item], int]:
    """A batch with one write per key (and parent) instead of several in a row: the last
    record of each run of records with the same key, with the values of the records before
    it that it does not set itself, so the result is what writing them one after another
    would leave, and an unchanged rerun changes nothing (`modified` stays). Deletes stay
    where they are and end a run. Returns the items to write and how many were left out.
    For upserts and updates only: every appended record is a row of its own."""
    kept: list[Item] = []
    latest: dict[tuple[Key | None, Key], Item] = {}
    superseded = 0
    for item in reversed(items):
        if item.delete:
            latest.pop(item.group, None)
            kept.append(item)
            continue
        later = latest.get(item.group)
        if later is None:
            latest[item.group] = item
            kept.append(item)
            continue
        later.fields = {**item.fields, **later.fields}
        later.interests = _later_interests(item.interests, later.interests)
        later.truncated += item.truncated
        superseded += 1
    kept.reverse()
    return kept, superseded


def _later_interests(earlier: Interests | None, later: Interests | None) -> Interests | None:
    """The interests two writes in a row leave: a list replaces the set, an object
    switches the interests it names."""
    if later is None:
        return earlier
    if earlier is None or isinstance(later, list):
        return later
    if isinstance(earlier, dict):
        return {**earlier, **later}
    names = dict.fromkeys(earlier)
    for name, flag in later.items():
        if flag:
            names[name] = None
        else:
            names.pop(name, None)
    return list(names)


def new_field_type(schema: Mapping[str, Any]) -> str:
    """The Copernica type for a new field, from the property's JSON Schema."""
    types = schema.get("type", "string")
    kinds = {types} if isinstance(types, str) else set(types)
    fmt = schema.get("format")
    if "integer" in kinds or "boolean" in kinds:
        return "integer"
    if "number" in kinds:
        return "float"
    if fmt == "date":
        return "empty_date"
    if fmt == "date-time":
        return "empty_datetime"
    max_length = schema.get("maxLength")
    if isinstance(max_length, int) and max_length > 255:
        return "big"
    return "text"


def creatable(name: str) -> bool:
    """Whether Copernica accepts `name` for a new field."""
    return FIELD_NAME.fullmatch(name) is not None and name.lower() not in RESERVED_FIELD_NAMES
