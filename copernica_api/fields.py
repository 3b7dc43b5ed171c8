"""Copernica field types: the JSON Schema of each, and its value conversion in both directions.

The API returns every field value as a string and coerces whatever it is sent (see the
contract, g.2). Each type has exactly one reader (API string to typed value, for the tap)
and one writer (typed value to the string the API expects, for the target).
A value that cannot be read becomes null and is counted, never a crash and never a silent 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.timeutil import (
    ZERO_TIMESTAMPS,
    api_text,
    api_to_iso,
    api_to_utc,
    iso_converter,
    parse_instant,
)

Reader = Callable[[str, ZoneInfo], Any]
Writer = Callable[[Any, ZoneInfo], str]


class UnreadableValueError(ValueError):
    """A value the API sent that does not fit its field's type."""


def _read_text(value: str, tz: ZoneInfo) -> str:
    return value


def _write_text(value: Any, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)


def _read_integer(value: str, tz: ZoneInfo) -> int | None:
    text = value.strip()
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "12.0" is an integer field's value in some exports
        if not number.is_integer():
            raise UnreadableValueError(value) from None
        return int(number)


def _write_integer(value: Any, tz: ZoneInfo) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    number = float(value)
    if not number.is_integer():
        msg = f"{value!r} is not a whole number"
        raise ValueError(msg)
    return str(int(number))


def _read_float(value: str, tz: ZoneInfo) -> float | None:
    text = value.strip()
    return None if text == "" else float(text)


def _write_float(value: Any, tz: ZoneInfo) -> str:
    if value is None or value == "":
        return ""
    return repr(float(value))


def _read_foreign_key(value: str, tz: ZoneInfo) -> int | None:
    number = _read_integer(value, tz)
    return None if number in (None, 0) else number


def _read_date(value: str, tz: ZoneInfo) -> str | None:
    text = value.strip()
    if text in ZERO_TIMESTAMPS:
        return None
    return dt.date.fromisoformat(text[:10]).isoformat()


def _is_zero_date(value: Any) -> bool:
    """The API's own "no date" values (as the tap emits them raw): written as empty."""
    return isinstance(value, str) and value.strip() in ZERO_TIMESTAMPS


def _write_date(value: Any, tz: ZoneInfo) -> str:
    if value is None or value == "" or _is_zero_date(value):
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(tz).date().isoformat() if value.tzinfo else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if len(text) > 10:  # a date-time: its date in the account's zone
        return parse_instant(text, tz).astimezone(tz).date().isoformat()
    return dt.date.fromisoformat(text).isoformat()


def _datetime_reader(convert: Callable[[str, ZoneInfo], str | None]) -> Reader:
    """A date-time field's reader writing ISO 8601 with `convert` (offset, or UTC)."""

    def read(value: str, tz: ZoneInfo) -> str | None:
        converted = convert(value, tz)  # the API's own layout: the usual case, and the fast one
        if converted is not None:
            return converted
        text = value.strip()
        if text in ZERO_TIMESTAMPS or text.startswith("0000-00-00"):
            return None
        converted = convert(text, tz)
        if converted is None:
            raise UnreadableValueError(value)
        return converted

    return read


_read_datetime = _datetime_reader(api_to_iso)
_read_datetime_utc = _datetime_reader(api_to_utc)


def _write_datetime(value: Any, tz: ZoneInfo) -> str:
    if value is None or value == "" or _is_zero_date(value):
        return ""
    instant = value if isinstance(value, dt.datetime) else parse_instant(str(value), tz)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=tz)
    return api_text(instant.astimezone(tz))


@dataclass(frozen=True)
class FieldType:
    """One Copernica field type."""

    schema: dict[str, Any]
    read: Reader
    write: Writer


_STRING = FieldType({"type": ["string", "null"]}, _read_text, _write_text)
_DATE = FieldType({"type": ["string", "null"], "format": "date"}, _read_date, _write_date)
_DATETIME = FieldType(
    {"type": ["string", "null"], "format": "date-time"}, _read_datetime, _write_datetime
)
#: `utc_timestamps`: the same schema and writer, read as UTC (`...Z`) instead of the offset.
_DATETIME_UTC = FieldType(_DATETIME.schema, _read_datetime_utc, _write_datetime)

#: Every type the API documents (restv4 POST database fields), plus product-doc names.
FIELD_TYPES: dict[str, FieldType] = {
    "text": _STRING,
    "email": _STRING,
    "phone": _STRING,
    "phone_fax": _STRING,
    "phone_gsm": _STRING,
    "select": _STRING,
    "big": _STRING,
    "country": _STRING,
    "integer": FieldType({"type": ["integer", "null"]}, _read_integer, _write_integer),
    "float": FieldType({"type": ["number", "null"]}, _read_float, _write_float),
    "date": _DATE,
    "empty_date": _DATE,
    "datetime": _DATETIME,
    "empty_datetime": _DATETIME,
    "foreign_key": FieldType({"type": ["integer", "null"]}, _read_foreign_key, _write_integer),
}


def field_type(name: str | None) -> FieldType:
    """The type named by a field definition; unknown (future) types are read as strings."""
    return FIELD_TYPES.get(str(name or "").lower(), _STRING)


class FieldReader:
    """Reads the field values of one stream, counting what could not be read per field."""

    def __init__(self, types: dict[str, str], tz: ZoneInfo, *, utc: bool = False) -> None:
        """`utc`: date-times as UTC (`...Z`) rather than with the account's offset."""
        self._types = {name: field_type(kind) for name, kind in types.items()}
        if utc:
            self._types = {
                name: _DATETIME_UTC if kind is _DATETIME else kind
                for name, kind in self._types.items()
            }
        self._tz = tz
        self.unreadable: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._counting = threading.Lock()

    def strict(self, name: str) -> Callable[[str], Any]:
        """The reading of a non-empty string value of field `name`, for hot loops: Python's
        own `int`/`float` for numbers, the type's reader for the others. It raises where
        `read` must decide: a value `int` refuses that `read` may take (`" 12 "`, `"12.0"`),
        or one that does not fit its type (which `read` counts)."""
        kind = self._types.get(name, _STRING)
        if kind is FIELD_TYPES["integer"]:
            return int
        if kind is FIELD_TYPES["float"]:
            return float
        read, tz = kind.read, self._tz
        if kind is _DATETIME or kind is _DATETIME_UTC:
            convert = iso_converter(tz, utc=kind is _DATETIME_UTC)
            # The usual value converted at once; anything else decided by the reader.
            return lambda value: convert(value) or read(value, tz)
        return lambda value: read(value, tz)

    def read(self, name: str, value: Any) -> Any:
        """The typed value of field `name`; None (and counted) when it does not fit."""
        typed, fits = self.decide(name, value)
        if not fits:
            self.count(name, value)
        return typed

    def decide(self, name: str, value: Any) -> tuple[Any, bool]:
        """(the typed value of field `name`, whether the value fits its type); a value that
        does not fit reads as None and is not counted here (`count`, when it is loaded)."""
        kind = self._types.get(name, _STRING)
        if value is None:
            return None, True
        if not isinstance(value, str):
            value = str(value)
        try:
            return kind.read(value, self._tz), True
        except (ValueError, TypeError, OverflowError):
            return None, False

    def count(self, name: str, value: Any) -> None:
        """Count a value of field `name` that did not fit its type and was loaded as null."""
        with self._counting:  # pages may be read on several threads
            self.unreadable[name] += 1
            self.examples.setdefault(name, str(value)[:40])

    def report(self, logger: logging.Logger, stream: str) -> None:
        """One warning per field whose values could not all be read."""
        with self._counting:  # a snapshot, taken as the counts are kept: under the lock
            counts, examples = sorted(self.unreadable.items()), dict(self.examples)
        for name, count in counts:
            logger.warning(
                "Stream '%s': %d value(s) of field '%s' did not fit its type and were loaded "
                "as null (e.g. %r). Check the field's type in Copernica.",
                stream,
                count,
                name,
                examples.get(name, ""),
            )
