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

import contextlib
import datetime as dt
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk import Sink, Target
from singer_sdk.helpers._typing import get_datelike_property_type
from singer_sdk.helpers._util import utc_now
from singer_sdk.sinks import BatchSink
from singer_sdk.streams import RESTStream

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.metrics import Counter
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
    #: Whether a full table's ACTIVATE_VERSION goes out after its last record (every
    #: partition, and for a child stream every parent record, written) instead of before its
    #: first, as the SDK does. A target then marks rows deleted only after the complete
    #: list: a run cut off mid-stream marks nothing (tests/test_deletes_postgres.py).
    activate_version_after_records: bool = False
    #: The error that ended this stream's records in this run, when `isolate_failure`
    #: accepted it: the stream then emits nothing more (later partitions are skipped, no
    #: ACTIVATE_VERSION) while the other streams go on.
    failure: Exception | None = None
    #: Whether this run skipped the whole stream (`skip_context(None)`).
    skipped: bool = False
    _pending_version: int | None = None
    _record_counter: Counter | None = None
    _written = 0  # records written outside the SDK's loop

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
        call it after each page; the SDK would wait for the end of the partition).

        With `batch_config` the records wait in a file until its BATCH message, so the STATE
        is left to the SDK, which sends it after each BATCH (tests/test_batch_route.py)."""
        self.state_manager.is_flushed = False
        if not self.config.get("batch_config"):
            self._write_state_message()

    def context_state_if_any(self, context: Context | None) -> dict[str, Any] | None:
        """The STATE entry of `context` (None: the stream's) when there is one, else None;
        unlike the SDK's `get_context_state`, it creates none (planning a request must not
        add an entry the run's STATE would then carry: tests/test_partitions_parallel.py)."""
        entry = self.tap_state.get("bookmarks", {}).get(self.name)
        if not isinstance(entry, dict):
            return None
        partition = self.state_manager.get_state_partition_context(context)
        if not partition:
            return entry
        for candidate in entry.get("partitions", ()):
            if isinstance(candidate, dict) and candidate.get("context") == partition:
                return candidate
        return None

    def state_changed(self) -> None:
        """Tell the SDK the STATE changed, so that it sends it at its next occasion."""
        self.state_manager.is_flushed = False

    def get_record_counter(self, **kwargs: Any) -> Counter:
        # Kept, so that records written outside the SDK's loop count in its metric.
        self._record_counter = counter = super().get_record_counter(**kwargs)
        return counter

    def records_written(self, count: int) -> None:
        """`count` records were written outside the SDK's record loop (a page of RECORD
        lines at once): counted in its `record_count` metric, with the STATE sent as often
        as its loop sends it (every `STATE_MSG_FREQUENCY` records)."""
        if self._record_counter is not None:
            self._record_counter.increment(count)
        self.state_changed()
        before, self._written = self._written, self._written + count
        if self._written // self.STATE_MSG_FREQUENCY > before // self.STATE_MSG_FREQUENCY:
            self._write_state_message()

    def partition_keys(self, context: Context | None) -> dict[str, Any]:
        """The keys the SDK adds to each record of `context` that lacks them."""
        return dict(self.state_manager.get_state_partition_context(context) or {})

    @property
    def records_go_to_batches(self) -> bool:
        """Whether records are written to batch files (`batch_config`), not as RECORDs."""
        return bool(self.config.get("batch_config"))

    def write_record_fast(self, record: dict[str, Any]) -> bool:
        """Write one RECORD line and return True, or return False to let the SDK write
        it. The profile streams override this (tests/test_units.py compares the lines)."""
        return False

    def isolate_failure(self, exc: Exception) -> bool:
        """Called when reading this stream's records raised `exc`: return True to end this
        stream here and let the run go on with the others, False to let `exc` end the run
        (the default, as in the SDK)."""
        return False

    # -- a run in parts (tests/test_request_budget.py) --------------------------------------
    def before_send(self, prepared: requests.PreparedRequest, context: Context | None) -> None:
        """Called just before each try of a request goes on the wire (not for a response
        read ahead and taken); raise to keep it from being sent. Nothing by default."""

    def skip_context(self, context: Context | None) -> bool:
        """Whether to read nothing for `context` (None: the whole stream) in this run, e.g.
        because an earlier run read it to its end. False by default."""
        return False

    def context_read(self, context: Context | None) -> None:
        """Called once the records of `context` (None: the whole stream) were all read
        (this stream's own; a child stream may have stopped). Nothing by default."""

    def table_version(self, version: int) -> int:
        """The version of this run's full table (`version`: the SDK's, the time the stream
        started), sent with ACTIVATE_VERSION and every RECORD. A run in parts keeps the one
        of its first part, so that one ACTIVATE_VERSION covers the records of all parts."""
        return version

    @property
    def partitions_one_by_one(self) -> bool:
        """Whether the stream's partitions are read one `_sync_records` call each, so that
        `skip_context` and `context_read` see each partition (False: the SDK's loop)."""
        return False

    def send_pending_activate_version(self) -> None:
        """Send the ACTIVATE_VERSION held back by `activate_version_after_records` (once;
        never for a stream whose records failed)."""
        version, self._pending_version = self._pending_version, None
        if version is not None and self.failure is None:
            super()._write_activate_version_message(version)

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """The SDK's end of a stream, except that a stream whose records failed keeps its
        bookmark where it was: promoting its progress markers would skip what it missed."""
        if (self.failure is None and not self.skipped) or state:
            super().finalize_state_progress_markers(state)
            return
        for child in self.child_streams:
            if child.selected:
                child.finalize_state_progress_markers()

    def retrying_request(
        self, *, served: bool = True
    ) -> Callable[[requests.PreparedRequest, Context | None], Any]:
        """The SDK's own request call wrapped in its retry decorator, as its paging loop
        does, for readers that send requests outside that loop (several at once). With
        `served` False the request is always sent (`serve_prefetched` is not asked): the
        call that reads a response ahead."""
        return self.request_decorator(self._request if served else self._send_request)

    def serve_prefetched(self, prepared: requests.PreparedRequest) -> requests.Response | None:
        """A response already read for exactly this request (or raise the error that ended
        it), or None to send it. Asked before every request, also in the SDK's loop."""
        return None

    def request_slot(self) -> AbstractContextManager[object]:
        """Held while one request is on the wire (bounds the requests in flight)."""
        return contextlib.nullcontext()

    def records_ahead(self, context: Context | None) -> AbstractContextManager[object]:
        """Entered around this stream's record loop for `context` (None: every partition),
        e.g. to read the partitions' first requests ahead. Nothing by default."""
        return contextlib.nullcontext()

    def check_body(self, response: requests.Response) -> None:
        """Work on a response's body (decoding, checking it), done once its request has
        given back its slot: the next request goes out while this one's page is decoded.
        `validate_response`, called with the slot held, sorts the status. Nothing here by
        default."""

    def _send_request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        with self.request_slot():
            self.before_send(prepared_request, context)
            response = super()._request(prepared_request, context)
        self.check_body(response)
        return response

    # -- the private overrides ------------------------------------------------------------
    def _write_record_message(self, record: dict[str, Any]) -> None:
        if not self.write_record_fast(record):
            super()._write_record_message(record)

    def _write_activate_version_message(self, full_table_version: int) -> None:
        # The SDK sends it from `sync`, before the first record; held back here until
        # `_sync_records` has written the whole stream (tests/test_deletes_postgres.py). Its
        # version, also on every RECORD, may be one kept from an earlier run (`table_version`).
        full_table_version = self._stream_version = self.table_version(full_table_version)
        if self.activate_version_after_records:
            self._pending_version = full_table_version
        else:
            super()._write_activate_version_message(full_table_version)

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict, Any, Any]:
        # The SDK's record loop for one context (a child stream's parent record) or for the
        # whole stream (context None: every partition). Errors a stream isolates end only
        # that stream (tests/test_tap_stream_failures.py); the held-back ACTIVATE_VERSION of
        # the stream and of its children goes out once the whole stream is written.
        if self.failure is not None:
            return
        if self.skip_context(context):
            self.skipped = context is None
            return
        try:
            with self.records_ahead(context):
                if context is None and self.partitions_one_by_one:
                    yield from self._sync_partitions(write_messages=write_messages)
                else:
                    yield from super()._sync_records(context, write_messages=write_messages)
        except Exception as exc:
            if not self.isolate_failure(exc):
                raise
            self.failure = exc
            self._pending_version = None
            return
        self.context_read(context)
        if context is None and write_messages:
            for stream in (self, *self.descendent_streams):
                if isinstance(stream, CompatRESTStream):
                    stream.send_pending_activate_version()

    def _sync_partitions(self, *, write_messages: bool) -> Generator[dict, Any, Any]:
        # The SDK's loop over the partitions (its `_sync_records(None)`), one partition per
        # call, skipping those `skip_context` names; the same records and STATE.
        partitions = self.partitions
        if not partitions:
            yield from super()._sync_records(None, write_messages=write_messages)
            return
        for partition in partitions:
            if not self.skip_context(partition):
                yield from super()._sync_records(partition, write_messages=write_messages)
                self.context_read(partition)
        self._finalize_state(self.stream_state)
        if write_messages:
            self._write_state_message()

    def _request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        # The SDK's one call that sends a request (its paging loop and `retrying_request`
        # both come here): a response read ahead is taken instead of sending, and a request
        # sent holds a slot (tests/test_partitions_parallel.py).
        served = self.serve_prefetched(prepared_request)
        if served is not None:
            return served
        return self._send_request(prepared_request, context)

    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        # Covered by the incremental-state tests (tests/test_incremental.py, test_mailings.py).
        if self.sdk_moves_bookmarks:
            super()._increment_stream_state(latest_record, context=context)


class CompatTarget(Target):
    """A `Target` that says when a STATE was read and lets a subclass choose when it is
    emitted (covered by tests/test_target_journal.py), and that tells its sinks the version
    of the RECORD in hand and hands them each ACTIVATE_VERSION (tests/test_target_mirror.py)."""

    _record_version: int | None = None

    @property
    def latest_state(self) -> dict | None:
        """The latest STATE read (not necessarily emitted yet)."""
        return self._latest_state

    @property
    def record_version(self) -> int | None:
        """The `version` of the RECORD message being processed (a full table's records
        carry one; None otherwise). The SDK passes it to a sink only inside the metadata
        columns of `add_record_metadata`."""
        return self._record_version

    def activate_version_read(self, stream: str, version: int) -> None:
        """Called for each ACTIVATE_VERSION message: `activate_version` of the stream's
        sinks (one per stream map alias) unless `process_activate_version_messages` is off.
        The SDK's own handling also warns that `_sdc_*` columns are added to the schema,
        which a target that does not use them would log for nothing."""
        for stream_map in self.mapper.stream_maps.get(stream, ()):
            sink = self.get_sink(stream_map.stream_alias)
            if sink.process_activate_version_messages:
                sink.activate_version(version)

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
    def _process_record_message(self, message_dict: dict) -> None:
        self._record_version = message_dict.get("version")
        try:
            super()._process_record_message(message_dict)
        finally:
            self._record_version = None

    def _process_activate_version_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"stream", "version"})
        self.activate_version_read(message_dict["stream"], message_dict["version"])

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

    def missing_key_properties(self, record: dict, missing: list[str]) -> None:
        """Called when `record` lacks properties the SCHEMA lists in `key_properties`. The
        SDK's behaviour by default: the whole load stops."""
        super()._singer_validate_message(record)

    # -- the private overrides ------------------------------------------------------------
    def _singer_validate_message(self, record: dict) -> None:
        missing = [k for k in self.key_properties if k not in record]
        if missing:
            self.missing_key_properties(record, missing)

    def _remove_sdc_metadata_from_record(self, record: dict) -> None:
        if self.SDC_METADATA.isdisjoint(record):  # most records: one set operation, no pops
            return
        kept = {n: record[n] for n in self.keep_metadata() if record.get(n) is not None}
        super()._remove_sdc_metadata_from_record(record)
        record.update(kept)

    def _validate_and_parse(self, record: dict) -> dict:
        return self.validate_record(record)
