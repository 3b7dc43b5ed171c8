"""Databases and what they hold: profiles, subprofiles, and the IDs of both.

- `DatabasesStream`: the databases (`database_ids` limits them).
- `IdListStream`: every live profile / subprofile ID, sent as a full table with
  ACTIVATE_VERSION so that targets mark the IDs that vanished (deleted profiles).
- `ProfileStream`: profiles and subprofiles, incremental on `modified`, paged exactly.

`STREAM_SPECS` declares the account's structure and the profile streams.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

from copernica_api.errors import CopernicaPagingError
from copernica_api.http import check_json_body
from copernica_api.payloads import dict_rows, payload_of, rows_of, to_int
from copernica_api.sdk_compat import extraction_time
from copernica_api.timeutil import settled_before
from tap_copernica import readahead
from tap_copernica.output import record_frame
from tap_copernica.page_helpers import EncodedPage, LineRecipe
from tap_copernica.paging import (
    MAX_SPAN_PAGES,
    CursorPaginator,
    IdListPaginator,
    IdRangePlanner,
    ProfileCursor,
    check_ascending,
    check_id_order,
    ids_of,
)
from tap_copernica.prefetch import in_order
from tap_copernica.profile_records import ProfileRecords, RecordLayout
from tap_copernica.readahead import Entry, Outcome, request_key
from tap_copernica.state import ProfileBookmark
from tap_copernica.streams.base import (
    ListStream,
    ObjectStream,
    OneObjectStream,
    RecordShape,
    StreamSpec,
)
from tap_copernica.streams.shaped import SchemaShapedStream

if TYPE_CHECKING:
    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_copernica.client import StreamServices


#: A page of a ranged scan: its rows, or its RECORD lines from a page helper.
_Page = list[dict] | EncodedPage
#: One request of a ranged scan: (low, high or None above the planned ranges, its pages,
#: the ID up to which they are complete).
_Part = tuple[int, int | None, list[_Page], int]
#: Where a range request carries the function that turns its page into RECORD lines.
_LINES_ATTR = "_copernica_lines"
#: Pages one range request reads at most; a denser range is read on when its turn comes.
RANGE_PAGES = 2
#: The widest range of a filtered scan, in pages of IDs (its rows may be sparse).
FILTERED_SPAN_PAGES = 200


class DatabasesStream(ListStream):
    """Databases, limited to `database_ids` when that setting is given."""

    def known_records(self, context: Context | None) -> list[dict[str, Any]] | None:
        """Every database, or the selected ones, from the list discovery read moments ago
        (one round trip less before the first profile page; and the children of each are
        read ahead from it)."""
        wanted = self.account.selected_database_ids()
        return [
            row
            for row in self.account.database_rows()
            if wanted is None or to_int(row.get("ID")) in wanted
        ]


class IdListStream(SchemaShapedStream):
    """Every live ID, as a full table with ACTIVATE_VERSION (targets then mark deletions).

    Its records (`{"profile_id": 1}`) are built to the schema: they are written straight
    into the output, as profiles are (the ID lists are as long as the profile tables).
    """

    spec: IdListSpec
    _paginator: IdListPaginator

    @property
    def emit_activate_version_messages(self) -> bool:
        """Always: carrying deletions downstream is what these streams are for."""
        return True

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One partition per database (or collection) the tap reads."""
        return self.account.id_list_partitions(self.name)

    def get_new_paginator(self) -> BaseAPIPaginator:
        """Offset pages verified to overlap, so deletes cannot hide an ID."""
        self._paginator = IdListPaginator(self.settings.page_size, paged=self.spec.paged)
        return self._paginator

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """start/limit for paged ID lists; nothing for the ones that take no parameters."""
        return {**next_page_token, "limit": self.settings.page_size} if self.spec.paged else {}

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The partition's first page (read ahead for every partition)."""
        return self.get_url_params(context, {"start": 0})

    def following_page(self, token: Any, response: requests.Response) -> Any | None:
        """The next overlapping page after a full one (`IdListPaginator.following`)."""
        if not self.spec.paged:
            return None
        ids = ids_of(rows_of(payload_of(response)))
        return IdListPaginator.following(token, len(ids), self.settings.page_size)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """One record per ID not emitted before in this partition."""
        self._extracted = extraction_time()
        fresh = self._paginator.accept(ids_of(rows_of(payload_of(response))))
        id_key = self.spec.id_key
        return [{id_key: i} for i in fresh]


class ProfileStream(SchemaShapedStream):
    """Profiles or subprofiles of one partition, incremental on `modified`, read exactly.

    The hot path: records are built to the schema here (`post_process`) and written
    straight into the output (`SchemaShapedStream`).
    """

    replication_key = "modified"
    # `ProfileBookmark` moves the bookmark for each record; the SDK's copy of the record's
    # `modified` would be wrong for ID-ordered scans.
    sdk_moves_bookmarks = False
    # Records come out in bookmark order and `ProfileBookmark` writes the STATE entry itself
    # (value, IDs at that value, scan position), so the SDK keeps no progress markers.
    is_sorted = True
    check_sorted = False
    spec: ProfileSpec
    _bookmark: ProfileBookmark
    _cursor: ProfileCursor
    _counted = False  # whether records count in the progress lines (the stream is selected)
    _scan_range: tuple[int, int] | None = None  # the full load's (after, highest ID), for ETAs
    _keep: Callable[[dict[str, Any]], bool] | None = None  # a scan's row filter (None: all)

    def __init__(self, tap: Tap, services: StreamServices, **kwargs: Any) -> None:
        super().__init__(tap, services, **kwargs)
        settings = services.settings
        self.records = ProfileRecords(
            self.record_layout(), settings.tz, utc=settings.utc_timestamps
        )
        # Every page is decoded into its records as it is checked (built before any thread
        # reads a page): the cursor and bookmark read `ID` and `modified` from them as
        # from the API's rows.
        self.decode_body = self.records.decode
        self._finish = self.records.finish
        self._lines: Callable[[bytes], Any] | None = None  # see `_read_ranges`

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Read the partition from its bookmark to the end."""
        assert context is not None
        kind = self.spec.owner_kind
        owner_id = int(context[f"{kind}_id"])
        clash = self.account.has_modified_field(kind, owner_id)
        if clash:
            self.logger.warning(
                "%s %s has its own field called 'modified', so the API cannot filter on the "
                "modification time: reading all of its rows by ID and keeping the changed "
                "ones. Renaming that field makes incremental runs fast again.",
                kind.capitalize(),
                owner_id,
            )
        self._bookmark = ProfileBookmark(
            self.get_context_state(context), self.settings.tz, self.settings.start_date
        )
        parallel = self.settings.max_parallel_requests > 1
        self._cursor = self._bookmark.cursor(
            self.settings.page_size, by_id=clash, parallel=parallel
        )
        self._counted = self.selected
        if self._cursor.by_id and parallel:
            yield from self._parallel_scan(context)
        elif parallel:
            yield from self._changes(context)
        else:
            yield from self.request_records(context)
        self._bookmark.finish()

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The first page this partition asks for, planned from a copy of its STATE: read
        ahead while earlier streams are read, since a partition's own reads are a chain of
        round trips (first page, then the ranges it plans)."""
        if context is None:
            return None
        return self._first_params(self._planned_cursor(context))

    def _first_params(self, cursor: ProfileCursor) -> dict[str, Any]:
        """The first request of a read from `cursor`."""
        parallel = self.settings.max_parallel_requests > 1
        return self._scan_start(cursor) if cursor.by_id and parallel else cursor.params()

    def guessed_ahead(self, database_id: int) -> list[Entry]:
        """The first page of database `database_id` (named by ID in `database_ids`), planned
        before the account's structure is read, to be read beside it
        (`TapCopernica.read_profiles_ahead`) instead of one round trip after it. The guess
        is that the database has no field called `modified` (which changes the request): a
        wrong guess is a request not used."""
        context: Context = {"database_id": database_id}
        if self.spec.owner_kind != "database":
            return []
        cursor = self._planned_cursor(context, clash=False)
        return [self.ahead(context, self._first_params(cursor), cursor)]

    def _planned_cursor(self, context: Context, clash: bool | None = None) -> ProfileCursor:
        """Where the partition's read will start, from a copy of its STATE (`clash`: whether
        the owner has a field called `modified`; looked up when not given)."""
        kind = self.spec.owner_kind
        if clash is None:
            clash = self.account.has_modified_field(kind, int(context[f"{kind}_id"]))
        state = copy.deepcopy(self.context_state_if_any(context) or {})
        bookmark = ProfileBookmark(state, self.settings.tz, self.settings.start_date)
        parallel = self.settings.max_parallel_requests > 1
        return bookmark.cursor(self.settings.page_size, by_id=clash, parallel=parallel)

    def ahead(
        self, context: Context | None, token: Any, cursor: ProfileCursor | None = None
    ) -> Entry:
        """The partition's first page read ahead (from `cursor`, the one planned for it when
        not given). An ID-ordered scan's page that comes back full under latency is
        followed at once by what the scan sends next: the highest ID, then the first ranges
        (the same requests, planned the same way): the partition is in hand when its turn
        comes, instead of starting a chain of round trips then."""
        entry = super().ahead(context, token)
        if context is None or token.get("orderby") != "id" or "order" in token:
            return entry
        cursor = cursor or self._planned_cursor(context)

        def first_page() -> requests.Response:
            response = entry.send()
            first = dict_rows(payload_of(response))
            if len(first) >= self.settings.page_size and readahead.worth_following(response):
                self._read_on_ahead(context, first, token["fields[]"], cursor)
            return response

        return Entry(entry.stream, entry.key, first_page)

    def _read_on_ahead(
        self, context: Context, first: list[dict], filters: list[str], cursor: ProfileCursor
    ) -> None:
        """After a full first page of an ID-ordered scan (asked with `filters`) that took a
        real API's latency: what the scan sends next, at once, in the background (the
        highest ID, then from its answer the first ranges, planned as the scan plans them
        from `cursor`), instead of after the page's records are handed on."""
        send_ahead = super().ahead
        read_ahead = self.services.read_ahead

        def first_ranges(outcomes: list[Outcome]) -> None:
            (highest,) = outcomes
            if highest.response is not None:
                top = dict_rows(payload_of(highest.response))
                planner = self._planner(first, top, cursor)
                firsts = self._first_ranges(planner, cursor.id_filters())
                read_ahead.follow_up([send_ahead(context, params) for params in firsts])

        try:
            read_ahead.follow_up([send_ahead(context, self._highest(filters))], then=first_ranges)
        except Exception as exc:  # only saves time: the scan's own reads report it
            self.logger.debug("Not reading '%s' ranges ahead: %s", self.name, exc)

    def _first_ranges(self, planner: IdRangePlanner, filters: list[str]) -> list[dict[str, Any]]:
        """The first request of each range the scan sends before it sees any of them (one
        per request in flight), as `_range_calls` sends them."""
        params: list[dict[str, Any]] = []
        for low, high in planner.ranges():
            if len(params) == self.settings.max_parallel_requests:
                break
            if high >= planner.max_id:
                params.append({"orderby": "id", "fields[]": [f"id>{low}", *filters]})
                break
            params.append(IdRangePlanner.range_params(low, high, filters))
        return params

    @staticmethod
    def _highest(filters: list[str]) -> dict[str, Any]:
        """The request for the highest ID among rows that pass `filters`."""
        return {"orderby": "id", "order": "desc", "limit": 1, "fields[]": filters}

    @staticmethod
    def _scan_start(cursor: ProfileCursor) -> dict[str, Any]:
        """The first page of an ID-ordered scan from the cursor's position."""
        return {"orderby": "id", "fields[]": [f"id>{cursor.after_id}", *cursor.id_filters()]}

    def _changes(self, context: Context) -> Iterable[dict[str, Any]]:
        """An incremental run: the first page by `modified`. A page that comes back full
        (a mass update) hands the rest to a filtered ID scan with requests side by side; a
        small change set stays one request, or a few pages of the keyset read."""
        response = self.fetch(context, self._cursor.params())
        emitted: set[int] = set()
        for row in self.parse_response(response):
            emitted.add(int(row["ID"]))
            yield row
        if self._cursor.done:
            return
        self._cursor = self._bookmark.switch_to_scan(self._cursor, emitted, self._settled(response))
        yield from self._parallel_scan(context)

    # -- ID-ordered reads with several requests in flight ---------------------------------
    def _rows(self, context: Context, params: dict[str, Any]) -> tuple[list[dict], str | None]:
        rows, server_now, _ = self._timed_rows(context, params)
        return rows, server_now

    def _timed_rows(
        self, context: Context, params: dict[str, Any]
    ) -> tuple[list[dict], str | None, float]:
        """A page's rows, the server's settled horizon, and the seconds until its headers."""
        response = self.fetch(context, params)
        rows = dict_rows(payload_of(response))
        return rows, self._settled(response), response.elapsed.total_seconds()

    def _range_page(self, context: Context, params: dict[str, Any]) -> _Page:
        """A page of a ranged scan: its RECORD lines from a page helper while
        `_read_ranges` has one (`check_body`), else its rows."""
        if self._lines is None:
            return self._rows(context, params)[0]
        prepared = self.prepare_page(context, params)
        setattr(prepared, _LINES_ATTR, self._lines)
        payload = payload_of(self._retrying_request(prepared, context))
        return payload if isinstance(payload, EncodedPage) else dict_rows(payload)

    def _settled(self, response: requests.Response) -> str | None:
        """The server's time of `response`, less the lookback: rows changed before it are
        settled."""
        return settled_before(
            response.headers.get("Date"), self.settings.tz, self.settings.lookback_seconds
        )

    def _range_part(self, context: Context, low: int, high: int) -> _Part:
        """Rows with `low < ID <= high`, at most `RANGE_PAGES` pages of them, and the ID up
        to which they are complete (`high` when the range is read to its end)."""
        size = self.settings.page_size
        pages: list[_Page] = []
        after = low
        for _ in range(RANGE_PAGES):
            page = self._range_page(
                context, IdRangePlanner.range_params(after, high, self._cursor.id_filters())
            )
            check_page(page, after, high)
            pages.append(page)
            # Fewer IDs left than a page holds: a full page has them all.
            if len(page) < size or high - after <= size:
                return low, high, pages, high
            after = last_id(page)
        return low, high, pages, after

    def _emit_scanned(
        self, rows: _Page, server_now: str | None, upto: int | None = None
    ) -> Iterable[dict]:
        """Hand on the rows of a scan page the cursor keeps; then the scan has read every
        row up to `upto` (default: the page's last ID)."""
        if isinstance(rows, EncodedPage):
            self._write_encoded(rows, upto)
            return
        keep = self._keep
        fresh = rows if keep is None else [row for row in rows if keep(row)]
        if rows and self._scan_range:  # how far through the ID range: progress with an ETA
            low, high = self._scan_range
            self.progress.position(self.name, min(int(rows[-1]["ID"]), high) - low, high - low)
        self._page_arrived(len(fresh))
        emitted = self._bookmark.emitted
        for row in fresh:
            emitted(row, server_now)  # moves the scan's `after_id`
            yield row
        if upto is None and rows:
            upto = int(rows[-1]["ID"])
        if upto is not None:
            self._bookmark.scanned_to(upto)

    def _write_encoded(self, page: EncodedPage, upto: int | None) -> None:
        """`_emit_scanned` for a page a helper turned into RECORD lines: the lines are
        written at once, and the scan position moves past the page's last kept row."""
        if page.last_id is not None and self._scan_range:
            low, high = self._scan_range
            self.progress.position(self.name, min(page.last_id, high) - low, high - low)
        self._page_arrived(page.kept)
        if page.last_kept_id is not None:
            writer = self._fast_writer
            assert writer is not None  # `_line_encoder` gave helpers the pages
            self._bookmark.emitted_through(page.last_kept_id)
            writer.write_lines(page.lines)
            self.records_written(page.kept)
        for name, value in page.unfit:
            self.records.reader.count(name, value)
        if upto is None:
            upto = page.last_id
        if upto is not None:
            self._bookmark.scanned_to(upto)

    def _workers(self, wait_s: float, page_s: float, *, ranges_ahead: bool = False) -> int:
        """Requests to keep in flight, from the first page: how long the API took to answer
        (until the headers), and how long its records took to go out.

        When the API answers faster than a page takes to process (a fast or
        nearby API), there is little waiting to hide: pages are read one after another,
        and more threads would only fight over the interpreter to decode pages nobody is
        ready for (slower, measured). Under real latency, every allowed request is kept in
        flight; so too when the highest ID and first ranges were read ahead (`ahead`, or
        `_read_on_ahead` as soon as a full first page came in under latency): reading
        them costs nothing more, leaving them would waste them.
        """
        most = self.settings.max_parallel_requests
        workers = most if ranges_ahead or wait_s >= page_s else 1
        how = (
            "page by page"
            if workers == 1
            else f"by ID ranges with {workers} requests in flight (of {most} allowed)"
        )
        self.logger.info(
            "Reading %s %s: the API answered in %.0f ms, a page took %.0f ms to process.",
            self.name,
            how,
            wait_s * 1000,
            page_s * 1000,
        )
        return workers

    def _parallel_scan(self, context: Context) -> Iterable[dict[str, Any]]:
        """The ID-ordered read (full loads) as ID ranges fetched side by side, in order."""
        size = self.settings.page_size
        after = self._cursor.after_id
        self._keep = self._cursor.keeper()
        start = self._scan_start(self._cursor)
        filters = start["fields[]"]
        first, server_now, waited = self._timed_rows(context, start)
        check_ascending(first, after, None)
        # Under latency (a no-op where the first page was read ahead: asked already).
        if len(first) >= size and waited >= readahead.FOLLOW_UP_WAIT_S:
            self._read_on_ahead(context, first, filters, self._cursor)
        self._bookmark.page_served(server_now)
        fetched = time.perf_counter()
        yield from self._emit_scanned(first, server_now)
        if len(first) < size:
            return
        highest = self.prepare_page(context, self._highest(filters))
        ranges_ahead = self.services.read_ahead.holds(request_key(self.name, str(highest.url)))
        workers = self._workers(waited, time.perf_counter() - fetched, ranges_ahead=ranges_ahead)
        page: _Page = first
        # With one request in flight there is nothing to overlap: the keyset pages below
        # are full, where ranges planned 90 % full cost a tenth more requests (measured).
        if workers > 1:
            # Only ranges need the highest ID (and give the progress lines an ETA): a
            # partition within a page, or read page by page, costs no request for it.
            top, _ = self._rows(context, self._highest(filters))
            self._scan_range = (after, int(top[0]["ID"])) if top else None
            page = yield from self._read_ranges(context, first, top, workers)
        while len(page) >= size:
            _, _, pages, _ = self._page_above(context, last_id(page))
            page = pages[0]
            yield from self._emit_scanned(page, None)

    def _read_ranges(
        self, context: Context, first: list[dict], top: list[dict], workers: int
    ) -> Generator[dict[str, Any], None, _Page]:
        """The rows after the first page up to the highest ID, as ID ranges fetched side by
        side, in order; returns the last page read."""
        planner = self._planner(first, top, self._cursor)
        page: _Page = first
        self._lines = self._line_encoder(context)
        try:
            calls = in_order(self._range_calls(context, planner), workers)
            for low, high, pages, complete_to in calls:
                if high is None:  # the open-ended last range
                    page = pages[-1]
                    yield from self._emit_scanned(page, None)
                    continue
                count, reached = sum(map(len, pages)), complete_to
                yield from self._emit_pages(pages, reached)
                while reached < high:  # a range denser than planned: read on, in order, here
                    _, _, more, reached = self._range_part(context, reached, high)
                    count += sum(map(len, more))
                    yield from self._emit_pages(more, reached)
                planner.observe(low, high, count)
        finally:
            self._lines = None
        return page

    def _emit_pages(self, pages: list[_Page], upto: int) -> Iterable[dict]:
        """The pages of one range part, in order; then the scan has read up to `upto`."""
        for page in pages[:-1]:
            yield from self._emit_scanned(page, None)
        yield from self._emit_scanned(pages[-1], None, upto)

    def _line_encoder(self, context: Context) -> Callable[[bytes], Any] | None:
        """How range pages become RECORD lines in a page helper (`page_helpers.py`), or
        None where the stream must see each record itself: stream maps or deselected
        properties, a `reconciliation` tally, selected children, a record limit, records
        going to batch files, or no scan position to move."""
        helpers = self.services.page_helpers
        writer = self._fast_writer
        if (
            helpers is None
            or helpers.broken is not None
            or writer is None
            or (writer.observer is not None and writer.observer.counter(self.name) is not None)
            or not self.selected
            or self._map_plan != [(self.name, None)]
            or any(child.selected for child in self.child_streams)
            or self.ABORT_AT_RECORD_COUNT is not None
            or self.records_go_to_batches
            or not self._bookmark.scanning
        ):
            return None
        cursor = self._cursor
        recipe = LineRecipe(
            layout=self.records.layout,
            tz=self.settings.tz,
            utc=self.settings.utc_timestamps,
            since=cursor.since,
            skip=frozenset(cursor.skip),
            seen=frozenset(cursor.seen),
            context=tuple(self.partition_keys(context).items()),
        )
        return partial(self._encoded_page, helpers.new_recipe_id(), recipe)

    def _encoded_page(self, recipe_id: int, recipe: LineRecipe, content: bytes) -> Any:
        """A range page (`content`) as RECORD lines from a helper, or decoded here as every
        other page when no helper takes it (then what is wrong with it is raised here)."""
        head, tail = record_frame(self.name, self.stream_version, extraction_time())
        helpers = self.services.page_helpers
        assert helpers is not None
        page = helpers.encode(recipe_id, recipe, head, tail, content)
        return self.records.decode(content) if page is None else page

    def check_body(self, response: requests.Response) -> None:
        """Decode the page (a range page with the function `_timed_rows` gave it)."""
        check_json_body(response, getattr(response.request, _LINES_ATTR, self.decode_body))

    def _planner(self, first: list[dict], top: list[dict], cursor: ProfileCursor) -> IdRangePlanner:
        """The ranges after the first page up to the highest ID (`top`), spans from the
        first page's density."""
        size = self.settings.page_size
        start = int(first[-1]["ID"])
        return IdRangePlanner(
            page_size=size,
            after_id=start,
            max_id=max(int(top[0]["ID"]), start) if top else start,  # never below what is read
            span=max(size, int(0.9 * (start - int(first[0]["ID"]) + 1))),
            # Filtered rows may be sparse: wider ranges keep pages full. What a range holds
            # in memory is bounded by `RANGE_PAGES` all the same.
            max_span_pages=FILTERED_SPAN_PAGES if cursor.filtered else MAX_SPAN_PAGES,
        )

    def _range_calls(
        self, context: Context, planner: IdRangePlanner
    ) -> Iterator[Callable[[], _Part]]:
        """The requests of the planned ranges. The last one is open-ended (`id > low`):
        profiles inserted since the scan began sit above `max_id`, and it reads their first
        page without a request of its own (the rest follow by keyset)."""
        for low, high in planner.ranges():
            if high >= planner.max_id:
                yield partial(self._page_above, context, low)
                return
            yield partial(self._range_part, context, low, high)
        yield partial(self._page_above, context, planner.max_id)

    def _page_above(self, context: Context, low: int) -> _Part:
        """The first page of rows with `ID > low` (no upper bound: `high` is None)."""
        filters = [f"id>{low}", *self._cursor.id_filters()]
        page = self._range_page(context, {"orderby": "id", "fields[]": filters})
        check_page(page, low, None)
        return low, None, [page], last_id(page) if len(page) else low

    def get_new_paginator(self) -> BaseAPIPaginator:
        """Keyset paging driven by the partition's cursor."""
        return CursorPaginator(self._cursor)

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """Always offset 0: the `fields` filters carry the position."""
        return {"start": 0, "limit": self.settings.page_size, "total": "false", **next_page_token}

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """The page's new rows; the bookmark moves just before each is handed on."""
        server_now = settled_before(
            response.headers.get("Date"), self.settings.tz, self.settings.lookback_seconds
        )
        self._bookmark.page_served(server_now)
        rows = dict_rows(payload_of(response))
        try:
            fresh = self._cursor.accept(rows)
        except ValueError as exc:
            raise CopernicaPagingError(self.name, str(exc)) from None
        self._page_arrived(len(fresh))
        emitted = self._bookmark.emitted
        for row in fresh:
            emitted(row, server_now)
            yield row
        self._bookmark.page_done(self._cursor)

    def _page_arrived(self, rows: int) -> None:
        """A page's rows are about to be handed on: its extraction time, and progress."""
        self._extracted = extraction_time()
        if self._counted:
            self.progress.record(self.name, rows)

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """The record its page was decoded into (`ProfileRecords`), with `modified` written
        like the other timestamps now that the bookmark has read it.

        Runs for every profile, so it is flat: progress is counted per page instead. A row
        whose ID is no number is refused, on every path (a target keys on it).
        """
        if row.get("ID").__class__ is not int:
            msg = f"the API sent a row whose ID is {row.get('ID')!r}, not a number"
            raise CopernicaPagingError(self.name, msg)
        return self._finish(row)

    def record_layout(self) -> RecordLayout:
        """What the stream's records hold: the generic streams keep the API's `fields`."""
        return RecordLayout(
            entity_keys=self.spec.row_keys,
            fields=None,
            shape=self.spec.shape,
            declared=frozenset(self.schema.get("properties", {})),
        )

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No signpost: the bookmark only ever holds values of emitted records."""
        return


@dataclasses.dataclass(frozen=True, kw_only=True)
class IdListSpec(StreamSpec):
    """An ID list: the record field of each ID, and whether the endpoint pages."""

    base: type[ObjectStream] = IdListStream
    #: record field holding the ID (`profile_id`, `subprofile_id`)
    id_key: str
    #: False for ID lists that take no paging parameters and send every ID at once
    paged: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProfileSpec(StreamSpec):
    """Profiles of a database or subprofiles of a collection."""

    base: type[ObjectStream] = ProfileStream
    #: whose fields may include one named `modified`, and whose ID the context holds
    owner_kind: Literal["database", "collection"]
    #: the values of the API's rows that are columns, in the order the API sends them
    row_keys: tuple[str, ...]


_FIELD_SHAPE = RecordShape(integers=("ID", "length", "textlines"))

STREAM_SPECS: tuple[StreamSpec, ...] = (
    StreamSpec("identity", "/identity", OneObjectStream, shape=RecordShape(integers=("ID",))),
    StreamSpec(
        "databases",
        "/databases",
        DatabasesStream,
        # The embedded fields/interests/collections lists may be cut short: child streams
        # read them in full.
        shape=RecordShape(("ID",), ("created",), ("fields", "interests", "collections")),
        child_keys={"database_id": "ID"},
    ),
    StreamSpec(
        "database_fields",
        "/database/{database_id}/fields",
        ListStream,
        keys=("database_id", "ID"),
        parent="databases",
        shape=_FIELD_SHAPE,
    ),
    StreamSpec(
        "database_interests",
        "/database/{database_id}/interests",
        ListStream,
        parent="databases",
        shape=RecordShape(integers=("ID",)),
    ),
    StreamSpec(
        "collections",
        "/database/{database_id}/collections",
        ListStream,
        parent="databases",
        shape=RecordShape(("ID",), drop=("fields", "database")),
        child_keys={"database_id": "database_id", "collection_id": "ID"},
    ),
    StreamSpec(
        "collection_fields",
        "/collection/{collection_id}/fields",
        ListStream,
        keys=("collection_id", "ID"),
        parent="collections",
        shape=_FIELD_SHAPE,
    ),
    ProfileSpec(
        "profiles",
        "/database/{database_id}/profiles",
        parent="databases",
        shape=RecordShape(("ID",), ("created", "modified", "removed"), ("database",)),
        owner_kind="database",
        row_keys=("ID", "fields", "interests", "secret", "created", "modified", "removed"),
    ),
    ProfileSpec(
        "subprofiles",
        "/collection/{collection_id}/subprofiles",
        parent="collections",
        shape=RecordShape(("ID", "profile"), ("created", "modified", "removed"), ("collection",)),
        owner_kind="collection",
        row_keys=("ID", "secret", "fields", "profile", "created", "modified", "removed"),
    ),
    IdListSpec(
        "profile_ids",
        "/database/{database_id}/profileids",
        keys=("profile_id",),
        id_key="profile_id",
    ),
    IdListSpec(
        "subprofile_ids",
        "/collection/{collection_id}/subprofileids",
        keys=("subprofile_id",),
        # Documented without parameters: one answer holds every ID.
        id_key="subprofile_id",
        paged=False,
    ),
)


def check_page(page: _Page, low: int, high: int | None) -> None:
    """`check_ascending` for a page of either kind (a helper checked its order itself)."""
    if not isinstance(page, EncodedPage):
        check_ascending(page, low, high)
    elif page.first_id is not None:
        # The helper checked the order within the page; its ends must lie in the range.
        check_id_order(sorted({page.first_id, cast(int, page.last_id)}), low, high)


def last_id(page: _Page) -> int:
    """The ID of a (non-empty) page's last row."""
    return cast(int, page.last_id) if isinstance(page, EncodedPage) else int(page[-1]["ID"])
