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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from copernica_api.errors import CopernicaPagingError
from copernica_api.payloads import dict_rows, payload_of
from copernica_api.timeutil import parse_instant
from tap_copernica.settings import PRODUCTS
from tap_copernica.streams.base import ListStream, ObjectStream, RecordShape, StreamSpec
from tap_copernica.windows import Window, WindowBookmark, horizon_of, in_window

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

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


class EmailingObjectStream(MailingStream):
    """One object per emailing (statistics, snapshot), with the emailing's ID injected."""


class WindowedStream(MailingStream):
    """Immutable timestamped rows, read in closed windows with the API's range filters."""

    # Records leave in window order and `WindowBookmark` writes the STATE entry itself (the
    # SDK's copy of each record's timestamp would lose the in-window position).
    is_sorted = True
    check_sorted = False
    sdk_moves_bookmarks = False
    spec: WindowedSpec
    _horizon: datetime.datetime | None = None

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Every row of the windows between the bookmark and the run's horizon."""
        bookmark = WindowBookmark(
            self.get_context_state(context), self.settings.tz, str(self.replication_key)
        )
        floor = self._floor(context)
        if floor is None and bookmark.bookmark() is None and self._needs_floor:
            return  # no emailing yet, so no events
        horizon = self._run_horizon(context)
        days = self.settings.event_window_days
        for window in bookmark.windows(floor, horizon, days if self.spec.windowed else None):
            yield from self._read_window(context, bookmark, window)
            bookmark.completed(window)
            self.send_state_now()

    # -- where to start and stop -----------------------------------------------------------
    @property
    def _needs_floor(self) -> bool:
        return self.spec.filter_style != "fromdate" and self.replication_key == "timestamp"

    def _floor(self, context: Context | None) -> datetime.datetime | None:
        """A first run starts at `start_date`, else (events) at the product's first emailing:
        no event predates its emailing. Emailings and destinations start at the beginning."""
        start_date = self.settings.start_date
        if start_date:
            return parse_instant(start_date, self.settings.tz)
        if not self._needs_floor:
            return None
        return self.account.first_emailing_time(self.spec.product)

    def _run_horizon(self, context: Context | None) -> datetime.datetime:
        """The server's time (minus `lookback_seconds`) at the stream's first request."""
        if self._horizon is None:
            probe = self.fetch(context, {**self._params(Window(None, _EPOCH), 0), "limit": 1})
            self._horizon = horizon_of(probe.headers.get("Date"), self.settings.lookback_seconds)
        return self._horizon

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

    def _read_window(
        self, context: Context | None, bookmark: WindowBookmark, window: Window
    ) -> Iterable[dict[str, Any]]:
        low, high = window.local(self.settings.tz)
        offset = window.offset
        seen: set[str] = set()
        size = self.settings.page_size
        stamp = str(self.replication_key)
        string_ids = self.spec.string_ids
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
                return
            bookmark.progress(window, offset)
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


#: Bound of the probe request whose only purpose is the server's `Date` (an empty answer).
_EPOCH = datetime.datetime(1970, 1, 2, tzinfo=datetime.timezone.utc)


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
