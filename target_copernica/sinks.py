"""Sinks of target-copernica (the write paths arrive with the target issue)."""

from __future__ import annotations

from typing import Any

from singer_sdk.sinks import BatchSink


class ProfileSink(BatchSink):
    """Placeholder sink: refuses to run until the write paths exist, so nothing is lost."""

    def process_batch(self, context: dict[str, Any]) -> None:
        """Refuse clearly instead of dropping records."""
        msg = (
            "target-copernica cannot write records yet (the write paths are not built); "
            "no record was written. Use a released version that supports loading."
        )
        raise NotImplementedError(msg)
