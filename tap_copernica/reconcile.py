"""What this run extracted, counted as it leaves the tap, for the `reconciliation` stream.

The tap's writer (`output.SingerLineWriter`) hands every RECORD to `RunTally.counter` (one
lookup per stream and page, so the profile streams, which nothing here counts, stay as fast)
and every ACTIVATE_VERSION to `RunTally.version_sent`. Counted:

- `profile_ids` / `subprofile_ids`: IDs per database / collection. A full ID list's
  ACTIVATE_VERSION goes out only once its whole scan has been written, so that moment is
  "the scan ended": the tally then calls `on_scan_end`, which asks the API's totals.
- event streams (`ms_clicks`, `publisher_errors`, ...): events per emailing and kind, the
  most recent ones with their timestamps (`EventCounts.recent`): the statistics are asked up
  to the product's earliest event horizon (`cutoff`), and an event stamped after it is
  counted by a later run, whose statistics include it (kept in STATE meanwhile).

Checks compare `found` (what the tap extracted) with `expected` (what Copernica reports):
`difference = found - expected`, so a negative difference is something the tap missed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from copernica_api.payloads import to_int
from tap_copernica.settings import PRODUCTS
from tap_copernica.streams.mailings import EVENT_KINDS

ID_LISTS = {"profile_ids": "database_id", "subprofile_ids": "collection_id"}
#: How far before the run's start (minus the lookback) event timestamps are kept one by one:
#: the earliest event horizon lies after that unless the API's clock is this far behind ours.
TAIL_MARGIN = dt.timedelta(hours=1)

Count = Callable[[dict[str, Any]], None]


def event_stream(name: str) -> tuple[str, str] | None:
    """(product, kind) of an event stream's name, else None."""
    product, _, kind = name.partition("_")
    return (product, kind) if product in PRODUCTS and kind in EVENT_KINDS else None


@dataclass
class EventCounts:
    """One event stream's records in this run: per emailing, and the recent ones apart."""

    #: the floor of the recent events: every earlier event is before the cutoff
    floor: dt.datetime
    older: Counter[int] = field(default_factory=Counter)
    #: (emailing, timestamp) of events at or after `floor`
    recent: list[tuple[int, dt.datetime]] = field(default_factory=list)

    def count(self, record: dict[str, Any]) -> None:
        emailing = to_int(record.get("emailing", record.get("emailing_id")))
        if emailing is None:
            return
        value = record.get("timestamp")
        stamp = dt.datetime.fromisoformat(str(value)) if value else None
        if stamp is None or stamp < self.floor:
            self.older[emailing] += 1
        else:
            self.recent.append((emailing, stamp))

    def split(self, cutoff: dt.datetime) -> tuple[Counter[int], list[tuple[int, dt.datetime]]]:
        """Counts of the events before `cutoff`, and the events at or after it."""
        before = Counter(self.older)
        after: list[tuple[int, dt.datetime]] = []
        for emailing, stamp in self.recent:
            if stamp < cutoff:
                before[emailing] += 1
            else:
                after.append((emailing, stamp))
        return before, after


class RunTally:
    """What the run's selected streams wrote, for the streams the reconciliation checks."""

    def __init__(self, active: Callable[[], bool], floor: dt.datetime) -> None:
        #: whether the reconciliation stream is selected (known once the catalog is read)
        self._active = active
        self._floor = floor
        self.ids: dict[str, Counter[int]] = {}
        self.events: dict[tuple[str, str], EventCounts] = {}
        #: called with the ID list stream's name when its scan has been written in full
        self.on_scan_end: Callable[[str], None] | None = None
        self.scans_ended: set[str] = set()
        self._counters: dict[str, Count | None] = {}

    def counter(self, stream: str) -> Count | None:
        """The function counting one record of `stream`, or None when it is not counted
        (asked for every record the SDK writes itself: an answer per stream, kept)."""
        try:
            return self._counters[stream]
        except KeyError:
            count = self._counters[stream] = self._counter(stream)
            return count

    def _counter(self, stream: str) -> Count | None:
        if not self._active():
            return None
        owner = ID_LISTS.get(stream)
        if owner is not None:
            ids = self.ids.setdefault(stream, Counter())

            def count_id(record: dict[str, Any]) -> None:
                ids[record[owner]] += 1

            return count_id
        pair = event_stream(stream)
        if pair is None:
            return None
        return self.events.setdefault(pair, EventCounts(self._floor)).count

    def version_sent(self, stream: str) -> None:
        """A full table went out complete: for an ID list, its scan has ended."""
        if stream in ID_LISTS and self._active() and stream not in self.scans_ended:
            self.scans_ended.add(stream)
            self.ids.setdefault(stream, Counter())
            if self.on_scan_end is not None:
                self.on_scan_end(stream)


@dataclass(frozen=True)
class Check:
    """One comparison: `found` (extracted) against `expected` (Copernica's own count)."""

    check: str
    object_type: str
    object_id: int
    expected: int
    found: int
    checked_at: str
    since: str | None = None
    until: str | None = None

    @property
    def difference(self) -> int:
        return self.found - self.expected

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference}

    def line(self) -> str:
        """The summary line of a mismatch."""
        period = f" ({self.since or 'start'} .. {self.until})" if self.until else ""
        return (
            f"Reconciliation: {self.check} of {self.object_type} {self.object_id}{period}: "
            f"extracted {self.found}, Copernica reports {self.expected} "
            f"(difference {self.difference:+d})."
        )


def statistic_total(statistics: Mapping[str, Any], kind: str) -> int | None:
    """The statistics' `total` of one event kind (every event, as the event lists give
    them; `unique` counts destinations), or None when the statistics do not give it."""
    entry = statistics.get(kind)
    if not isinstance(entry, Mapping):
        return None
    return to_int(entry.get("total"))


@dataclass
class ProductLedger:
    """The running event counts of one product, kept in the reconciliation's STATE.

    `since`/`until` (API local times) bound what `counts` covers: every event extracted
    with a timestamp in `[since, until)`; `pending` holds events extracted already but
    stamped at or after `until` (API local time strings), counted once `until` passes them.
    """

    kinds: list[str]
    since: str | None = None
    until: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    pending: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: the event streams' bookmarks when these counts were last brought up to date
    marks: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_state(cls, value: Any) -> ProductLedger | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("kinds"), list):
            return None
        return cls(
            kinds=[str(k) for k in value["kinds"]],
            since=value.get("since"),
            until=value.get("until"),
            counts={str(e): dict(c) for e, c in dict(value.get("counts") or {}).items()},
            pending={str(e): dict(p) for e, p in dict(value.get("pending") or {}).items()},
            marks={str(k): list(v) for k, v in dict(value.get("marks") or {}).items()},
        )

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    def add(
        self,
        kind: str,
        before: Mapping[int, int],
        after: Iterable[tuple[int, str]],
        until: str,
        *,
        counted: bool = True,
    ) -> None:
        """This run's events of `kind`: those before `until` (counted unless `counted` is
        False: a baseline run), the others pending; pending ones now before `until` count."""
        if counted:
            for emailing, n in before.items():
                row = self.counts.setdefault(str(emailing), {})
                row[kind] = row.get(kind, 0) + n
        waiting: dict[str, list[str]] = defaultdict(list)
        for key, kinds in self.pending.items():
            waiting[key] += kinds.get(kind, [])
        for emailing, stamp in after:
            waiting[str(emailing)].append(stamp)
        for key, stamps in waiting.items():
            due = sum(1 for s in stamps if s < until)
            if due and counted:
                row = self.counts.setdefault(key, {})
                row[kind] = row.get(kind, 0) + due
            later = sorted(s for s in stamps if s >= until)
            entry = self.pending.setdefault(key, {})
            if later:
                entry[kind] = later
            else:
                entry.pop(kind, None)
        self.pending = {e: p for e, p in self.pending.items() if p}

    def found(self, emailing: int, kind: str) -> int:
        return self.counts.get(str(emailing), {}).get(kind, 0)
