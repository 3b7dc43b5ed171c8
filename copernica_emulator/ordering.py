"""``orderby`` / ``order`` for profile and subprofile lists (`rest-get-database-profiles.md`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from .fieldtypes import compare_kind, leading_number
from .filters import Row
from .model import FieldDef, find_field

R = TypeVar("R", bound=Row)
SortKey = Callable[[Row], "float | str"]


def is_descending(order: str | None) -> bool:
    return (order or "").strip().lower() in ("desc", "descending")


def _field_by_name_or_id(fields: Sequence[FieldDef], name: str) -> FieldDef | None:
    found = find_field(fields, name)
    if found is None and name.isdigit():
        found = next((f for f in fields if f.id == int(name)), None)
    return found


def sort_key(orderby: str | None, fields: Sequence[FieldDef]) -> SortKey | None:
    """Key for the requested order; None means by ID. ``modified`` is always the property."""
    name = (orderby or "").strip()
    if name.lower() in ("", "id"):
        return None
    if name.lower() == "modified":
        return lambda row: row.modified
    field = _field_by_name_or_id(fields, name)
    if field is None:
        return None  # unknown: silently the default order
    kind = compare_kind(field.type)
    if kind == "number":
        return lambda row: leading_number(row.fields.get(field.name, ""))
    if kind == "ci":
        return lambda row: row.fields.get(field.name, "").casefold()
    return lambda row: row.fields.get(field.name, "")


def order_rows(
    rows: Sequence[R],
    orderby: str | None,
    order: str | None,
    fields: Sequence[FieldDef],
    rng: random.Random,
    *,
    shuffle_ties: bool,
) -> list[R]:
    """Order rows; ties on a non-unique key come in ``rng`` order when ``shuffle_ties``."""
    descending = is_descending(order)
    if (orderby or "").strip().lower() == "random":
        shuffled = list(rows)
        rng.shuffle(shuffled)
        return shuffled
    key = sort_key(orderby, fields)
    base = sorted(rows, key=lambda row: row.id, reverse=descending)
    if key is None:
        return base
    if shuffle_ties:
        rng.shuffle(base)
    else:
        base.sort(key=lambda row: row.id)
    return sorted(base, key=key, reverse=descending)  # stable: ties keep the base order
