"""Reading immutable, timestamped rows (events, emailings, destinations) in time windows.

A run reads `[bookmark, horizon)` as consecutive windows `[start, end)` of at most
`event_window_days` (one window where no size is given). The horizon is the server's
`Date` at the start of the stream minus `lookback_seconds` (as for profiles): rows of the
last seconds can still arrive, so the next run reads from there.

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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

from copernica_api.timeutil import parse_instant, to_api


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

    def windows(
        self, floor: dt.datetime | None, horizon: dt.datetime, days: int | None
    ) -> Iterator[Window]:
        """The windows still to read, oldest first: an unfinished one, then new ones.

        `floor` is where a first run starts (None: from the beginning of the data).
        """
        current = self.state.get("window")
        start = self.bookmark() or floor
        if isinstance(current, dict) and isinstance(current.get("end"), str):
            resumed = Window(
                self._instant(current.get("start")),
                parse_instant(current["end"], self.tz),
                int(current.get("offset") or 0),
            )
            yield resumed
            start = resumed.end
        while start is None or start < horizon:
            # Arithmetic in UTC: every bound is a real instant, even across clock changes.
            start = None if start is None else start.astimezone(dt.timezone.utc)
            end = horizon if start is None or days is None else min(horizon, start + _days(days))
            window = Window(start, end)
            low, high = window.local(self.tz)
            if low is not None and high <= low:
                return  # a clock change made the local bounds collapse: try next run
            yield window
            start = end

    def progress(self, window: Window, offset: int) -> None:
        """Rows before `offset` of `window` have been emitted."""
        self.state["window"] = {
            "start": None if window.start is None else window.start.isoformat(),
            "end": window.end.isoformat(),
            "offset": offset,
        }

    def completed(self, window: Window) -> None:
        """Every row of `window` has been emitted: the bookmark moves to its end."""
        self.state.pop("window", None)
        self.state["replication_key"] = self.key
        self.state["replication_key_value"] = window.end.isoformat()


def _days(days: int) -> dt.timedelta:
    return dt.timedelta(days=days)


def in_window(value: Any, low: str | None, high: str) -> bool | None:
    """Whether a row's local timestamp lies in `[low, high)`; None when the server sent a
    row outside `[low, high]` (it ignored the filter, so paging cannot be trusted)."""
    text = str(value or "")
    if (low is not None and text < low) or text > high:
        return None
    return text < high
