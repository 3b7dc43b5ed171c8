"""Parsing of query-string values the way the API reads them."""

from __future__ import annotations

import re
from collections.abc import Sequence

QueryPairs = Sequence[tuple[str, str]]

_INTEGER = re.compile(r"\s*[+-]?\d+")
_FILTER_KEY = re.compile(r"fields\[[^\]]*\]")


def is_true(text: str) -> bool:
    """The API's truthiness test: true/yes (any case) or a number with abs >= 1."""
    word = text.strip()
    if word.lower() in ("true", "yes"):
        return True
    try:
        return abs(float(word)) >= 1
    except ValueError:
        return False


def truthy(value: object) -> bool:
    """Truthiness of a JSON body value (interest maps such as ``{"news": 1}``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return abs(value) >= 1
    if isinstance(value, str):
        return is_true(value)
    return False


def int_param(text: str) -> int:
    """Integer value of a parameter: its leading integer, 1 for a true word, else 0."""
    match = _INTEGER.match(text)
    if match is not None:
        return int(match.group(0))
    return 1 if text.strip().lower() in ("true", "yes") else 0


def last(query: QueryPairs, name: str) -> str | None:
    """The last value of a (case-sensitive) parameter, as PHP would see it."""
    found: str | None = None
    for key, value in query:
        if key == name:
            found = value
    return found


def filter_expressions(query: QueryPairs) -> list[str]:
    """All ``fields[]=`` / ``fields[N]=`` values in order; a scalar ``fields`` is ignored."""
    return [value for key, value in query if _FILTER_KEY.fullmatch(key)]
