"""Paging strategies: which query parameters the next page needs, and which rows are new.

Copernica pages with `start` (a row offset) and `limit` (at most 1000). Offsets shift when
rows are inserted or deleted while a client pages, so a plain offset loop skips or repeats
rows on a live database. Three strategies, from simple to exact:

- `StartLimitPaginator`: offsets, for small structure lists (databases, fields, ...).
- `IdListPaginator`: offsets over an ascending ID list, each page overlapping the previous
  one by a row; a page that no longer reaches back to the last ID seen is fetched again
  further back, so a delete before the offset cannot hide an ID.
- `ProfileCursor`: keyset paging with `fields` filters, ordered by (`modified`, ID), or by ID
  alone for full loads; every request starts at offset 0, so changes elsewhere cannot move it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from singer_sdk.pagination import BaseAPIPaginator

from copernica_api.payloads import payload_of, rows_of
from tap_copernica.profile_records import row_keeper

if TYPE_CHECKING:
    import requests

Params = dict[str, Any]


def next_offset(token: Params, count: int, page_size: int, *, overlap: int = 0) -> Params | None:
    """The offset after a full page of `count` rows asked with `token` (`overlap` rows
    asked again); None after a short page, or for a request without an offset."""
    if count < page_size or "start" not in token:
        return None
    return {"start": int(token["start"]) + count - overlap}


class StartLimitPaginator(BaseAPIPaginator[Params]):
    """Offset paging that stops at the first page shorter than the limit."""

    def __init__(self, page_size: int) -> None:
        super().__init__({"start": 0})
        self.page_size = page_size

    def get_next(self, response: requests.Response) -> Params | None:
        """The next offset, or None after a short page."""
        count = len(rows_of(payload_of(response)))
        return self.following(self.current_value, count, self.page_size)

    @staticmethod
    def following(token: Params, count: int, page_size: int) -> Params | None:
        """The request after a page of `count` rows asked with `token`; None after a short
        page (also what a page read ahead sends next, `ListStream.following_page`)."""
        return next_offset(token, count, page_size)


class IdListPaginator(BaseAPIPaginator[Params]):
    """Exact paging over an ascending list of IDs served by offset."""

    def __init__(self, page_size: int, *, paged: bool = True) -> None:
        super().__init__({"start": 0} if paged else {})
        self.page_size = page_size
        self.paged = paged  # some ID lists take no paging parameters and send every ID
        self.last_id: int | None = None
        self._next: Params | None = None

    def accept(self, ids: Sequence[int]) -> list[int]:
        """Return the IDs of this page not emitted before, and plan the next request."""
        if not self.paged:
            self._next = None
            return list(ids)
        start = int(self.current_value["start"])
        if ids and any(b <= a for a, b in itertools.pairwise(ids)):
            msg = "the API returned profile IDs out of ascending order; cannot page them safely"
            raise ValueError(msg)
        if self.last_id is not None and start > 0 and (not ids or ids[0] > self.last_id):
            # Rows before our offset were deleted: step back until the page overlaps again.
            self._next = {"start": max(0, start - self.page_size)}
            return []
        fresh = [i for i in ids if self.last_id is None or i > self.last_id]
        if fresh:
            self.last_id = fresh[-1]
        self._next = self.following(self.current_value, len(ids), self.page_size)
        return fresh

    @staticmethod
    def following(token: Params, count: int, page_size: int) -> Params | None:
        """The request after a full page of `count` IDs asked with `token` when nothing was
        deleted meanwhile (also what a page read ahead sends next); None after a short page.
        Pages overlap by one ID: the next starts at (or before) this page's last ID."""
        return next_offset(token, count, page_size, overlap=1)

    def get_next(self, response: Any) -> Params | None:
        """The request planned by `accept`."""
        return self._next

    def continue_if_empty(self, response: Any) -> bool:
        """A page with nothing new (a step back) is not the end."""
        return self._next is not None


@dataclass
class ProfileCursor:
    """Exact, resumable paging of profiles or subprofiles.

    Modes:
    - `modified`: `fields[]=modified>=B` ordered by `modified`. Rows at the last value of a
      page may continue on the next page, so the IDs emitted at that value are remembered
      and skipped when the next page (which starts at that value again) repeats them.
    - tie (inside `modified`): when one `modified` value fills a page, page through that
      value by ID (`modified==B`, `id>N`), then continue with `modified>B`.
    - `id`: `fields[]=id>N` ordered by ID, for a first full load, or when a database has a
      field called `modified` (then a filter on `modified` means that field); `since` is
      then applied here, to the row's `modified` property. With `filtered`, the API also
      applies `since` (`fields[]=modified>=since`): a first sync from `start_date`, or the
      rest of an incremental run after a mass update. `skip` holds IDs emitted earlier in
      this run (left out whatever their `modified`), `seen` IDs emitted by the run before
      at exactly `since` (left out while they still have that value).
    """

    page_size: int
    by_id: bool = False
    boundary: str | None = None  # modified mode: the lower bound (API local string)
    seen: set[int] = field(default_factory=set)  # IDs already emitted at `boundary` / `since`
    since: str | None = None  # id mode: rows older than this are skipped
    after_id: int = 0
    strict: bool = False
    tie: bool = False
    done: bool = False
    filtered: bool = False  # id mode: the API filters on `since` too
    skip: set[int] = field(default_factory=set)  # id mode: IDs emitted before the scan

    def id_filters(self) -> list[str]:
        """The `fields[]` filters every page of an ID-ordered read carries besides the IDs."""
        return [f"modified>={self.since}"] if self.filtered and self.since is not None else []

    def params(self) -> Params:
        """Query parameters of the next page (the stream adds start=0, limit, total=false)."""
        if self.by_id:
            return {
                "orderby": "id",
                "order": "asc",
                "fields[]": [f"id>{self.after_id}", *self.id_filters()],
            }
        if self.tie:
            return {
                "orderby": "id",
                "order": "asc",
                "fields[]": [f"modified=={self.boundary}", f"id>{self.after_id}"],
            }
        filters = (
            []
            if self.boundary is None
            else [f"modified{'>' if self.strict else '>='}{self.boundary}"]
        )
        return {"orderby": "modified", "order": "asc", "fields[]": filters}

    def accept(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows of this page to emit, in order; plans the next page."""
        full = len(rows) >= self.page_size
        if self.by_id:
            return self._accept_by_id(rows, full)
        if self.tie:
            return self._accept_tie(rows, full)
        return self._accept_modified(rows, full)

    def _accept_by_id(self, rows: list[dict[str, Any]], full: bool) -> list[dict[str, Any]]:
        check_ascending(rows, self.after_id, None)
        if rows:
            self.after_id = int(rows[-1]["ID"])
        self.done = not full
        keep = self.keeper()
        return rows if keep is None else [r for r in rows if keep(r)]

    def keeper(self) -> Callable[[dict[str, Any]], bool] | None:
        """id mode: which rows of a page to emit; None when all of them."""
        return row_keeper(self.since, self.skip, self.seen)

    def _accept_tie(self, rows: list[dict[str, Any]], full: bool) -> list[dict[str, Any]]:
        if any(r.get("modified") != self.boundary for r in rows):
            msg = f"the API ignored the filter modified=={self.boundary}"
            raise ValueError(msg)
        fresh = [r for r in rows if int(r["ID"]) not in self.seen]
        if rows:
            self.after_id = int(rows[-1]["ID"])
        if not full:
            # Every row at `boundary` has been emitted: continue strictly after it.
            self.tie, self.strict, self.after_id = False, True, 0
            self.seen = set()
        return fresh

    def _accept_modified(self, rows: list[dict[str, Any]], full: bool) -> list[dict[str, Any]]:
        values = [str(r.get("modified") or "") for r in rows]
        if self.boundary is not None and any(v < self.boundary for v in values[:1]):
            msg = (
                f"the API returned a row modified at {values[0]} for the filter "
                f"modified>={self.boundary}; the `modified` filter was not applied"
            )
            raise ValueError(msg)
        if any(b < a for a, b in itertools.pairwise(values)):
            msg = "the API ignored `orderby=modified`; refusing to page inexactly"
            raise ValueError(msg)
        fresh = [
            r
            for r, v in zip(rows, values, strict=True)
            if not (v == self.boundary and int(r["ID"]) in self.seen)
        ]
        if not full:
            self.done = True
            return fresh
        last = values[-1]
        if last != self.boundary:
            self.boundary, self.seen = last, set()
        self.seen.update(int(r["ID"]) for r, v in zip(rows, values, strict=True) if v == last)
        self.strict = False
        # A page that is one value throughout, or a boundary group that would make every
        # next page mostly repeats: walk that value by ID instead.
        if values[0] == last or len(self.seen) >= self.page_size // 2:
            self.tie, self.after_id = True, 0
        return fresh


def check_ascending(rows: list[dict[str, Any]], low: int, high: int | None) -> None:
    """Refuse a page that is not strictly ascending by ID within `(low, high]`."""
    check_id_order([int(r["ID"]) for r in rows], low, high)


def check_id_order(ids: list[int], low: int, high: int | None) -> None:
    """Refuse IDs that are not strictly ascending within `(low, high]`."""
    outside = any(i <= low or (high is not None and i > high) for i in ids)
    if outside or any(b <= a for a, b in itertools.pairwise(ids)):
        msg = "the API ignored `orderby=id` or an `id` filter; refusing to page inexactly"
        raise ValueError(msg)


class CursorPaginator(BaseAPIPaginator[Params]):
    """Adapts a `ProfileCursor` to the SDK's paginator loop."""

    def __init__(self, cursor: ProfileCursor) -> None:
        super().__init__(cursor.params())
        self.cursor = cursor

    def get_next(self, response: Any) -> Params | None:
        """The cursor's next query, or None when it has read everything."""
        return None if self.cursor.done else self.cursor.params()

    def continue_if_empty(self, response: Any) -> bool:
        """A page of only repeats is not the end while the cursor has more to read."""
        return not self.cursor.done


def ids_of(rows: Iterable[Any]) -> list[int]:
    """Integer IDs from a bare ID list (the API may send them as numbers or strings)."""
    return [int(r) for r in rows]


#: A range spans at most this many pages' worth of IDs (and so holds at most that many rows).
MAX_SPAN_PAGES = 20


@dataclass
class IdRangePlanner:
    """Splits an ID-ordered read into ranges `(lo, hi]` that can be fetched side by side.

    A range query `id>lo&id<=hi` returns every live row in it, so ranges read in parallel are
    as exact as one keyset read. The span of the next range follows the ID density seen so
    far, aiming at a page that is 90 % full (or exactly a page of IDs, which cannot overflow,
    where IDs are dense); a range that still fills its page is finished by
    the reader (`id>last&id<=hi`). Past `max_id` (the highest ID when the scan began), the
    reader goes on with plain `id>` pages, to catch profiles inserted meanwhile.
    """

    page_size: int
    after_id: int
    max_id: int
    span: int
    #: the widest span, in IDs; filtered reads (sparse rows) may plan wider ranges
    max_span_pages: int = MAX_SPAN_PAGES

    def ranges(self) -> Iterator[tuple[int, int]]:
        """The next ranges up to `max_id`; each span is planned when it is asked for."""
        low = self.after_id
        while low < self.max_id:
            high = min(self.max_id, low + self.span)
            yield low, high
            low = high

    def observe(self, low: int, high: int, rows: int) -> None:
        """Tune the span from the range just finished (rows it held over the IDs it covered).

        The latest range speaks for the IDs ahead (databases share one ID space, so density
        changes where another database's profiles were created); the span stays within
        `max_span_pages` pages of IDs, so one misjudged range costs few extra pages (the
        reader bounds what a range holds in memory by reading a denser one on in turn).
        """
        density = rows / max(high - low, 1)
        wanted = int(0.9 * self.page_size / density) if rows else self.span * 4
        # A span of at most a page of IDs can never overflow its page (IDs are unique): in
        # a dense stretch, that gives full pages where 90 % would need a tenth more requests.
        self.span = max(self.page_size, min(wanted, self.max_span_pages * self.page_size))

    @staticmethod
    def range_params(low: int, high: int, filters: Sequence[str] = ()) -> Params:
        """Query parameters of one range page, ascending by ID (`filters` ANDed to it)."""
        return {
            "orderby": "id",
            "order": "asc",
            "fields[]": [f"id>{low}", f"id<={high}", *filters],
        }
