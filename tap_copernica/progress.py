"""Progress a person can read while a long run goes on, and a summary when it ends.

The SDK's METRIC lines are for machines; these are for the engineer watching a 3 a.m. run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter


class RunProgress:
    """Counts records, pages, requests and retries per stream; logs them every `interval` s."""

    def __init__(self, logger: logging.Logger, interval: float = 30.0) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_log = self._started
        self.records: Counter[str] = Counter()
        self.pages: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def request(self, stream: str, *, ok: bool) -> None:
        """A response arrived (a page when `ok`)."""
        with self._lock:
            self.requests[stream] += 1
            if ok:
                self.pages[stream] += 1

    def retry(self, stream: str) -> None:
        """A request will be sent again."""
        with self._lock:
            self.retries[stream] += 1

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
            "Progress: %s %s records, %s pages; run total %s records in %.0f s (%s records/s).",
            stream,
            f"{self.records[stream]:,}",
            f"{self.pages[stream]:,}",
            f"{sum(self.records.values()):,}",
            elapsed,
            f"{sum(self.records.values()) / elapsed:,.0f}",
        )

    def summary(self) -> list[str]:
        """Lines for the end of the run: per stream, then totals."""
        seconds = time.monotonic() - self._started
        lines = [
            f"  {name}: {self.records[name]:,} records, {self.pages[name]:,} pages"
            + (f", {self.retries[name]} retries" if self.retries[name] else "")
            for name in sorted(set(self.records) | set(self.pages))
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
