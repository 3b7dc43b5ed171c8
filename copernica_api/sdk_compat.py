"""Every use of the Singer SDK's private members, in one module.

The SDK leaves a few things without a public hook that the plugins need: writing RECORD
lines without the SDK's per-record overhead, bookmarks the streams keep themselves, STATE
sent at a moment the stream chooses, "a STATE was read" and "a STATE was emitted" in the
target, and the sink's per-record validation and metadata handling. Each is reached here
only, behind a public name the plugins use instead, with a comment saying why.

These members are private, so any SDK release may change them: the singer-sdk range in
pyproject.toml is pinned, and `tests/test_sdk_compat.py` fails when one of them is gone or
has changed its signature. The behaviour each one carries is tested where it is used (named
in the comments below).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import Sink, Target
from singer_sdk.helpers._typing import get_datelike_property_type
from singer_sdk.helpers._util import utc_now
from singer_sdk.sinks import BatchSink
from singer_sdk.streams import RESTStream

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.singerlib.encoding.base import GenericSingerWriter


def extraction_time() -> dt.datetime:
    """Now, as the SDK stamps `time_extracted` (its helper lives in a private module)."""
    return utc_now()


def is_date_like(property_schema: dict[str, Any]) -> bool:
    """Whether the SDK's record parsing treats this JSON Schema property as a date or time
    (its test lives in a private module; `target_copernica.sinks` skips the walk for
    records without such properties, checked by tests/test_target_units.py)."""
    return get_datelike_property_type(property_schema) is not None


class CompatRESTStream(RESTStream[Any]):
    """A `RESTStream` whose private hooks are reached through public names."""

    #: Whether the SDK moves the bookmark from each record's replication key. False for
    #: streams whose bookmark object writes the STATE entry itself (ID scans, windows):
    #: the SDK's copy of a record's value would lose their in-page position.
    sdk_moves_bookmarks: bool = True

    @property
    def message_writer(self) -> GenericSingerWriter[Any, Any]:
        """The tap's Singer writer (the SDK keeps the owning tap in `_tap` only)."""
        return self._tap.message_writer

    @property
    def stream_version(self) -> int | None:
        """The version sent with ACTIVATE_VERSION and on every RECORD of a full table."""
        return self._stream_version

    def send_state_now(self) -> None:
        """Send this stream's STATE now, after the records it covers (windowed streams
        call it after each page; the SDK would wait for the end of the partition)."""
        self.state_manager.is_flushed = False
        self._write_state_message()

    def state_changed(self) -> None:
        """Tell the SDK the STATE changed, so that it sends it at its next occasion."""
        self.state_manager.is_flushed = False

    def write_record_fast(self, record: dict[str, Any]) -> bool:
        """Write one RECORD line and return True, or return False to let the SDK write
        it. The profile streams override this (tests/test_units.py compares the lines)."""
        return False

    def retrying_request(self) -> Callable[[requests.PreparedRequest, Context | None], Any]:
        """The SDK's own request call wrapped in its retry decorator, as its paging loop
        does, for readers that send requests outside that loop (several at once)."""
        return self.request_decorator(self._request)

    # -- the private overrides ------------------------------------------------------------
    def _write_record_message(self, record: dict[str, Any]) -> None:
        if not self.write_record_fast(record):
            super()._write_record_message(record)

    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        # Covered by the incremental-state tests (tests/test_incremental.py, test_mailings.py).
        if self.sdk_moves_bookmarks:
            super()._increment_stream_state(latest_record, context=context)


class CompatTarget(Target):
    """A `Target` that says when a STATE was read and lets a subclass choose when it is
    emitted (covered by tests/test_target_journal.py)."""

    @property
    def latest_state(self) -> dict | None:
        """The latest STATE read (not necessarily emitted yet)."""
        return self._latest_state

    def sinks(self) -> list[Sink]:
        """Every sink that may still hold records: those whose schema changed first."""
        return [*self._sinks_to_clear, *self._sinks_active.values()]

    def emit_state(self, state: dict) -> None:
        """Write a STATE message to stdout (the SDK's own writer)."""
        super()._write_state_message(state)

    def state_read(self, changed: bool) -> None:
        """Called after each STATE message is read; `changed` when it differs from the
        one before. Nothing by default."""

    def state_due(self, state: dict) -> None:
        """Called when the SDK would emit `state` (after draining every sink). Emits it
        by default."""
        self.emit_state(state)

    # -- the private overrides ------------------------------------------------------------
    def _process_state_message(self, message_dict: dict) -> None:
        before = self._latest_state
        super()._process_state_message(message_dict)
        self.state_read(self._latest_state is not before)

    def _write_state_message(self, state: dict) -> None:
        self.state_due(state)


class CompatBatchSink(BatchSink):
    """A `BatchSink` whose per-record validation and metadata handling are public hooks."""

    #: The SDK's metadata properties (what its `_remove_sdc_metadata_from_record` pops).
    SDC_METADATA = frozenset(
        {
            "_sdc_extracted_at",
            "_sdc_received_at",
            "_sdc_batched_at",
            "_sdc_deleted_at",
            "_sdc_sequence",
            "_sdc_table_version",
            "_sdc_sync_started_at",
        }
    )

    def keep_metadata(self) -> Iterable[str]:
        """Metadata properties to keep on the record when the SDK strips the others."""
        return ()

    def validate_record(self, record: dict) -> dict:
        """Validate and parse one record (the SDK's behaviour by default)."""
        return super()._validate_and_parse(record)

    def schema_validator(self) -> Any:
        """The validator the SDK built from `get_validator` (None when switched off)."""
        return self._validator

    def parse_timestamps(self, record: dict) -> None:
        """The SDK's parsing of the date-like properties of one record, in place."""
        self._parse_timestamps_in_record(
            record=record, schema=self.schema, treatment=self.datetime_error_treatment
        )

    # -- the private overrides ------------------------------------------------------------
    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        if self.SDC_METADATA.isdisjoint(record):  # most records: one set operation, no pops
            return
        kept = {n: record[n] for n in self.keep_metadata() if record.get(n) is not None}
        super()._remove_sdc_metadata_from_record(record)
        record.update(kept)

    def _validate_and_parse(self, record: dict) -> dict:
        return self.validate_record(record)
