"""The emulator's wall clock: real time plus an adjustable offset, shown in the account zone."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def format_local(epoch: float, tz: ZoneInfo) -> str:
    """Render Unix seconds as the API's naive local ``YYYY-MM-DD hh:mm:ss``."""
    return datetime.fromtimestamp(int(epoch), tz).strftime(TIMESTAMP_FORMAT)


class Clock:
    """Follows real time by default; tests may shift it forwards or backwards."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._offset = 0.0
        self._lock = threading.Lock()

    def epoch(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def now(self) -> str:
        return format_local(self.epoch(), self.tz)

    def set_offset(self, seconds: float) -> None:
        with self._lock:
            self._offset = float(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += float(seconds)
