"""Copernica field types (`rest-post-database-fields.md`): how values are coerced, defaulted
and compared."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

ZERO_DATE = "0000-00-00"
ZERO_DATETIME = "0000-00-00 00:00:00"

TEXT_TYPES = frozenset({"text", "email", "phone", "phone_fax", "phone_gsm", "big"})
NUMERIC_TYPES = frozenset({"integer", "float", "foreign_key"})
DATE_TYPES: dict[str, str] = {"date": ZERO_DATE, "empty_date": ""}
DATETIME_TYPES: dict[str, str] = {"datetime": ZERO_DATETIME, "empty_datetime": ""}
ALL_TYPES = TEXT_TYPES | NUMERIC_TYPES | {"select"} | set(DATE_TYPES) | set(DATETIME_TYPES)

# How a value of a type is compared in filters and ordering:
# "number" numerically, "ci" case-insensitive string, "cs" case-sensitive string,
# "date" case-sensitive string that tolerates surrounding spaces in the filter value.
CompareKind = Literal["number", "ci", "cs", "date"]

_LEADING_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_YEAR_MONTH = re.compile(r"(\d{4})-(\d{1,2})")


def compare_kind(field_type: str) -> CompareKind:
    """Return how the API compares values of ``field_type``."""
    if field_type in NUMERIC_TYPES:
        return "number"
    if field_type == "select":
        return "cs"
    if field_type in DATE_TYPES or field_type in DATETIME_TYPES:
        return "date"
    return "ci"


def leading_number(text: str) -> float:
    """Parse the number a string starts with, like a lenient SQL cast; 0 when there is none."""
    match = _LEADING_NUMBER.match(text)
    if match is None:
        return 0.0
    value = float(match.group(0))
    return value if math.isfinite(value) else 0.0


def format_float(value: float) -> str:
    """Render a float the way the API does: no exponent, no trailing zeros."""
    if not math.isfinite(value):
        return "0"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def select_choices(spec: str) -> list[str]:
    """The choices of a select field: the non-empty lines of its ``value``, right-trimmed."""
    lines = spec.replace("\r\n", "\n").split("\n")
    return [line.rstrip() for line in lines if line.strip()]


def default_for_new_row(field_type: str, default: str, tz: ZoneInfo) -> str:
    """Value of a field on a newly created row that did not receive a value."""
    if field_type == "select":
        return ""
    return coerce(field_type, default, choices="", tz=tz)


def default_for_existing_row(field_type: str) -> str:
    """Value existing rows get when a field is added later (not the field's default)."""
    if field_type in NUMERIC_TYPES:
        return "0"
    if field_type in DATE_TYPES:
        return ZERO_DATE if field_type == "date" else ""
    if field_type in DATETIME_TYPES:
        return ZERO_DATETIME if field_type == "datetime" else ""
    return ""


LENGTH_LIMITED = frozenset({"text", "email", "phone", "phone_fax", "phone_gsm"})


def coerce(field_type: str, value: object, *, choices: str, tz: ZoneInfo) -> str:
    """Convert any written value to the string the API stores; values are never rejected."""
    if field_type in NUMERIC_TYPES:
        number = _to_number(value)
        return format_float(number) if field_type == "float" else str(int(number))
    text = _to_text(value)
    if field_type == "select":
        return text if text in select_choices(choices) else ""
    if field_type in DATE_TYPES:
        return _coerce_moment(text, DATE_TYPES[field_type], tz, with_time=False)
    if field_type in DATETIME_TYPES:
        return _coerce_moment(text, DATETIME_TYPES[field_type], tz, with_time=True)
    return text


def _to_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (int, str)):
        return str(value)
    return ""


def _to_number(value: object) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else 0.0
    if isinstance(value, str):
        return leading_number(value)
    return 0.0


def _coerce_moment(text: str, empty: str, tz: ZoneInfo, *, with_time: bool) -> str:
    stripped = text.strip()
    if stripped in (ZERO_DATE, ZERO_DATETIME):
        return ZERO_DATETIME if with_time else ZERO_DATE
    moment = parse_moment(stripped, tz)
    if moment is None:
        return empty
    day = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    if not with_time:
        return day
    return f"{day} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"


def parse_moment(text: str, tz: ZoneInfo) -> datetime | None:
    """Leniently parse a date/time into naive account-local time; None when unparseable."""
    if not text or text.isdigit():
        return None  # bare Unix times are not accepted, only "@<seconds>"
    if text.startswith("@") and text[1:].isdigit():
        return datetime.fromtimestamp(int(text[1:]), tz).replace(tzinfo=None)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not know "Z"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return _parse_year_month(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed


def _parse_year_month(text: str) -> datetime | None:
    match = _YEAR_MONTH.fullmatch(text)
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        return None
    return datetime(year, month, 1)
