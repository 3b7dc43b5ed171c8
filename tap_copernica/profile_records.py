"""Pages of profiles and subprofiles decoded straight into their records.

Each page is decoded by msgspec into structs made for the stream's rows (about half the time
of decoding dictionaries), and each record is built from a struct by a function written for
the stream's columns. The generic streams (`profiles`, `subprofiles`) keep the row's `fields`
object as the API sends it; a typed table (`typed.py`) has one column per field, every
value a string in the API's rows, read by its field's type (text as it is, one reading per
typed value).

A page the structs do not fit (a row without one of the usual keys, an ID that is not a
string or a number, a typed table's value that is not a string, `fields` sent as a list) is
decoded as plain JSON and built row by row, as is a page holding a value its field's type
cannot read: that path decides such values (`FieldReader.decide`), and `finish` counts them
as their record is emitted. Both paths
give the same records.

Records leave here with `modified` as the API sent it, since the stream's cursor and bookmark
compare the API's own strings; `finish` converts it as the record is emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast
from zoneinfo import ZoneInfo

import msgspec

from copernica_api.fields import FieldReader, field_type
from copernica_api.payloads import dict_rows, plain_json, struct_decoder
from copernica_api.timeutil import iso_converter
from tap_copernica.record_shape import RecordShape

#: The field type read as the API's string itself.
TEXT = field_type("text")
#: Distinct values remembered per date column (bounds memory on unique values).
MAX_KNOWN_VALUES = 4096
_UNKNOWN = object()
#: Where a record built row by row carries the values that did not fit their field's type
#: until `finish` counts them and takes the key off, before the record is emitted.
UNFIT = "\x00unfit"
#: What a typed value's reading raises when `FieldReader.decide` must decide.
_UNREAD = (ValueError, TypeError, OverflowError)
Read = Callable[[str], Any]


@dataclass(frozen=True)
class RecordLayout:
    """What a stream's records hold: the values the API sends with each row that are
    columns (in its order), and for a typed table each field's column and Copernica type
    (None: `fields` is one of the row's values, kept as it is)."""

    entity_keys: tuple[str, ...]
    fields: tuple[tuple[str, str, str], ...] | None  # (field name, column, Copernica type)
    shape: RecordShape  # the generic stream's: which row values are IDs and timestamps
    declared: frozenset[str]  # the schema's properties


class ProfileRecords:
    """Decodes one stream's pages into its records (see the module docstring)."""

    def __init__(self, layout: RecordLayout, tz: ZoneInfo, *, utc: bool) -> None:
        fields = layout.fields or ()
        self.reader = FieldReader({name: kind for name, _, kind in fields}, tz, utc=utc)
        self.layout = layout
        self._timestamp = iso_converter(tz, utc=utc)
        # The row by row path: the generic stream's shape, but `modified` left for `finish`.
        shape = layout.shape
        self._shape = replace(
            shape, timestamps=tuple(t for t in shape.timestamps if t != "modified")
        )
        self._tz, self._utc = tz, utc
        names = None if layout.fields is None else [name for name, _, _ in fields]
        try:
            page = _page_struct(layout.entity_keys, shape.integers, names)
        except ValueError:  # a name msgspec cannot match (`"`, `\\`): every page row by row
            self._decoder: Callable[[bytes], Any | None] | None = None
        else:
            self._decoder = struct_decoder(page)
        text = [(n, c) for n, c, kind in fields if field_type(kind) is TEXT]
        typed = [(n, c, kind) for n, c, kind in fields if field_type(kind) is not TEXT]
        attribute = {name: f"f{i}" for i, (name, _, _) in enumerate(fields)}
        self._known = {n: _known_values(kind, tz) for n, _, kind in typed}
        self._record = _record_builder(
            [(key, f"e{i}", self._entity_read(key)) for i, key in enumerate(layout.entity_keys)],
            [(column, attribute[name]) for name, column in text],
            [(c, attribute[n], self._fast_read(n, kind)) for n, c, kind in typed],
        )
        self._text_columns = text
        self._typed_columns = [(n, c, self._known[n]) for n, c, _ in typed]

    # -- the page -------------------------------------------------------------------------
    def decode(self, content: bytes) -> dict[str, Any]:
        """The page as the API's paging wrapper, its `data` the table's records.

        Raises `msgspec.DecodeError` (not a `ValidationError`) when the body is not
        complete JSON, as decoding it plainly would.
        """
        page = None if self._decoder is None else self._decoder(content)
        if page is not None:
            try:
                return {"data": [self._record(row) for row in page.data]}
            except _UNREAD:  # a value only `FieldReader.decide` can decide: the page goes there
                pass
        return self._row_by_row(plain_json(content))

    def finish(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as it is emitted: `modified` converted like the other timestamps, and
        the values that did not fit their field's type counted now that they are loaded."""
        if "modified" in record:
            record["modified"] = self._timestamp(record["modified"])
        unfit = record.pop(UNFIT, None)
        if unfit is not None:
            for name, value in unfit:
                self.reader.count(name, value)
        return record

    # -- the quick path: a struct per row -------------------------------------------------
    def _entity_read(self, key: str) -> Read | None:
        """How an entity value becomes its column: an ID by `int` (anything else raises,
        and the row by row path reads it as `to_int` does), a timestamp converted, `modified`
        and the rest as they are."""
        if key in self.layout.shape.integers:
            return int
        if key in self._shape.timestamps:
            return self._timestamp
        return None

    def _fast_read(self, name: str, kind: str) -> Read:
        """The reading of a non-empty value of field `name`: the typed value, or an error
        where `FieldReader.decide` must decide. Dates are read once per distinct value."""
        read = self.reader.strict(name)
        known = self._known[name]
        if known is None:
            return read

        def read_date(value: str) -> Any:
            typed = known.get(value, _UNKNOWN)
            if typed is _UNKNOWN:
                typed = read(value)
                if typed is not None and len(known) < MAX_KNOWN_VALUES:
                    known[value] = typed
            return typed

        return read_date

    # -- the general path: dictionaries, row by row ---------------------------------------
    def _row_by_row(self, payload: Any) -> dict[str, Any]:
        """The page's rows as `dict_rows` finds them (also a bare array), each built."""
        return {"data": [self._built(row) for row in dict_rows(payload)]}

    def _built(self, row: dict[str, Any]) -> dict[str, Any]:
        """One record from the API's row, each value decided by `FieldReader.decide`."""
        given_id = row.get("ID")
        record = self._shape.apply(row, self._tz, utc=self._utc)
        if record.get("ID") is None and isinstance(given_id, str):
            # Text that is no ID: left as sent, so the cursor refuses the page as it did.
            record["ID"] = given_id
        unfit = self._columns_of(record) if self.layout.fields is not None else []
        declared = self.layout.declared
        if not declared.issuperset(record):
            record = {k: v for k, v in record.items() if k in declared}
        if unfit:  # counted when the record is emitted (`finish`), not for rows left out
            record[UNFIT] = unfit
        return record

    def _columns_of(self, record: dict[str, Any]) -> list[tuple[str, Any]]:
        """A typed table's columns in place of the record's `fields`; the values that did
        not fit their field's type."""
        values = record.pop("fields", None) or {}
        if not isinstance(values, dict):
            values = {}
        for name, column in self._text_columns:
            value = values.get(name)
            record[column] = value if value is None or value.__class__ is str else str(value)
        decide = self.reader.decide
        unfit: list[tuple[str, Any]] = []
        for name, column, known in self._typed_columns:
            value = values.get(name)
            if value is None or value == "":  # no value, for every type
                record[column] = None
                continue
            remembered = known is not None and value.__class__ is str
            typed = known.get(value, _UNKNOWN) if remembered else _UNKNOWN  # type: ignore[union-attr]
            if typed is _UNKNOWN:
                typed, fits = decide(name, value)
                if not fits:
                    unfit.append((name, value))
            record[column] = typed
        return unfit


def _record_builder(
    entity: Sequence[tuple[str, str, Read | None]],
    texts: Sequence[tuple[str, str]],
    typed: Sequence[tuple[str, str, Read]],
) -> Callable[[Any], dict[str, Any]]:
    """The function that builds a record from a row struct (`_page_struct`), written for
    the table as one dictionary display (as `dataclasses` writes `__init__`): a loop over
    the columns cost as much again per profile (measured). `entity` holds (key, attribute,
    reading or None), `texts` (column, attribute), `typed` (column, attribute, reading);
    an empty typed value is null. Names enter the code only as `repr` literals."""
    namespace: dict[str, Any] = {}
    lines = ["def build(row):", "    fields = row.fields" if texts or typed else "", "    return {"]
    for key, attribute, read in entity:
        if read is None:
            lines.append(f"        {key!r}: row.{attribute},")
        else:
            namespace[f"read_{attribute}"] = read
            lines.append(f"        {key!r}: read_{attribute}(row.{attribute}),")
    lines += [f"        {column!r}: fields.{attribute}," for column, attribute in texts]
    for column, attribute, read in typed:
        namespace[f"read_{attribute}"] = read
        value = f"(value := fields.{attribute})"
        lines.append(f"        {column!r}: read_{attribute}(value) if {value} else None,")
    lines.append("    }")
    exec("\n".join(lines), namespace)  # noqa: S102 (code written here, from literals)
    return cast("Callable[[Any], dict[str, Any]]", namespace["build"])


def _page_struct(
    entity_keys: Sequence[str], integers: Sequence[str], field_names: Sequence[str] | None
) -> type:
    """The msgspec types of a page: each row's values that are columns (all present; IDs a
    string or a number, the others any JSON) and, for a typed table, its fields (strings; a
    field the row leaves out is None, as the row by row path reads it). A boolean or null
    ID fits neither and sends the page the general way, which reads it as `to_int` does.
    Attributes are numbered (`e0`, `f0`, ...): field names need not be identifiers."""
    ids: Any = str | int
    columns: list[tuple[str, Any]] = [
        (f"e{i}", ids if key in integers else Any) for i, key in enumerate(entity_keys)
    ]
    names = {f"e{i}": key for i, key in enumerate(entity_keys)}
    if field_names is not None:
        fields = msgspec.defstruct(
            "Fields",
            [(f"f{i}", str | None, None) for i in range(len(field_names))],
            rename={f"f{i}": name for i, name in enumerate(field_names)},
            gc=False,  # strings only: no reference cycles to collect
        )
        columns.append(("fields", fields))
        names["fields"] = "fields"
    row = msgspec.defstruct("Row", columns, rename=names)
    return msgspec.defstruct("Page", [("data", list[row])])  # type: ignore[valid-type]


def _known_values(kind: str, tz: ZoneInfo) -> dict[Any, Any] | None:
    """A date column's remembered readings (dates repeat across profiles: birthdays, order
    days); None for the others (numbers are read as fast as they are looked up, and
    date-times are mostly distinct). It starts with the API's empty values that read as
    null (never counted as unreadable) for this type."""
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


def row_keeper(
    since: str | None, skip: Collection[int], seen: Collection[int]
) -> Callable[[dict[str, Any]], bool] | None:
    """Which rows of an ID-ordered scan page are emitted (None: all of them): those modified
    at or after `since`, less the IDs in `skip`, and the IDs in `seen` when their `modified`
    is exactly `since` (emitted by the run that left that bookmark)."""
    if since is None and not skip:
        return None

    def keep(row: dict[str, Any]) -> bool:
        value = str(row.get("modified") or "")
        if since is not None and value < since:
            return False
        if not skip and not seen:
            return True
        row_id = int(row["ID"])
        return row_id not in skip and not (value == since and row_id in seen)

    return keep
