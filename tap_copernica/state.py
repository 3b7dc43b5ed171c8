"""The resumable position of one profile or subprofile partition, kept in its STATE entry.

Entry keys (besides the SDK's `context`):
- `replication_key` / `replication_key_value`: `modified` of the last record emitted, as
  ISO 8601 with offset. The next run reads `modified >=` that value again...
- `seen_ids`: ...and skips the IDs listed here, which were emitted at exactly that value.
  Kept only once that second lies safely in the past on the server's clock (a profile
  changed again in the same second keeps the same `modified`, so it must not be skipped)
  and while the list is short.
- `scan`: an ID-ordered read in progress (first full load, first sync from `start_date`,
  the rest of an incremental run after a mass update, or a database whose own field
  called `modified` hides the timestamp from filters): `after_id` to resume from, `since`
  (rows older than this are skipped), `started` (server time when the scan began; becomes
  the bookmark when the scan completes; taken a few seconds before the first page's `Date`,
  so a change made while the scan runs, behind its position or not, is read by the next
  run). Optional: `filtered` (the API applies `since` too), `skip` (IDs emitted in this run
  before the scan began, left out) and `seen_ids` (IDs the run before emitted at exactly
  `since`, left out while unchanged); both lists keep only IDs above `after_id`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.timeutil import api_to_iso, filter_floor, parse_instant, to_api
from tap_copernica.paging import ProfileCursor

MAX_SEEN_IDS = 1000
REPLICATION_KEY = "modified"


def state_problems(stream: str, partition: dict[str, Any], tz: ZoneInfo) -> list[str]:
    """What is wrong with one partition's STATE entry (hand edits, other versions)."""
    where = f"state of stream '{stream}', partition {partition.get('context')}"
    problems = []
    value = partition.get("replication_key_value")
    if value is not None:
        try:
            parse_instant(str(value), tz)
        except ValueError:
            problems.append(f"{where}: replication_key_value {value!r} is not an ISO 8601 time")
    seen = partition.get("seen_ids")
    if seen is not None and not (
        isinstance(seen, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in seen)
    ):
        problems.append(f"{where}: seen_ids must be a list of profile IDs")
    scan = partition.get("scan")
    if scan is not None and not (isinstance(scan, dict) and isinstance(scan.get("after_id"), int)):
        problems.append(f"{where}: scan must hold an integer after_id")
    elif isinstance(scan, dict) and not all(_id_list(scan.get(k)) for k in ("skip", "seen_ids")):
        problems.append(f"{where}: scan skip and seen_ids must be lists of profile IDs")
    return problems


def _id_list(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(isinstance(i, int) and not isinstance(i, bool) for i in value)
    )


class ProfileBookmark:
    """Reads and advances one partition's bookmark while its records are emitted."""

    def __init__(self, state: dict[str, Any], tz: ZoneInfo, start_date: str | None) -> None:
        self.state = state
        self.tz = tz
        self.start_date = start_date
        self._value: str | None = None
        self._ids: list[int] = []
        self._live_from: str | None = None

    def cursor(self, page_size: int, *, by_id: bool, parallel: bool = False) -> ProfileCursor:
        """Where to continue: an unfinished scan, after the bookmark, or a new scan.

        `by_id`: the API cannot filter on `modified` here. `parallel`: several requests may
        be in flight, so a first sync from `start_date` reads by ID ranges, filtered.
        """
        scan = self.state.get("scan")
        if isinstance(scan, dict):
            return ProfileCursor(
                page_size,
                by_id=True,
                since=scan.get("since"),
                after_id=int(scan["after_id"]),
                # The field called `modified` may have appeared since the scan began.
                filtered=bool(scan.get("filtered")) and not by_id,
                skip=set(scan.get("skip") or ()),
                seen=set(scan.get("seen_ids") or ()),
            )
        floor, seen = self._starting_point()
        first_sync = self._bookmark_instant() is None
        if floor is None or by_id or (parallel and first_sync):
            filtered = floor is not None and not by_id
            self.state["scan"] = {"since": floor, "after_id": 0, "started": None}
            if filtered:
                self.state["scan"]["filtered"] = True
            return ProfileCursor(page_size, by_id=True, since=floor, filtered=filtered)
        return ProfileCursor(page_size, boundary=floor, seen=seen)

    def switch_to_scan(
        self, cursor: ProfileCursor, emitted: set[int], server_now: str | None
    ) -> ProfileCursor:
        """The rest of a `modified` read as a filtered ID scan (many rows changed).

        The scan reads `modified >= boundary` by ID. The IDs emitted so far in this run are
        left out whatever their value now (a profile changed again meanwhile is read by the
        next run: the bookmark becomes this page's server time); IDs emitted by the run
        before at the boundary are left out while they keep that value.
        """
        since = cursor.boundary
        seen = cursor.seen - emitted
        self.state["scan"] = scan = {
            "since": since,
            "after_id": 0,
            "started": server_now or self._fallback_now(),
            "filtered": True,
            "skip": sorted(emitted),
        }
        if seen:
            scan["seen_ids"] = sorted(seen)
        return ProfileCursor(
            cursor.page_size, by_id=True, since=since, filtered=True, skip=emitted, seen=seen
        )

    def _starting_point(self) -> tuple[str | None, set[int]]:
        bookmark = self._bookmark_instant()
        start = parse_instant(self.start_date, self.tz) if self.start_date else None
        if bookmark is None and start is None:
            return None, set()
        if bookmark is None or (start is not None and start > bookmark):
            assert start is not None
            return filter_floor(start, self.tz)[0], set()
        floor, moved_back = filter_floor(bookmark, self.tz)
        seen = set() if moved_back else {int(i) for i in self.state.get("seen_ids") or []}
        return floor, seen

    def _bookmark_instant(self) -> dt.datetime | None:
        value = self.state.get("replication_key_value")
        if self.state.get("replication_key") != REPLICATION_KEY or not value:
            return None
        return parse_instant(str(value), self.tz)

    # -- while paging ---------------------------------------------------------------------
    def page_served(self, server_now: str | None) -> None:
        """Called for every page before its rows: a scan's start is the first page's time."""
        scan = self.state.get("scan")
        if isinstance(scan, dict) and scan.get("started") is None:
            scan["started"] = server_now or self._fallback_now()

    def _fallback_now(self) -> str:
        """A start time when the API sent no `Date`: well before now on any clock."""
        return to_api(dt.datetime.now(self.tz) - dt.timedelta(minutes=5), self.tz)

    def emitted(self, row: dict[str, Any], server_now: str | None) -> None:
        """Record that `row` is about to be emitted (call before yielding it)."""
        scan = self.state.get("scan")
        if isinstance(scan, dict):
            # Every row up to this ID is emitted now or was left out by `since`.
            scan["after_id"] = int(row["ID"])
            return
        value = row.get("modified")
        if not isinstance(value, str):
            return
        settled = server_now is not None and value < server_now
        if not settled and self._live_from is None:
            # From here on the rows are live: a profile can still change within the second
            # being read and stay behind the read position. Everything from this horizon on
            # is read again by the next run, so the bookmark stops here.
            self._live_from = server_now or value
        if self._live_from is not None:
            self.state["replication_key"] = REPLICATION_KEY
            self.state["replication_key_value"] = api_to_iso(min(value, self._live_from), self.tz)
            self.state.pop("seen_ids", None)
            return
        if value != self._value:
            self._value, self._ids = value, []
            self.state["replication_key"] = REPLICATION_KEY
            self.state["replication_key_value"] = api_to_iso(value, self.tz)
        if len(self._ids) < MAX_SEEN_IDS:
            self._ids.append(int(row["ID"]))
            self.state["seen_ids"] = self._ids
        else:  # a huge group of equal timestamps: replay it next run rather than list it
            self.state.pop("seen_ids", None)

    def page_done(self, cursor: ProfileCursor) -> None:
        """After the last row of a page: a scan may resume after rows it left out too."""
        self.scanned_to(cursor.after_id)

    @property
    def scanning(self) -> bool:
        """Whether the partition is in an ID-ordered scan (the position is `after_id`)."""
        return isinstance(self.state.get("scan"), dict)

    def emitted_through(self, row_id: int) -> None:
        """A scan's rows up to `row_id` are about to be emitted (a page at once: `emitted`
        for its last row, in a scan)."""
        self.state["scan"]["after_id"] = row_id

    def scanned_to(self, after_id: int) -> None:
        """A scan has read every row up to `after_id`; IDs left out below it are done with."""
        scan = self.state.get("scan")
        if not isinstance(scan, dict):
            return
        scan["after_id"] = max(int(scan["after_id"]), after_id)
        for key in ("skip", "seen_ids"):
            ids = scan.get(key)
            if ids and ids[0] <= after_id:
                scan[key] = ids[bisect.bisect_right(ids, after_id) :]

    def finish(self) -> None:
        """The partition was read to its end."""
        scan = self.state.pop("scan", None)
        if isinstance(scan, dict) and scan.get("started"):
            self.state["replication_key"] = REPLICATION_KEY
            self.state["replication_key_value"] = api_to_iso(scan["started"], self.tz)
            self.state.pop("seen_ids", None)
