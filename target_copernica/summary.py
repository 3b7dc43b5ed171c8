"""Per-stream counters and the summary line logged at the end of a run."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

#: Counters in the order the summary shows them.
COUNTERS = (
    "inserted",
    "updated",
    "deleted",
    "rejected",
    "not_found",
    "multiple_matches",
    "deletes_skipped",
    "imports",
    "import_fallbacks",
    "superseded",
    "truncated",
)


class StreamSummary:
    """What happened to one stream's records (thread-safe)."""

    def __init__(self, stream: str, *, dry_run: bool = False) -> None:
        self.stream = stream
        self.dry_run = dry_run
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.seconds = 0.0
        self.notes: list[str] = []  # lines logged after the summary line (the mirror's)
        self._lock = threading.Lock()

    def add(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[counter] += amount

    def note(self, text: str) -> None:
        """A line for the end-of-run summary, after the stream's counters."""
        with self._lock:
            self.notes.append(text)

    def __getitem__(self, counter: str) -> int:
        with self._lock:
            return self.counts[counter]

    def finish(self) -> None:
        """Stop the clock (the first call counts)."""
        if not self.seconds:
            self.seconds = time.monotonic() - self.started

    def line(self) -> str:
        """One line: `stream 'x': inserted=3 updated=1 ... seconds=0.4`."""
        with self._lock:
            parts = [f"{name}={self.counts[name]}" for name in COUNTERS]
        prefix = "dry run, would have " if self.dry_run else ""
        return (
            f"Stream '{self.stream}': {prefix}" + " ".join(parts) + f" seconds={self.seconds:.1f}"
        )


class StreamSummaries:
    """The summary of every stream of a run, each made at its first use (thread-safe)."""

    def __init__(self, *, dry_run: bool) -> None:
        self.dry_run = dry_run
        self._by_stream: dict[str, StreamSummary] = {}
        self._lock = threading.Lock()

    def for_stream(self, stream: str) -> StreamSummary:
        with self._lock:
            if stream not in self._by_stream:
                self._by_stream[stream] = StreamSummary(stream, dry_run=self.dry_run)
            return self._by_stream[stream]

    def __iter__(self) -> Iterator[StreamSummary]:
        """In the order the streams were first seen."""
        with self._lock:
            return iter(list(self._by_stream.values()))
