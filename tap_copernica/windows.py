"""Reading immutable, timestamped rows (events, emailings, destinations) in time windows.

A run reads `[start, horizon)` as consecutive windows `[start, end)`. `start` is the
bookmark, else the stream's floor (see `WindowedStream`: never before data can exist). The
horizon is the server's `Date` of a response the run already has, minus `lookback_seconds`
(as for profiles): rows of the last seconds can still arrive, so the next run reads from
there. An earlier horizon is always safe: it only leaves more for the next run.

Window sizes adapt to the data (`next_size`): a window that came back sparse (under a
quarter of a page) makes the next one twice as long, up to `cap`; one that needed several
pages makes the next one shorter (at least halved, down to an hour). Only the number of
requests depends on the sizes: every window is closed and read exactly.

Inside a window the API pages by offset (`start`/`limit`). Rows are immutable and a window
ends before the horizon, so the window is closed: its rows and their order no longer
change, and an offset is a stable, resumable position. The server is asked for
`[start, end]` and rows stamped exactly `end` are left to the next window, so a window
boundary neither loses nor repeats a row whether the server treats the end as inclusive
or not; keys are deduplicated within a window as a second guard.

STATE entry of a stream (or of one partition when `emailing_ids` is used):
- `replication_key` / `replication_key_value`: the end of the last completed window
  (ISO 8601 with offset). Everything before it has been emitted.
- `window` (while a window is read): `start`, `end` (ISO 8601) and `offset`, the number of
  rows the API has served from that window so far; every row before that offset has been
  emitted. A STATE message follows every page, so a run that dies resumes at the page it
  was reading.
- `window_seconds`: the length of the next new window (adapted after each window), so a
  resumed run plans the same windows an uninterrupted one would have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.timeutil import parse_instant, to_api

#: The shortest window adaptation makes (a dense stretch still moves in hour steps).
MIN_WINDOW = dt.timedelta(hours=1)
#: A window with fewer rows than this share of a page counts as sparse.
SPARSE_SHARE = 4


@dataclass(frozen=True)
class Window:
    """`[start, end)` as aware instants; `start` None means "from the beginning"."""

    start: dt.datetime | None
    end: dt.datetime
    offset: int = 0

    def local(self, tz: ZoneInfo) -> tuple[str | None, str]:
        """The bounds as the API's local strings (the form its filters compare)."""
        return (None if self.start is None else to_api(self.start, tz)), to_api(self.end, tz)


def horizon_of(date_header: str | None, lookback_seconds: int) -> dt.datetime:
    """Rows stamped before this instant can no longer appear: the server's `Date` minus
    the lookback (the local clock when the server sent none)."""
    sent: dt.datetime | None = None
    if date_header:
        try:
            sent = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            sent = None
    if sent is None or sent.tzinfo is None:
        sent = dt.datetime.now(dt.timezone.utc)
    return sent - dt.timedelta(seconds=lookback_seconds)


@dataclass(frozen=True)
class Sizing:
    """How long windows are: `first` when STATE names no size, adapted within
    `[MIN_WINDOW, cap]` by the rows each window held (`page_size` rows per request)."""

    first: dt.timedelta
    cap: dt.timedelta
    page_size: int

    def next_size(self, size: dt.timedelta, window: Window, rows: int) -> dt.timedelta:
        """The length of the window after `window` (`size` long as planned), which held
        `rows` rows.

        Sparse: twice the longer of the planned and the actual length (a window the
        horizon cut short says nothing about the planned one). Several pages: the actual
        length divided by the pages it needed (at least halved).
        """
        actual = window.end - window.start if window.start is not None else size
        pages = -(-rows // self.page_size)
        if rows * SPARSE_SHARE < self.page_size:
            return min(self.cap, 2 * size) if actual >= size else size
        if pages > 1:
            return whole_seconds(max(MIN_WINDOW, min(size, actual / pages)))
        return size


def whole_seconds(length: dt.timedelta) -> dt.timedelta:
    """`length` without its fraction of a second (the API's timestamps have none)."""
    return dt.timedelta(seconds=int(length.total_seconds()))


class WindowBookmark:
    """Plans the windows of one stream or partition and keeps its STATE entry current."""

    def __init__(self, state: dict[str, Any], tz: ZoneInfo, replication_key: str) -> None:
        self.state = state
        self.tz = tz
        self.key = replication_key

    def _instant(self, value: Any) -> dt.datetime | None:
        if not isinstance(value, str) or not value:
            return None
        return parse_instant(value, self.tz)

    def bookmark(self) -> dt.datetime | None:
        """End of the last completed window, if any."""
        if self.state.get("replication_key") != self.key:
            return None
        return self._instant(self.state.get("replication_key_value"))

    def size(self, default: dt.timedelta) -> dt.timedelta:
        """The length of the next new window: STATE's, else `default`."""
        seconds = self.state.get("window_seconds")
        if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds > 0:
            return dt.timedelta(seconds=seconds)
        return default

    def resumed(self) -> Window | None:
        """The window a previous run was reading when it stopped, if any."""
        current = self.state.get("window")
        if not isinstance(current, dict) or not isinstance(current.get("end"), str):
            return None
        return Window(
            self._instant(current.get("start")),
            parse_instant(current["end"], self.tz),
            int(current.get("offset") or 0),
        )

    def windows(
        self,
        floor: dt.datetime | None,
        horizon: dt.datetime,
        sizing: Sizing | int | None,
    ) -> Iterator[Window]:
        """The windows still to read, oldest first: an unfinished one, then new ones.

        `floor` is where a first run starts (None: from the beginning of the data).
        `sizing` None makes one window up to the horizon; an int is a fixed size in days.
        Each new window is planned when the previous one is done (`completed` adapts the
        size in STATE), so the generator must be consumed in step with reading.
        """
        if isinstance(sizing, int):
            days = dt.timedelta(days=sizing)
            sizing = Sizing(days, days, 1)
        start = self.bookmark() or floor
        resumed = self.resumed()
        if resumed is not None:
            yield resumed
            start = resumed.end
        while start is None or start < horizon:
            # Arithmetic in UTC: every bound is a real instant, even across clock changes.
            start = None if start is None else start.astimezone(dt.timezone.utc)
            if start is None or sizing is None:
                end = horizon
            else:
                end = min(horizon, start + self.size(sizing.first))
            window = Window(start, end)
            low, high = window.local(self.tz)
            if low is not None and high <= low:
                return  # a clock change made the local bounds collapse: try next run
            yield window
            start = end

    def first(
        self, floor: dt.datetime | None, horizon: dt.datetime, sizing: Sizing | int | None
    ) -> Window | None:
        """The window a run would read first (planned without changing STATE)."""
        return next(iter(self.windows(floor, horizon, sizing)), None)

    def progress(self, window: Window, offset: int, size: dt.timedelta | None = None) -> None:
        """Rows before `offset` of `window` have been emitted."""
        self.state["window"] = {
            "start": None if window.start is None else window.start.isoformat(),
            "end": window.end.isoformat(),
            "offset": offset,
        }
        self._keep_size(size)

    def completed(self, window: Window, size: dt.timedelta | None = None) -> None:
        """Every row of `window` has been emitted: the bookmark moves to its end, and the
        next window will be `size` long."""
        self.state.pop("window", None)
        self.state["replication_key"] = self.key
        self.state["replication_key_value"] = window.end.isoformat()
        self._keep_size(size)

    def _keep_size(self, size: dt.timedelta | None) -> None:
        if size is not None:
            self.state["window_seconds"] = max(1, int(size.total_seconds()))


def in_window(value: Any, low: str | None, high: str) -> bool | None:
    """Whether a row's local timestamp lies in `[low, high)`; None when the server sent a
    row outside `[low, high]` (it ignored the filter, so paging cannot be trusted)."""
    text = str(value or "")
    if (low is not None and text < low) or text > high:
        return None
    return text < high
