"""Marketing Suite and Publisher mailings, destinations, statistics and events (issue 4).

Four kinds of stream, declared in `MAILING_SPECS` (registered in `tap.py`):
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

import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk.exceptions import ConfigValidationError

from copernica_api.errors import CopernicaPagingError
from copernica_api.payloads import dict_rows, payload_of, rows_of, to_int
from copernica_api.timeutil import api_to_datetime, parse_instant
from tap_copernica.streams import ListStream, ObjectStream, RecordShape, StreamSpec
from tap_copernica.windows import Window, WindowBookmark, horizon_of, in_window

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

PRODUCTS = ("ms", "publisher")
EVENT_KINDS = ("deliveries", "impressions", "clicks", "errors", "unsubscribes", "abuses")
DEFAULT_WINDOW_DAYS = 7


def _product_refs(
    config: Mapping[str, Any], setting: str, product: str, what: str, example: str
) -> list[str] | None:
    """The references of `product` in a `<product>:<ref>` list setting; None when unset."""
    entries = config.get(setting)
    if not entries:
        return None
    refs: list[str] = []
    for entry in entries:
        prefix, _, ref = str(entry).strip().partition(":")
        prefix, ref = prefix.strip().lower(), ref.strip()
        valid = ref.isdigit() if what == "emailing ID" else ref.isalnum()
        if prefix not in PRODUCTS or not valid:
            msg = f"`{setting}`: {entry!r} is not '<product>:<{what}>'; use e.g. {example}."
            raise ConfigValidationError(msg, errors=[msg])
        if prefix == product:
            refs.append(ref)
    return refs


def selected_emailings(config: Mapping[str, Any], product: str) -> list[int] | None:
    """IDs of `product` named in `emailing_ids` ("ms:12", "publisher:34"); None when unset."""
    example = "'ms:123' for a Marketing Suite emailing or 'publisher:45' for Publisher"
    refs = _product_refs(config, "emailing_ids", product, "emailing ID", example)
    return None if refs is None else [int(ref) for ref in refs]


def selected_destinations(config: Mapping[str, Any], product: str) -> list[str] | None:
    """Destinations of `product` named in `destination_ids` ("ms:12", "publisher:<hash>")."""
    example = "'ms:123' or 'publisher:<the destination's ID>'"
    return _product_refs(config, "destination_ids", product, "destination ID", example)


def event_key(row: dict[str, Any]) -> str:
    """The row's own `ID`, or a deterministic one derived from all its fields."""
    own = row.get("ID", row.get("id"))
    if own not in (None, ""):
        return str(own)
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()


class MailingStream(ObjectStream):
    """Shared by the streams of this module: product, renames, emailing partitions."""

    product: ClassVar[str]
    #: API field -> record field (the same join columns for both products)
    renames: ClassVar[dict[str, str]] = {}
    #: per-emailing path, used for partitions when `emailing_ids` is set (event streams)
    emailing_path: ClassVar[str | None] = None
    #: per-destination path, used for partitions when `destination_ids` is set (events)
    destination_path: ClassVar[str | None] = None
    #: whether the stream is read per emailing (partitions) in any case
    per_emailing: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        selected_emailings(self.config, self.product)  # a malformed entry fails discovery
        selected_destinations(self.config, self.product)

    def get_url(self, context: Context | None) -> str:
        """The per-destination or per-emailing endpoint of a partition, else the path."""
        if context and "destination_id" in context and self.destination_path:
            ref = context["destination_id"]
            return self.url_base + self.destination_path.format(destination_id=ref)
        if context and "emailing_id" in context and self.emailing_path:
            return self.url_base + self.emailing_path.format(emailing_id=context["emailing_id"])
        return super().get_url(context)

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """The page's parameters exactly as planned by the reader."""
        return dict(next_page_token or {})

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One partition per emailing for per-emailing streams, or with `emailing_ids`."""
        if self.per_emailing:
            wanted = selected_emailings(self.config, self.product)
            ids = wanted if wanted is not None else self._emailings_stream().emailing_ids()
            return [{"emailing_id": i} for i in ids]
        if self.destination_path:
            # Chosen destinations win over chosen emailings: their events are a subset.
            refs = selected_destinations(self.config, self.product)
            if refs is not None:
                return [{"destination_id": ref} for ref in refs]
        if self.emailing_path:
            wanted = selected_emailings(self.config, self.product)
            return None if wanted is None else [{"emailing_id": i} for i in wanted]
        return None

    def _emailings_stream(self) -> EmailingsStream:
        stream = self.tap.streams[f"{self.product}_emailings"]
        assert isinstance(stream, EmailingsStream)
        return stream

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """Renames, then IDs and timestamps as for every stream.

        The SDK adds the partition's `emailing_id` to each record afterwards.
        """
        for old, new in self.renames.items():
            if old in row:
                row[new] = row.pop(old)
        return super().post_process(row, context)


class CatalogueStream(MailingStream, ListStream):
    """A small list read in full every run (templates, documents, scheduled emailings)."""

    #: fixed query parameters (e.g. `source=false`: documents without their HTML)
    params: ClassVar[dict[str, str]] = {}

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """start/limit from the paginator plus the stream's fixed parameters."""
        return {**ListStream.get_url_params(self, context, next_page_token), **self.params}


class EmailingObjectStream(MailingStream):
    """One object per emailing (statistics, snapshot), with the emailing's ID injected."""

    per_emailing = True


class WindowedStream(MailingStream):
    """Immutable timestamped rows, read in closed windows with the API's range filters."""

    # Records leave in window order and `WindowBookmark` writes the STATE entry itself (the
    # SDK's copy of each record's timestamp would lose the in-window position).
    is_sorted = True
    check_sorted = False
    sdk_moves_bookmarks = False
    #: "begintime" (MS events), "fromdate" (emailing lists) or "fields" (`fields[]` filters)
    filter_style: ClassVar[str]
    #: whether windows are `event_window_days` long (else: one window per run)
    windowed: ClassVar[bool] = True
    _horizon: datetime.datetime | None = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Every row of the windows between the bookmark and the run's horizon."""
        bookmark = WindowBookmark(
            self.get_context_state(context), self.tap.timezone, str(self.replication_key)
        )
        floor = self._floor(context)
        if floor is None and bookmark.bookmark() is None and self._needs_floor:
            return  # no emailing yet, so no events
        horizon = self._run_horizon(context)
        days = int(self.config.get("event_window_days") or DEFAULT_WINDOW_DAYS)
        for window in bookmark.windows(floor, horizon, days if self.windowed else None):
            yield from self._read_window(context, bookmark, window)
            bookmark.completed(window)
            self.send_state_now()

    # -- where to start and stop -----------------------------------------------------------
    @property
    def _needs_floor(self) -> bool:
        return self.filter_style != "fromdate" and self.replication_key == "timestamp"

    def _floor(self, context: Context | None) -> datetime.datetime | None:
        """A first run starts at `start_date`, else (events) at the product's first emailing:
        no event predates its emailing. Emailings and destinations start at the beginning."""
        start_date = self.config.get("start_date")
        if start_date:
            return parse_instant(str(start_date), self.tap.timezone)
        if not self._needs_floor:
            return None
        return self._emailings_stream().first_timestamp()

    def _run_horizon(self, context: Context | None) -> datetime.datetime:
        """The server's time (minus `lookback_seconds`) at the stream's first request."""
        if self._horizon is None:
            probe = self.fetch(context, {**self._params(Window(None, _EPOCH), 0), "limit": 1})
            self._horizon = horizon_of(probe.headers.get("Date"), self.tap.lookback_seconds)
        return self._horizon

    # -- one window ------------------------------------------------------------------------
    def _params(self, window: Window, offset: int) -> dict[str, Any]:
        low, high = window.local(self.tap.timezone)
        params: dict[str, Any] = {"start": offset, "limit": self.tap.page_size, "total": "false"}
        if self.filter_style == "begintime":
            params |= {"endtime": high} | ({} if low is None else {"begintime": low})
        elif self.filter_style == "fromdate":
            params |= {"todate": high} | ({} if low is None else {"fromdate": low})
        else:
            key = self.replication_key
            filters = [f"{key}<{high}"] + ([] if low is None else [f"{key}>={low}"])
            params["fields[]"] = filters
        return params

    def _read_window(
        self, context: Context | None, bookmark: WindowBookmark, window: Window
    ) -> Iterable[dict[str, Any]]:
        low, high = window.local(self.tap.timezone)
        offset = window.offset
        seen: set[str] = set()
        size = self.tap.page_size
        stamp = str(self.replication_key)
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
                row["ID"] = key if self.string_ids else row.get("ID", row.get("id"))
                row.pop("id", None)
                yield row
            offset += len(rows)
            if len(rows) < size:
                return
            bookmark.progress(window, offset)
            self.send_state_now()

    #: whether `ID` is kept as a string (events, hashes) rather than converted to a number
    string_ids: ClassVar[bool] = True

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No signpost: the bookmark only ever holds ends of completed windows."""
        return


class EmailingsStream(WindowedStream):
    """The product's emailings (`fromdate`/`todate`); also lists them for other streams."""

    filter_style = "fromdate"
    windowed = False
    string_ids = False

    def _all_rows(self) -> list[dict[str, Any]]:
        if self._cache is None:
            rows: list[dict[str, Any]] = []
            size = self.tap.page_size
            while True:
                params = {"start": len(rows), "limit": size, "total": "false"}
                page = rows_of(payload_of(self.fetch(None, params)))
                rows += [r for r in page if isinstance(r, dict)]
                if len(page) < size:
                    break
            self._cache = rows
        return self._cache

    _cache: list[dict[str, Any]] | None = None

    def emailing_ids(self) -> list[int]:
        """Every emailing of the product, in the API's order."""
        ids = (to_int(r.get("id", r.get("ID"))) for r in self._all_rows())
        return [i for i in ids if i is not None]

    def first_timestamp(self) -> datetime.datetime | None:
        """When the product's first emailing was sent (None: no emailings)."""
        stamps = []
        for row in self._all_rows():
            try:
                parsed = api_to_datetime(str(row.get("timestamp") or ""), self.tap.timezone)
            except ValueError:
                parsed = None
            if parsed is not None:
                stamps.append(parsed)
        return min(stamps) if stamps else None


#: Bound of the probe request whose only purpose is the server's `Date` (an empty answer).
_EPOCH = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)


# -- the stream table ------------------------------------------------------------------------
_COUNTS = ("destinations", "testgroups", "clicks", "impressions", "errors")
_ITERATIONS = ("processed_iterations", "scheduled_iterations")
_STAT_SHAPE = RecordShape(integers=("destinations",))
_EVENT_INTEGERS = ("emailing", "profile", "subprofile")


def _product_specs(product: str) -> tuple[StreamSpec, ...]:
    base = f"/{product}"
    counters = ("ID", "template", "document", "finalgroup", "unsubscribes", "abuses", *_COUNTS)
    specs: list[StreamSpec] = [
        StreamSpec(
            f"{product}_emailings",
            f"{base}/emailings",
            EmailingsStream,
            shape=RecordShape(integers=counters, timestamps=("timestamp",)),
            extra={"product": product, "replication_key": "timestamp"},
        ),
        StreamSpec(
            f"{product}_scheduled_emailings",
            f"{base}/scheduledemailings",
            CatalogueStream,
            shape=RecordShape(
                integers=("ID", "template", "document", "testgroups", "iterations", *_ITERATIONS),
                timestamps=("start", "next", "previous"),
            ),
            extra={"product": product},
        ),
        StreamSpec(
            f"{product}_templates",
            f"{base}/templates",
            CatalogueStream,
            shape=RecordShape(integers=("ID",)),
            extra={"product": product},
        ),
        StreamSpec(
            f"{product}_emailing_statistics",
            f"{base}/emailing/{{emailing_id}}/statistics",
            EmailingObjectStream,
            keys=("emailing_id",),
            shape=_STAT_SHAPE,
            extra={"product": product},
        ),
        StreamSpec(
            f"{product}_emailing_snapshot",
            f"{base}/emailing/{{emailing_id}}/snapshot",
            EmailingObjectStream,
            keys=("emailing_id",),
            shape=RecordShape(integers=("template", "document")),
            extra={"product": product},
        ),
        StreamSpec(
            f"{product}_emailing_destinations",
            f"{base}/emailing/{{emailing_id}}/destinations",
            WindowedStream,
            shape=RecordShape(
                integers=(("ID",) if product == "ms" else ())
                + ("internal", "emailing", "profile", "subprofile"),
                timestamps=("timestampsent",),
            ),
            extra={
                "product": product,
                "replication_key": "timestampsent",
                "filter_style": "fields",
                "windowed": False,
                "per_emailing": True,
                "string_ids": product != "ms",
                "renames": {"mailing": "emailing"},
            },
        ),
    ]
    for kind in EVENT_KINDS:
        specs.append(
            StreamSpec(
                f"{product}_{kind}",
                f"{base}/{kind}",
                WindowedStream,
                shape=RecordShape(
                    integers=_EVENT_INTEGERS + (("destination",) if product == "ms" else ()),
                    timestamps=("timestamp",),
                ),
                extra={
                    "product": product,
                    "replication_key": "timestamp",
                    "filter_style": "begintime" if product == "ms" else "fields",
                    "emailing_path": f"{base}/emailing/{{emailing_id}}/{kind}",
                    "destination_path": f"{base}/destination/{{destination_id}}/{kind}",
                    "renames": {"mailing": "emailing"},
                },
            )
        )
    if product == "publisher":
        specs.append(
            StreamSpec(
                "publisher_documents",
                "/publisher/documents",
                CatalogueStream,
                shape=RecordShape(integers=("ID", "template", "archived")),
                # The documents' HTML would make every page heavy.
                extra={"product": product, "params": {"source": "false"}},
            )
        )
    return tuple(specs)


MAILING_SPECS: tuple[StreamSpec, ...] = _product_specs("ms") + _product_specs("publisher")
