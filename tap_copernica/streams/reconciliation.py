"""`reconciliation`: what this run extracted against what Copernica itself reports.

Optional (not selected by default): it costs one request per database (`profile_ids`
selected), per collection (`subprofile_ids` selected) and per emailing of each product
with an event stream selected. Registered last, so it runs after the streams it checks;
one record per check (`reconcile.Check`), `difference = found - expected`:

- `profile_ids` / `subprofile_ids`: the IDs the scan emitted per database / collection
  against the list's `total`, asked once when the scan ends (its ACTIVATE_VERSION);
- `<product>_<kind>` per emailing: the events extracted so far (running counts in this
  stream's STATE, never re-read) against the emailing's statistics (`total`) for the same
  period: from `start_date` (or the beginning) up to the product's earliest event horizon.

A check whose source stream was not selected (or failed) is not made. Each mismatch is
logged as one WARNING line at the end of the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from copernica_api.errors import CopernicaAPIError, RetriesExhaustedError
from copernica_api.payloads import payload_of, to_int
from copernica_api.timeutil import api_to_iso, parse_instant, to_api
from tap_copernica.budget import RequestBudgetSpent
from tap_copernica.output import SingerLineWriter
from tap_copernica.reconcile import (
    EVENT_KINDS,
    ID_LISTS,
    PRODUCTS,
    TAIL_MARGIN,
    Check,
    ProductLedger,
    RunTally,
    statistic_total,
)
from tap_copernica.streams.base import ObjectStream, StreamSpec

if TYPE_CHECKING:
    from singer_sdk import Stream, Tap
    from singer_sdk.helpers.types import Context

    from tap_copernica.client import StreamServices

#: The list whose `total` is each ID list's expected count.
_TOTAL_PATHS = {
    "profile_ids": ("database", "/database/{}/profiles"),
    "subprofile_ids": ("collection", "/collection/{}/subprofiles"),
}


class ReconciliationStream(ObjectStream):
    """One record per check, made at the end of the run."""

    selected_by_default = False
    _at_end = False

    def __init__(self, tap: Tap, services: StreamServices, **kwargs: Any) -> None:
        super().__init__(tap, services, **kwargs)
        self._owner = tap
        # The run's own logger, as the run summary: its lines sit with the summary's.
        self._log = tap.logger
        self._checks: list[Check] = []
        floor = dt.datetime.now(dt.timezone.utc) - TAIL_MARGIN
        self.tally = RunTally(
            lambda: self.chosen, floor - dt.timedelta(seconds=self.settings.lookback_seconds)
        )
        self.tally.on_scan_end = self._scan_ended
        writer = self.message_writer
        if isinstance(writer, SingerLineWriter):
            writer.observer = self.tally

    @property
    def selected(self) -> bool:
        """Chosen, and the run's other streams are done. The SDK syncs streams in name
        order, so its loop skips this one; `run_last` syncs it after every other."""
        return self._at_end and self.chosen

    @selected.setter
    def selected(self, value: bool | None) -> None:
        """Select or deselect in the catalog (the SDK's setter)."""
        ObjectStream.selected.fset(self, value)  # type: ignore[attr-defined]

    @property
    def chosen(self) -> bool:
        """Whether the catalog selects this stream."""
        return bool(super().selected)

    def sync_at_end(self) -> None:
        """The SDK's sync of this stream, once every other stream has finished."""
        if self.progress.spent or self.services.parts.resumed:
            # A run cut short by `max_requests`, or one continuing such a run (it skips the
            # parts read before), saw part of its streams: nothing to check, and no request
            # more. The next complete run checks again (its event counts start again: the
            # event bookmarks moved without this stream counting).
            self._log.info("Reconciliation: no checks in a run split by max_requests.")
            return
        self._at_end = True
        self.sync()
        self.finalize_state_progress_markers()

    # -- requests of this stream ----------------------------------------------------------
    def get_url(self, context: Context | None) -> str:
        """The path the check asks, carried in the context."""
        return self.url_base + str((context or {})["path"])

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        return dict(next_page_token or {})

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The object at `path`; None (with a warning) when the API refuses it: a check it
        cannot make is left out, and the stream it would check goes on."""
        try:
            body = payload_of(self.fetch({"path": path}, params))
        except (CopernicaAPIError, RetriesExhaustedError, RequestBudgetSpent) as exc:
            # Called while other streams run (`_scan_ended`): a check must never end them.
            self._log.warning("Reconciliation: check left out: %s", exc)
            return None
        return body if isinstance(body, dict) else None

    # -- ID lists: asked when the scan ends -----------------------------------------------
    def _scan_ended(self, stream: str) -> None:
        """The list's `total` now (one request per database or collection), against the
        IDs the scan emitted. None in a run split by `max_requests`: no checks are made in
        one (`sync_at_end`), so its requests are not spent."""
        if self.services.parts.active:
            return
        owner_key = ID_LISTS[stream]
        object_type, path = _TOTAL_PATHS[stream]
        found = self.tally.ids.get(stream) or Counter()
        for partition in self.account.id_list_partitions(stream):
            owner = int(partition[owner_key])
            body = self._get(path.format(owner), {"start": 0, "limit": 1, "total": "true"})
            total = None if body is None else to_int(body.get("total"))
            if total is None:
                continue
            self._checks.append(
                Check(stream, object_type, owner, total, found.get(owner, 0), _now())
            )

    # -- the run's end --------------------------------------------------------------------
    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The ID checks made when the scans ended, then the event checks."""
        checks = list(self._checks)
        state = self.get_context_state(None)
        ledgers = state.setdefault("events", {})
        for product in PRODUCTS:
            checks += self._event_checks(product, ledgers)
        mismatches = [c for c in checks if c.difference]
        for check in mismatches:
            self._log.warning("%s", check.line())
        self._log.info(
            "Reconciliation: %d checks, %d with a difference.", len(checks), len(mismatches)
        )
        for check in checks:
            yield check.record()

    def _event_checks(self, product: str, ledgers: dict[str, Any]) -> list[Check]:
        streams = self._owner.streams
        kinds = [
            kind
            for kind in EVENT_KINDS
            if streams[f"{product}_{kind}"].selected
            # a stream the API refused in this run has not read all it should have
            and getattr(streams[f"{product}_{kind}"], "failure", None) is None
        ]
        if not kinds:
            return []
        if self.settings.destinations_of(product) is not None:
            self._log.info(
                "Reconciliation: no %s event checks: `destination_ids` reads only some "
                "destinations' events, the statistics count every destination.",
                product,
            )
            return []
        cutoff = self._cutoff(product, kinds)
        if cutoff is None:
            return []
        tz = self.settings.tz
        until = to_api(cutoff, tz)
        earlier = self._marks(self._input_bookmarks(), product, kinds)
        ledger = ProductLedger.from_state(ledgers.get(product))
        if ledger is not None and (
            sorted(ledger.kinds) != sorted(kinds) or ledger.marks != earlier
        ):
            # Event streams ran without this stream's counting since its last check (a run
            # without it, or one stopped early), or read other kinds: start again.
            ledger = None
        counted = True
        if ledger is None:
            ledger, counted = self._new_ledger(product, kinds, until, earlier)
        assert ledger is not None
        for kind in kinds:
            counts = self.tally.events.get((product, kind))
            if counts is not None and cutoff < counts.floor:
                self._log.warning(
                    "Reconciliation: the API's clock is more than %s behind this machine's; "
                    "no %s event checks this run.",
                    TAIL_MARGIN,
                    product,
                )
                return []
        for kind in kinds:
            counts = self.tally.events.get((product, kind))
            before, after = counts.split(cutoff) if counts else ({}, [])
            recent = [(e, to_api(stamp, tz)) for e, stamp in after]
            ledger.add(kind, before, recent, until, counted=counted)
        ledger.until = until
        ledger.marks = self._marks(self.tap_state.get("bookmarks", {}), product, kinds)
        ledgers[product] = ledger.to_state()
        if not counted:
            return []
        return self._compare(product, ledger, cutoff)

    def _new_ledger(
        self, product: str, kinds: list[str], until: str, earlier: dict[str, list[str]]
    ) -> tuple[ProductLedger, bool]:
        """A new ledger, and whether this run's events count: from `start_date` when this
        run read the event streams from their beginning, else from now on (their earlier
        events were never counted here)."""
        if not any(earlier.values()):
            start = self.settings.start_date
            tz = self.settings.tz
            since = to_api(parse_instant(start, tz), tz) if start else None
            return ProductLedger(kinds=kinds, since=since), True
        self._log.info(
            "Reconciliation: %s event checks start with the next run (the event streams "
            "began from bookmarks whose events this stream did not count).",
            product,
        )
        return ProductLedger(kinds=kinds, since=until), False

    def _input_bookmarks(self) -> dict[str, Any]:
        """The bookmarks this run started from."""
        writer = self.message_writer
        started = writer.input_state if isinstance(writer, SingerLineWriter) else None
        return dict((started or {}).get("bookmarks") or {})

    @staticmethod
    def _marks(bookmarks: dict[str, Any], product: str, kinds: list[str]) -> dict[str, list[str]]:
        """Where each event stream's bookmarks stand (every partition's), to tell whether
        they moved without this stream counting."""
        marks: dict[str, list[str]] = {}
        for kind in kinds:
            entry = bookmarks.get(f"{product}_{kind}") or {}
            values = [entry, *entry.get("partitions", [])]
            marks[kind] = sorted(
                str(v["replication_key_value"]) for v in values if v.get("replication_key_value")
            )
        return marks

    def _cutoff(self, product: str, kinds: list[str]) -> dt.datetime | None:
        """The product's earliest event horizon: every event stamped before it has been
        read by each of its event streams."""
        bookmarks = self.tap_state.get("bookmarks", {})
        ends: list[dt.datetime] = []
        for kind in kinds:
            entry = bookmarks.get(f"{product}_{kind}", {})
            for part in [entry, *entry.get("partitions", [])]:
                value = part.get("replication_key_value")
                if value:
                    ends.append(parse_instant(str(value), self.settings.tz))
        return min(ends) if ends else None

    def _compare(self, product: str, ledger: ProductLedger, cutoff: dt.datetime) -> list[Check]:
        """One statistics request per emailing, for the ledger's period."""
        tz = self.settings.tz
        # The API reads `endtime` inclusively (taken so; timestamps have whole seconds).
        params = {"endtime": to_api(cutoff - dt.timedelta(seconds=1), tz)}
        if ledger.since:
            params["begintime"] = ledger.since
        wanted = self.settings.emailings_of(product)
        emailings = wanted if wanted is not None else self.account.emailing_ids(product)
        since, until = api_to_iso(ledger.since, tz), api_to_iso(ledger.until, tz)
        checks: list[Check] = []
        for emailing in emailings:
            statistics = self._get(f"/{product}/emailing/{emailing}/statistics", params)
            if statistics is None:
                continue
            now = _now()
            for kind in ledger.kinds:
                expected = statistic_total(statistics, kind)
                if expected is None:
                    continue
                checks.append(
                    Check(
                        f"{product}_{kind}",
                        "emailing",
                        int(emailing),
                        expected,
                        ledger.found(int(emailing), kind),
                        now,
                        since,
                        until,
                    )
                )
        return checks


@contextmanager
def passed_over_quietly(logger: logging.Logger, streams: Iterable[Stream]) -> Iterator[None]:
    """While the SDK's loop runs: no "Skipping deselected stream" line for the selected
    streams that run after it (`run_last`); it would tell the user the opposite."""
    last = {s.name for s in streams if isinstance(s, ReconciliationStream) and s.chosen}

    def keep(record: logging.LogRecord) -> bool:
        skipping = record.msg == "Skipping deselected stream '%s'."
        return not (skipping and isinstance(record.args, tuple) and record.args[0] in last)

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def run_last(streams: Iterable[Stream]) -> None:
    """Sync the streams that check what the others wrote (after `Tap.sync_all`)."""
    for stream in streams:
        if isinstance(stream, ReconciliationStream) and stream.chosen:
            stream.sync_at_end()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


RECONCILIATION_SPECS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "reconciliation",
        "",
        ReconciliationStream,
        keys=("check", "object_id", "checked_at"),
        emailing_lists=PRODUCTS,  # a check per emailing of each product
    ),
)
