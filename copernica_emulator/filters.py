"""The ``fields[]`` filter of profile/subprofile lists (`rest-fields-parameter.md`).

Beyond the page, as the API behaves: an expression that does not parse or names an unknown
field is ignored, not refused; a database field called ``id``, ``modified`` or ``code`` wins over
the special name; numeric fields compare by their leading number, text fields case-insensitively.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .fieldtypes import CompareKind, compare_kind, leading_number
from .model import FieldDef, find_field

PHP_TRIM = " \t\n\r\0\x0b"  # what PHP's trim() removes, and nothing more
TWO_CHAR_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=~", "!~")
ONE_CHAR_OPERATORS = ("<", ">")
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


class Row(Protocol):
    """What a filterable row (profile or subprofile) offers."""

    id: int
    fields: dict[str, str]
    modified: str
    secret: str


Getter = Callable[[Row], str]


@dataclass(frozen=True)
class Condition:
    """One parsed ``<name><op><value>`` expression bound to a value getter."""

    getter: Getter
    kind: CompareKind
    operator: str
    value: str

    def test(self, row: Row) -> bool:
        return compare(self.getter(row), self.operator, self.value, self.kind)


def split_expression(expression: str) -> tuple[str, str, str] | None:
    """Split at the first operator occurrence, trying two-char operators first; the whole
    expression is trimmed first: Copernica trims the ends of a `fields[]` expression, as PHP's
    `trim` does."""
    text = expression.strip(PHP_TRIM)
    for position in range(len(text)):
        pair = text[position : position + 2]
        if pair in TWO_CHAR_OPERATORS:
            return text[:position], pair, text[position + 2 :]
        if text[position] in ONE_CHAR_OPERATORS:
            return text[:position], text[position], text[position + 1 :]
    return None


def _field_getter(name: str) -> Getter:
    return lambda row: row.fields.get(name, "")


def resolve_name(name: str, fields: Sequence[FieldDef]) -> tuple[Getter, CompareKind] | None:
    """A real field wins over the special names ``id``, ``modified`` and ``code``."""
    field = find_field(fields, name)
    if field is not None:
        return _field_getter(field.name), compare_kind(field.type)
    special = name.lower()
    if special == "id":
        return (lambda row: str(row.id)), "number"
    if special == "modified":
        return (lambda row: row.modified), "date"
    if special == "code":
        return (lambda row: row.secret), "ci"
    return None


def parse_conditions(expressions: Sequence[str], fields: Sequence[FieldDef]) -> list[Condition]:
    """Parse all expressions; unparseable ones and unknown names are silently dropped."""
    conditions: list[Condition] = []
    for expression in expressions:
        parts = split_expression(expression)
        if parts is None:
            continue
        name, operator, value = parts
        resolved = resolve_name(name, fields)
        if resolved is not None:
            conditions.append(Condition(resolved[0], resolved[1], operator, value))
    return conditions


def like(value: str, pattern: str, *, case_sensitive: bool) -> bool:
    """SQL LIKE: ``%`` any run, ``_`` one character, backslash escapes."""
    parts: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.fullmatch("".join(parts), value, flags) is not None


def compare(left: str, op: str, right: str, kind: CompareKind) -> bool:
    """Evaluate ``left <op> right`` with the comparison rules of ``kind``."""
    if op in ("=~", "!~"):
        matched = like(left, right, case_sensitive=kind in ("cs", "date"))
        return matched if op == "=~" else not matched
    if kind == "number":
        return ORDERINGS[op](leading_number(left), leading_number(right))
    if kind == "ci":
        return ORDERINGS[op](left.casefold(), right.casefold())
    if kind == "date":
        return ORDERINGS[op](left, right.strip())
    return ORDERINGS[op](left, right)
