"""Progress a person can read while a long run goes on, and a summary when it ends.

The SDK's METRIC lines are for machines; these are for the engineer watching a 3 a.m. run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tap_copernica.budget import RequestBudgetSpent


@dataclass
class _Position:
    """How far a stream is through a read whose size is known (an ID range, pages)."""

    done: int
    total: int
    since: float  # when this read was first reported
    done_then: int  # how far it was then


def _context_text(context: Mapping[str, Any]) -> str:
    """`database_id 2, collection_id 5`: where a stream stopped."""
    return ", ".join(f"{key} {value}" for key, value in context.items())


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `2 h 07 min`: an ETA a person reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class RunProgress:
    """Counts records, pages, requests and retries per stream; logs them every `interval` s.

    Also keeps the run within `max_requests`: `request` refuses the request that would go
    beyond it, from whichever thread sends it.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 30.0, max_requests: int | None = None
    ) -> None:
        self._logger = logger
        self._interval = interval
        self.max_requests = max_requests
        #: (stream, context) of each stream that stopped for the budget, in order
        self.unread: list[tuple[str, dict[str, Any] | None]] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_log = self._started
        self.records: Counter[str] = Counter()
        self.pages: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self._sent = 0
        self._positions: dict[str, _Position] = {}
        self._units: dict[str, str] = {}

    def request(self, stream: str, context: Mapping[str, Any] | None = None) -> None:
        """A request (one try) is about to be sent; `RequestBudgetSpent` when that would go
        beyond `max_requests` (it is then not sent)."""
        with self._lock:
            limit = self.max_requests
            if limit is not None and self._sent >= limit:
                raise RequestBudgetSpent(stream, context, limit)
            self._sent += 1
            self.requests[stream] += 1

    def response(self, stream: str, *, ok: bool) -> None:
        """A response arrived (a page when `ok`)."""
        if ok:
            with self._lock:
                self.pages[stream] += 1

    @property
    def spent(self) -> bool:
        """Whether a stream stopped for the budget (a request refused that nothing needed,
        e.g. one read ahead, does not count)."""
        return bool(self.unread)

    def stopped(self, stream: str, context: Mapping[str, Any] | None) -> None:
        """`stream` stopped for the budget, at `context` (None: not known or no context)."""
        entry = (stream, dict(context) if context else None)
        if entry not in self.unread:
            self.unread.append(entry)

    def budget_line(self) -> str:
        """What the run used of its budget and what it left unread (once it is spent)."""
        left = ", ".join(
            name if ctx is None else f"{name} (from {_context_text(ctx)})"
            for name, ctx in self.unread
        )
        return (
            f"Request budget spent: {self._sent:,} of max_requests "
            f"{self.max_requests:,} requests used. Not read to the end: {left or 'none'}. "
            f"The next run continues from the STATE just emitted."
        )

    def retry(self, stream: str) -> None:
        """A request will be sent again."""
        with self._lock:
            self.retries[stream] += 1

    def position(self, stream: str, done: int, total: int, unit: str = "ID range") -> None:
        """The stream's current read is `done` of `total` (e.g. IDs of the range scanned):
        progress lines then give a percentage and an ETA. A new total, or going backwards,
        starts a new read (the next database's range)."""
        now = time.monotonic()
        with self._lock:
            known = self._positions.get(stream)
            if known is None or known.total != total or done < known.done:
                self._positions[stream] = _Position(done, total, now, done)
            else:
                known.done = done
            self._units[stream] = unit

    def _eta(self, stream: str, now: float) -> str:
        """`; 42 % of the ID range, about 3 min 05 s left` when the total is known."""
        known = self._positions.get(stream)
        if known is None or known.total <= 0:
            return ""
        share = min(known.done / known.total, 1.0)
        text = f"; {share:.0%} of the {self._units[stream]}"
        rate = (known.done - known.done_then) / max(now - known.since, 1e-9)
        if share < 1 and rate > 0:
            text += f", about {duration((known.total - known.done) / rate)} left"
        return text

    def record(self, stream: str, count: int = 1) -> None:
        """Records were handed on to be emitted (always on the sync's own thread)."""
        self.records[stream] += count
        if count == 1 and self.records[stream] % 100:
            return  # look at the clock every 100 records only: this runs for every record
        now = time.monotonic()
        if now - self._last_log >= self._interval:
            self._last_log = now
            self._log_progress(stream, now)

    def _log_progress(self, stream: str, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        self._logger.info(
            "Progress: %s %s records, %s pages%s; run total %s records in %.0f s (%s records/s).",
            stream,
            f"{self.records[stream]:,}",
            f"{self.pages[stream]:,}",
            self._eta(stream, now),
            f"{sum(self.records.values()):,}",
            elapsed,
            f"{sum(self.records.values()) / elapsed:,.0f}",
        )

    def summary(self) -> list[str]:
        """Lines for the end of the run: per stream, then totals."""
        seconds = time.monotonic() - self._started
        lines = [
            f"  {name}: {self.records[name]:,} records, {self.pages[name]:,} pages, "
            f"{self.requests[name]:,} requests"
            + (f", {self.retries[name]} retries" if self.retries[name] else "")
            for name in sorted(set(self.records) | set(self.pages) | set(self.requests))
        ]
        lines.append(
            f"Run summary: {sum(self.records.values()):,} records, "
            f"{sum(self.requests.values()):,} requests, {sum(self.retries.values())} retries, "
            f"{seconds:.1f} s."
        )
        return lines

    def log_summary(self) -> None:
        """Write the summary to the log."""
        for line in self.summary():
            self._logger.info("%s", line)
