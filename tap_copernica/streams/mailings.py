"""Marketing Suite and Publisher mailings, destinations, statistics and events.

Three kinds of stream, declared in `MAILING_SPECS` (registered in `tap.py`):
- catalogue lists (scheduled emailings, templates, documents): `CatalogueStream`, full table;
- emailings, per-emailing destinations and the event streams: `WindowedStream`, incremental
  on their timestamp, read in closed time windows (`windows.py`) with the API's own
  date-range filters;
- per-emailing objects (statistics, snapshot): `EmailingObjectStream`, one record per
  emailing, read again every run (the counters keep changing).

Emailing-scoped streams have one partition per emailing: every emailing of the product, or
those named in `emailing_ids` ("ms:<id>" / "publisher:<id>"). With `emailing_ids` set, the
event streams read the per-emailing endpoints of just those emailings instead of the
account-wide ones; with `destination_ids` set, they read the per-destination endpoints of
just those destinations (one message to one profile).

Events without an `ID` of their own get one: the SHA-1 of the row's fields (sorted JSON),
so a replayed event gets the same key.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from copernica_api.errors import CopernicaPagingError
from copernica_api.payloads import dict_rows, payload_of, to_int
from copernica_api.timeutil import parse_instant
from tap_copernica.settings import PRODUCTS
from tap_copernica.streams.base import (
    ListStream,
    ObjectStream,
    OneObjectStream,
    RecordShape,
    StreamSpec,
)
from tap_copernica.windows import (
    MIN_WINDOW,
    Sizing,
    Window,
    WindowBookmark,
    horizon_of,
    in_window,
    whole_seconds,
)

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_copernica.settings import TapSettings

__all__ = ["EVENT_KINDS", "MAILING_SPECS", "PRODUCTS"]

EVENT_KINDS = ("deliveries", "impressions", "clicks", "errors", "unsubscribes", "abuses")


def event_key(row: dict[str, Any]) -> str:
    """The row's own `ID`, or a deterministic one derived from all its fields."""
    own = row.get("ID", row.get("id"))
    if own not in (None, ""):
        return str(own)
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()


class MailingStream(ObjectStream):
    """Shared by the streams of this module: product, renames, emailing partitions."""

    spec: MailingSpec

    def get_url(self, context: Context | None) -> str:
        """The per-destination or per-emailing endpoint of a partition, else the path."""
        spec = self.spec
        if context and "destination_id" in context and spec.destination_path:
            ref = context["destination_id"]
            return self.url_base + spec.destination_path.format(destination_id=ref)
        if context and "emailing_id" in context and spec.emailing_path:
            return self.url_base + spec.emailing_path.format(emailing_id=context["emailing_id"])
        return super().get_url(context)

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """The page's parameters exactly as planned by the reader."""
        return dict(next_page_token or {})

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One partition per emailing for per-emailing streams, or with `emailing_ids`."""
        spec = self.spec
        if spec.per_emailing:
            wanted = self.settings.emailings_of(spec.product)
            ids = wanted if wanted is not None else self.account.emailing_ids(spec.product)
            return [{"emailing_id": i} for i in ids]
        if spec.destination_path:
            # Chosen destinations win over chosen emailings: their events are a subset.
            refs = self.settings.destinations_of(spec.product)
            if refs is not None:
                return [{"destination_id": ref} for ref in refs]
        if spec.emailing_path:
            wanted = self.settings.emailings_of(spec.product)
            return None if wanted is None else [{"emailing_id": i} for i in wanted]
        return None

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """Renames, then IDs and timestamps as for every stream.

        The SDK adds the partition's `emailing_id` to each record afterwards.
        """
        for old, new in self.spec.renames.items():
            if old in row:
                row[new] = row.pop(old)
        return super().post_process(row, context)


class CatalogueStream(MailingStream, ListStream):
    """A small list read in full every run (templates, documents, scheduled emailings)."""

    spec: CatalogueSpec

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """start/limit from the paginator plus the stream's fixed parameters."""
        return {**ListStream.get_url_params(self, context, next_page_token), **self.spec.params}


class EmailingObjectStream(MailingStream, OneObjectStream):
    """One object per emailing (statistics, snapshot), with the emailing's ID injected."""


class WindowedStream(MailingStream):
    """Immutable timestamped rows, read in closed windows with the API's range filters.

    Where windows start (the floor): the bookmark; on a first run `start_date`, but never
    before data can exist. Events start at the product's first emailing (with `emailing_ids`:
    that emailing's send time; with `destination_ids`: the product's first emailing, as a
    destination's emailing is not known without a request): no event predates its emailing.
    Emailings start at `start_date`; destinations at `start_date` but not before the
    product's first emailing (they are read in one window anyway).

    Where they end (the horizon): the `Date` of the product's emailing-list read (minus
    `lookback_seconds`), a response the run needs anyway for the floor or the partitions;
    it may be earlier than the stream's own reads, which is safe (the next run reads on).

    How long they are (event streams): STATE's `window_seconds`, else an estimate from the
    emailing list (about a page of rows per window, from the emailings' counters, or their
    destinations), else `event_window_days`; then adapted after each window (`Sizing`), at
    most 64 x `event_window_days`. The estimate only changes how many requests are made.

    The product's emailing list stream itself (`<product>_emailings`) emits the rows of
    that list read, filtered to its window, when it came in one page: no second request
    for the same rows.
    """

    # Records leave in window order and `WindowBookmark` writes the STATE entry itself (the
    # SDK's copy of each record's timestamp would lose the in-window position).
    is_sorted = True
    check_sorted = False
    sdk_moves_bookmarks = False
    spec: WindowedSpec
    _horizon: datetime.datetime | None = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Every row of the windows between the bookmark and the run's horizon."""
        plan = self._plan(context, self.get_context_state(context))
        if plan is None:
            return
        bookmark, floor, sizing = plan
        horizon = self._run_horizon()
        for window in bookmark.windows(floor, horizon, sizing):
            if self._is_emailing_list(context):
                rows = yield from self._list_window(window)
            else:
                rows = yield from self._read_window(context, bookmark, window, sizing)
            size = None
            if sizing is not None:
                size = sizing.next_size(bookmark.size(sizing.first), window, rows)
            bookmark.completed(window, size)
            self.send_state_now()

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The query parameters of the first page this partition will ask for, from its
        STATE, or None when it will send none. Sends nothing of its own; it may read the
        product's emailing list (once per run, shared), which gives the floor and horizon.
        """
        if self._is_emailing_list(context):
            return None  # its rows come from the account's read of the list
        # The STATE looked up, not created: an entry made while planning would be sent
        # in a STATE message a serial run does not send.
        plan = self._plan(context, dict(self.context_state_if_any(context) or {}))
        if plan is None:
            return None
        bookmark, floor, sizing = plan
        window = bookmark.first(floor, self._run_horizon(), sizing)
        return None if window is None else self._params(window, window.offset)

    # -- where to start and stop -----------------------------------------------------------
    def _plan(
        self, context: Context | None, state: dict[str, Any]
    ) -> tuple[WindowBookmark, datetime.datetime | None, Sizing | None] | None:
        """The partition's bookmark (over its STATE entry `state`), floor and window
        sizing; None when it has nothing to read (events of a product without emailings).
        Changes no STATE."""
        bookmark = WindowBookmark(state, self.settings.tz, str(self.replication_key))
        fresh = bookmark.bookmark() is None and bookmark.resumed() is None
        floor = self._floor(context) if fresh else None
        if fresh and floor is None and self._needs_floor:
            return None  # no emailing yet, so no events
        if not self.spec.windowed:
            return bookmark, floor, None
        days = datetime.timedelta(days=self.settings.event_window_days)
        cap = WINDOW_CAP * days
        first = days
        if "window_seconds" not in bookmark.state:
            first = self._estimated_size(context) or days
        first = whole_seconds(min(cap, max(MIN_WINDOW, first)))
        return bookmark, floor, Sizing(first, cap, self.settings.page_size)

    @property
    def _needs_floor(self) -> bool:
        return self.spec.filter_style != "fromdate" and self.replication_key == "timestamp"

    def _is_emailing_list(self, context: Context | None) -> bool:
        """Whether this is the product's emailing list and the account's read of it came
        in one page: one response, so a complete snapshot (pages read one after another
        could shift under a new emailing; then the stream reads its window itself)."""
        if self.spec.filter_style != "fromdate" or context:
            return False
        return len(self.account.emailing_rows(self.spec.product)) < self.settings.page_size

    def _floor(self, context: Context | None) -> datetime.datetime | None:
        """`start_date`, raised to the first time the stream's data can exist (events)."""
        start_date = self.settings.start_date
        start = parse_instant(start_date, self.settings.tz) if start_date else None
        product = self.spec.product
        if not self._needs_floor:
            if start is None or self.spec.filter_style == "fromdate":
                return start
            # Destinations: none is older than the product's first emailing.
            first_sent = self.account.first_emailing_time(product)
            return start if first_sent is None else max(start, first_sent)
        first: datetime.datetime | None = None
        if context and "emailing_id" in context:
            first = self.account.emailing_sent(product, int(context["emailing_id"]))
        if first is None:
            first = self.account.first_emailing_time(product)
        if first is None:
            return None
        return first if start is None else max(start, first)

    def _run_horizon(self) -> datetime.datetime:
        """The server's time (minus `lookback_seconds`) of the product's emailing-list read."""
        if self._horizon is None:
            date = self.account.emailings_date(self.spec.product)
            self._horizon = horizon_of(date, self.settings.lookback_seconds)
        return self._horizon

    def _estimated_size(self, context: Context | None) -> datetime.timedelta | None:
        """A window length expected to hold about a page of this stream's rows, from the
        emailing list's counters (the kind's own, else the destinations); None if unknown."""
        if context and "destination_id" in context:
            return WINDOW_CAP * datetime.timedelta(days=self.settings.event_window_days)
        product = self.spec.product
        rows = self.account.emailing_rows(product)
        if context and "emailing_id" in context:
            rows = [r for r in rows if to_int(r.get("id", r.get("ID"))) == context["emailing_id"]]
        kind = self.name.removeprefix(f"{product}_")
        counts = [to_int(r.get(kind, r.get("destinations"))) for r in rows]
        sent = [self.account.sent_time(r) for r in rows]
        known = [c for c in counts if c is not None]
        since = min((s for s in sent if s is not None), default=None)
        if not known or since is None:
            return None
        span = self._run_horizon() - since  # the average rate over their history
        total = sum(known)
        if total <= 0 or span.total_seconds() <= 0:
            return WINDOW_CAP * datetime.timedelta(days=self.settings.event_window_days)
        return span * (self.settings.page_size / total)

    # -- one window ------------------------------------------------------------------------
    def _params(self, window: Window, offset: int) -> dict[str, Any]:
        low, high = window.local(self.settings.tz)
        size = self.settings.page_size
        params: dict[str, Any] = {"start": offset, "limit": size, "total": "false"}
        style = self.spec.filter_style
        if style == "begintime":
            params |= {"endtime": high} | ({} if low is None else {"begintime": low})
        elif style == "fromdate":
            params |= {"todate": high} | ({} if low is None else {"fromdate": low})
        else:
            key = self.replication_key
            filters = [f"{key}<{high}"] + ([] if low is None else [f"{key}>={low}"])
            params["fields[]"] = filters
        return params

    def _list_window(self, window: Window) -> Generator[dict[str, Any], None, int]:
        """The product's emailings stamped in `window`, from the account's list read."""
        low, high = window.local(self.settings.tz)
        stamp = str(self.replication_key)
        count = 0
        for listed in self.account.emailing_rows(self.spec.product):
            text = str(listed.get(stamp) or "")
            if (low is None or text >= low) and text < high:
                row = dict(listed)
                row["ID"] = row.get("ID", row.get("id"))
                row.pop("id", None)
                count += 1
                yield row
        return count

    def _read_window(
        self,
        context: Context | None,
        bookmark: WindowBookmark,
        window: Window,
        sizing: Sizing | None,
    ) -> Generator[dict[str, Any], None, int]:
        """The rows of `window` from its offset on; returns the rows the window held."""
        low, high = window.local(self.settings.tz)
        offset = window.offset
        seen: set[str] = set()
        size = self.settings.page_size
        stamp = str(self.replication_key)
        string_ids = self.spec.string_ids
        planned = None if sizing is None else bookmark.size(sizing.first)
        while True:
            response = self.fetch(context, self._params(window, offset))
            rows = dict_rows(payload_of(response))
            for row in rows:
                inside = in_window(row.get(stamp), low, high)
                if inside is None:
                    raise CopernicaPagingError(
                        self.name,
                        f"the API returned a row stamped {row.get(stamp)!r} "
                        f"for the range [{low}, {high}]",
                    )
                key = event_key(row)
                if not inside or key in seen:
                    continue  # stamped at the window's end: it belongs to the next window
                seen.add(key)
                row["ID"] = key if string_ids else row.get("ID", row.get("id"))
                row.pop("id", None)
                yield row
            offset += len(rows)
            if len(rows) < size:
                return offset
            bookmark.progress(window, offset, planned)
            self.send_state_now()

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No signpost: the bookmark only ever holds ends of completed windows."""
        return


# -- the spec types ----------------------------------------------------------------------------
FilterStyle = Literal["begintime", "fromdate", "fields"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MailingSpec(StreamSpec):
    """A stream of one mailing product."""

    #: "ms" (Marketing Suite) or "publisher"
    product: str
    #: API field -> record field (the same join columns for both products)
    renames: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: whether the stream is read per emailing (one partition each) in any case
    per_emailing: bool = False
    #: per-emailing path, used for partitions when `emailing_ids` is set (event streams)
    emailing_path: str | None = None
    #: per-destination path, used for partitions when `destination_ids` is set (events)
    destination_path: str | None = None

    def emailing_lists_read(self, settings: TapSettings) -> tuple[str, ...]:
        """The product's list, for the stream's windows (from the first emailing, up to the
        list's `Date`) or its partitions (one per emailing) unless `emailing_ids` chose them."""
        chosen = settings.emailings_of(self.product) is not None
        reads = isinstance(self, WindowedSpec) or (self.per_emailing and not chosen)
        return (self.product,) if reads else ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CatalogueSpec(MailingSpec):
    """A small list of the product, read in full every run."""

    base: type[ObjectStream] = CatalogueStream
    #: fixed query parameters (e.g. `source=false`: documents without their HTML)
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EmailingObjectSpec(MailingSpec):
    """One object per emailing of the product."""

    base: type[ObjectStream] = EmailingObjectStream
    per_emailing: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class WindowedSpec(MailingSpec):
    """Timestamped rows of the product, read in time windows."""

    base: type[ObjectStream] = WindowedStream
    replication_key: str
    #: the API's range filter: `begintime`/`endtime` (MS events), `fromdate`/`todate`
    #: (emailing lists) or `fields[]` filters on the replication key
    filter_style: FilterStyle
    #: whether windows are `event_window_days` long (else: one window per run)
    windowed: bool = True
    #: whether `ID` is kept as a string (events, hashes) rather than converted to a number
    string_ids: bool = True


#: The longest window, in multiples of `event_window_days` (64 x 7 days: about 15 months).
WINDOW_CAP = 64


# -- the stream table ------------------------------------------------------------------------
_COUNTS = ("destinations", "testgroups", "clicks", "impressions", "errors")
_ITERATIONS = ("processed_iterations", "scheduled_iterations")
_STAT_SHAPE = RecordShape(integers=("destinations",))
_EVENT_INTEGERS = ("emailing", "profile", "subprofile")


def _product_specs(product: str) -> tuple[MailingSpec, ...]:
    base = f"/{product}"
    counters = ("ID", "template", "document", "finalgroup", "unsubscribes", "abuses", *_COUNTS)
    specs: list[MailingSpec] = [
        WindowedSpec(
            f"{product}_emailings",
            f"{base}/emailings",
            shape=RecordShape(integers=counters, timestamps=("timestamp",)),
            product=product,
            replication_key="timestamp",
            filter_style="fromdate",
            windowed=False,
            string_ids=False,
        ),
        CatalogueSpec(
            f"{product}_scheduled_emailings",
            f"{base}/scheduledemailings",
            shape=RecordShape(
                integers=("ID", "template", "document", "testgroups", "iterations", *_ITERATIONS),
                timestamps=("start", "next", "previous"),
            ),
            product=product,
        ),
        CatalogueSpec(
            f"{product}_templates",
            f"{base}/templates",
            shape=RecordShape(integers=("ID",)),
            product=product,
        ),
        EmailingObjectSpec(
            f"{product}_emailing_statistics",
            f"{base}/emailing/{{emailing_id}}/statistics",
            keys=("emailing_id",),
            shape=_STAT_SHAPE,
            product=product,
        ),
        EmailingObjectSpec(
            f"{product}_emailing_snapshot",
            f"{base}/emailing/{{emailing_id}}/snapshot",
            keys=("emailing_id",),
            shape=RecordShape(integers=("template", "document")),
            product=product,
        ),
        WindowedSpec(
            f"{product}_emailing_destinations",
            f"{base}/emailing/{{emailing_id}}/destinations",
            shape=RecordShape(
                integers=(("ID",) if product == "ms" else ())
                + ("internal", "emailing", "profile", "subprofile"),
                timestamps=("timestampsent",),
            ),
            product=product,
            replication_key="timestampsent",
            filter_style="fields",
            windowed=False,
            per_emailing=True,
            string_ids=product != "ms",
            renames={"mailing": "emailing"},
        ),
    ]
    for kind in EVENT_KINDS:
        specs.append(
            WindowedSpec(
                f"{product}_{kind}",
                f"{base}/{kind}",
                shape=RecordShape(
                    integers=_EVENT_INTEGERS + (("destination",) if product == "ms" else ()),
                    timestamps=("timestamp",),
                ),
                product=product,
                replication_key="timestamp",
                filter_style="begintime" if product == "ms" else "fields",
                emailing_path=f"{base}/emailing/{{emailing_id}}/{kind}",
                destination_path=f"{base}/destination/{{destination_id}}/{kind}",
                renames={"mailing": "emailing"},
            )
        )
    if product == "publisher":
        specs.append(
            CatalogueSpec(
                "publisher_documents",
                "/publisher/documents",
                shape=RecordShape(integers=("ID", "template", "archived")),
                product=product,
                # The documents' HTML would make every page heavy.
                params={"source": "false"},
            )
        )
    return tuple(specs)


MAILING_SPECS: tuple[MailingSpec, ...] = _product_specs("ms") + _product_specs("publisher")
