"""``start`` / ``limit`` / ``total`` and the list wrapper (`rest-paging.md`): ``limit`` defaults
to 100 and is capped at 1000."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .params import QueryPairs, int_param, is_true, last

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    start: int
    limit: int  # effective (capped) limit, or the negative value as requested
    with_total: bool

    @property
    def empty(self) -> bool:
        return self.start < 0 or self.limit < 0

    def slice(self, rows: Sequence[T]) -> list[T]:
        if self.empty:
            return []
        return list(rows[self.start : self.start + self.limit])


def page_from(
    query: QueryPairs, *, default_limit: int = DEFAULT_LIMIT, max_limit: int = MAX_LIMIT
) -> Page:
    start_text, limit_text, total_text = (
        last(query, "start"),
        last(query, "limit"),
        last(query, "total"),
    )
    start = int_param(start_text) if start_text is not None else 0
    limit = int_param(limit_text) if limit_text is not None else default_limit
    with_total = is_true(total_text) if total_text is not None else True
    return Page(start, min(limit, max_limit), with_total)


def wrapped(rows: Sequence[T], page: Page, render: Callable[[T], Any]) -> dict[str, Any]:
    """The ``{start, limit, count, total, data}`` wrapper over already filtered, ordered rows."""
    data = [render(row) for row in page.slice(rows)]
    body: dict[str, Any] = {"start": page.start, "limit": page.limit, "count": len(data)}
    if page.with_total:
        body["total"] = len(rows)
    body["data"] = data
    return body
