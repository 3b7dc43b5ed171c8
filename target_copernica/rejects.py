"""Records that could not be written: a JSONL file (stream, record, reason) and counts.

The file is opened on the first rejection, appended to (a rerun adds its own lines), and
flushed per line, so a crash loses nothing already rejected. Neither the API token nor the
JWT can end up in it: every line is scrubbed before it is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("target_copernica.rejects")
MAX_LOGGED_PER_STREAM = 5


def _default(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


# Characters Python's `splitlines` (and other JSONL readers) take for line breaks; JSON
# leaves them raw with ensure_ascii=False, so they are escaped to keep one record a line.
_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class RejectedRecords:
    """Thread-safe writer of the rejected-records file."""

    def __init__(self, path: str, scrub: Callable[[str], str]) -> None:
        self.path = Path(path)
        self._scrub = scrub
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self.counts: Counter[str] = Counter()

    def add(self, stream: str, record: dict[str, Any], reason: str) -> None:
        """Write one rejected record with its reason."""
        line = json.dumps(
            {"stream": stream, "record": record, "reason": reason},
            default=_default,
            ensure_ascii=False,
        ).translate(_LINE_BREAKS)
        line = self._scrub(line)
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
            self.counts[stream] += 1
            count = self.counts[stream]
        if count <= MAX_LOGGED_PER_STREAM:
            logger.warning("Stream '%s': rejected a record: %s", stream, self._scrub(reason))
        elif count == MAX_LOGGED_PER_STREAM + 1:
            logger.warning(
                "Stream '%s': more records rejected; all of them are in %s.", stream, self.path
            )

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
