"""target-copernica: writes Singer records into Copernica as profiles and subprofiles.

It authenticates with the tap's `CopernicaAuthenticator` and sends every request through
the tap's HTTP policy (`copernica_api.http`): one JWT per process, the same classification
of answers, the same retries.
"""

from __future__ import annotations

import copy
import gc
import logging
import sys
import threading
from collections.abc import Callable
from functools import cached_property
from typing import IO, Any, ClassVar

from singer_sdk import Sink
from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TargetCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine

from copernica_api.auth import CopernicaAuthenticator
from copernica_api.http import CopernicaSession
from copernica_api.sdk_compat import CompatTarget
from copernica_api.settings import ClientSettings
from target_copernica.bulk_import import wait_for_import
from target_copernica.destination import (
    KeyIndex,
    Structure,
    load_collection,
    load_database,
    matching_ids,
)
from target_copernica.journal import InsertJournal
from target_copernica.reader import SingerLineReader
from target_copernica.rejects import RejectedRecords
from target_copernica.settings import INSERT, SETTINGS, TargetSettings
from target_copernica.sinks import CopernicaSink
from target_copernica.summary import StreamSummary

EXIT_REJECTED = 2


class TargetCopernica(CompatTarget):
    """Singer target for Copernica REST API v4."""

    name = "target-copernica"
    # msgspec parses input lines several times faster than the default JSON reader.
    message_reader_class = SingerLineReader
    config_jsonschema = SETTINGS
    default_sink_class = CopernicaSink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = TargetSettings.from_config(self.config)
        # Sinks drain one after another (parents before subprofiles); requests run in
        # parallel inside a sink, up to `max_parallel_requests`.
        self.max_parallelism = 1
        self._lock = threading.RLock()
        self._databases: dict[str, Structure] = {}
        self._collections: dict[tuple[str, str], Structure] = {}
        self._indexes: dict[tuple[str, tuple[str, ...]], KeyIndex] = {}
        self._loaded: set[int] = set()
        self._summaries: dict[str, StreamSummary] = {}
        self.state_epoch = 0  # STATE messages read so far; see `journal.py`
        self._written_since_state = False
        self._state_confirmed = True  # the latest STATE read has been emitted
        self._batches_in_flight = 0
        self._running: Callable[[], None] | None = None  # ends the import still running
        self._covered: tuple[dict, int] | None = None  # STATE (and epoch) it completes
        # What exists now (the SDK, settings, mapper) lives all run, and batches of fresh
        # records would otherwise trigger collector passes over it again and again, as
        # would the default threshold of 700 allocations (measured: ~10 % of a bulk load).
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)

    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
        TargetCapabilities.HARD_DELETE,
    ]

    # -- shared services ---------------------------------------------------------------
    @cached_property
    def client_settings(self) -> ClientSettings:
        """The connection and request settings, typed."""
        return ClientSettings.from_config(self.config)

    @cached_property
    def authenticator(self) -> CopernicaAuthenticator:
        """One JWT for the whole run, shared by every sink (and a tap in the same process)."""
        return self.client_settings.authenticator(user_agent=f"{self.name}/{self.plugin_version}")

    @cached_property
    def session(self) -> CopernicaSession:
        """Every request of the run, under the shared retry policy."""
        return self.client_settings.session(
            self.authenticator,
            user_agent=f"{self.name}/{self.plugin_version}",
            pool_size=self.settings.max_parallel_requests + 2,
        )

    @cached_property
    def rejects(self) -> RejectedRecords:
        """The rejected-records file."""
        return RejectedRecords(self.settings.rejected_records_path, self.redact)

    @cached_property
    def journal(self) -> InsertJournal | None:
        """The insert journal of an append-only run (None otherwise)."""
        if self.settings.load_method != INSERT or self.settings.dry_run:
            return None
        return InsertJournal(self.settings.insert_journal_path)

    def settle_journal(self) -> None:
        """Decide what an interrupted append-only run had in flight (once, before the
        first write: an import it started must end before keys are counted)."""
        journal = self.journal
        if journal is None or journal.settled:
            return
        timeout = self.settings.import_timeout_seconds
        journal.settle(
            lambda lookup: len(matching_ids(self.session, *lookup)),
            lambda import_id: wait_for_import(self.session, import_id, timeout).processed,
        )

    # -- confirming STATE promptly ----------------------------------------------------
    # The SDK emits STATE only when it drains every sink: at the end, or every 5 minutes (a
    # full batch drains alone). A crash then repeats minutes of records on the rerun, and an
    # append-only journal holds them all. So the latest STATE is confirmed as soon as
    # nothing before it is left unwritten: after a batch when no sink holds records (a
    # one-stream load: after every batch), or when a STATE arrives then; and once a batch
    # was written, the next STATE drains the other streams' partial batches to get there.
    def batch_started(self) -> None:
        with self._lock:
            self._batches_in_flight += 1

    def batch_written(self, sink: Sink) -> None:
        """A sink wrote (or rejected) its batch, or sent its last import."""
        with self._lock:
            self._batches_in_flight -= 1
            self._written_since_state = True
            if self._batches_in_flight or not self._nothing_held(besides=sink):
                return
        self._confirm_state()

    def finish_later(self, finish: Callable[[], None]) -> None:
        """Hold the end of a running import until the next write or STATE needs it."""
        assert self._running is None, "one import runs at a time"
        self._running = finish

    def finish_writes(self) -> None:
        """End the running import (and write what it left), then confirm what it completes."""
        finish, self._running = self._running, None
        if finish is None:
            return
        finish()
        if self._covered is not None:
            state, epoch = self._covered
            self._covered = None
            self._emit(state, epoch)

    def _nothing_held(self, besides: Sink | None = None) -> bool:
        return all(s.current_size == 0 for s in self.sinks() if s is not besides)

    def _confirm_state(self) -> None:
        """Emit the latest STATE: nothing before it is unwritten, but an import may still
        be running, and then it is emitted when that import has ended."""
        latest = self.latest_state
        if not latest or self._state_confirmed:
            return
        if self._running is not None:
            self._covered = (copy.deepcopy(latest), self.state_epoch)
        else:
            self._emit(copy.deepcopy(latest), self.state_epoch)

    # The confirmation above and the insert journal need to know when a STATE was read and
    # when the SDK would emit one (`copernica_api.sdk_compat.CompatTarget`).
    def state_read(self, changed: bool) -> None:
        """A new STATE counts as an epoch; confirm it at once when nothing is held."""
        if not changed:
            return
        self.state_epoch += 1
        self._state_confirmed = False
        if self._nothing_held():
            self._confirm_state()
        elif self._written_since_state:
            self.drain_all()

    def state_due(self, state: dict) -> None:
        """The SDK's drain_all emits the latest STATE: end the running import first."""
        self.finish_writes()
        if not self._state_confirmed:  # else emitted already
            self._emit(state, self.state_epoch)

    def _emit(self, state: dict, epoch: int) -> None:
        self.emit_state(state)
        self._written_since_state = False
        self._state_confirmed = epoch == self.state_epoch
        # After the line is out: until then a rerun would start from the older STATE.
        if self.journal is not None:
            self.journal.state_emitted(epoch)

    def redact(self, text: str) -> str:
        """`text` without the API token or the JWT."""
        return self.authenticator.redact(text)

    def summary_for(self, stream: str) -> StreamSummary:
        with self._lock:
            if stream not in self._summaries:
                self._summaries[stream] = StreamSummary(stream, dry_run=self.settings.dry_run)
            return self._summaries[stream]

    # -- destinations, read once per run -----------------------------------------------
    def database(self, ref: str) -> Structure:
        with self._lock:
            if ref.casefold() not in self._databases:
                structure = load_database(self.session, ref)
                self._databases[ref.casefold()] = structure
            return self._databases[ref.casefold()]

    def collection(self, database: Structure, ref: str) -> Structure:
        with self._lock:
            key = (database.id, ref.casefold())
            if key not in self._collections:
                self._collections[key] = load_collection(self.session, database, ref)
            return self._collections[key]

    def key_index(self, database: Structure, key_fields: tuple[str, ...]) -> KeyIndex:
        with self._lock:
            key = (database.id, tuple(k.casefold() for k in key_fields))
            if key not in self._indexes:
                self._indexes[key] = KeyIndex(database, key_fields)
            return self._indexes[key]

    def ensure_index(self, index: KeyIndex) -> None:
        """Read the index's keys at its first use (after parents have been written)."""
        with self._lock:
            if id(index) in self._loaded:
                return
            index.load(self.session)
            self._loaded.add(id(index))

    def create_fields(self, structure: Structure, wanted: dict[str, str]) -> None:
        """Create missing fields (`create_missing_fields`); in a dry run only pretend."""
        with self._lock:
            for name, kind in wanted.items():
                if structure.field_name(name):
                    continue
                if self.settings.dry_run:
                    self.logger.info("Dry run: would create %s field '%s'.", kind, name)
                else:
                    self.session.request(
                        "POST",
                        f"{structure.kind}/{structure.id}/fields",
                        body={"name": name, "type": kind},
                    )
                    self.logger.info(
                        "Created %s field '%s' in %s '%s'.",
                        kind,
                        name,
                        structure.kind,
                        structure.name,
                    )
                structure.fields[name.casefold()] = kind
                structure.names[name.casefold()] = name

    def create_interest(self, database: Structure, name: str) -> str | None:
        """Create a missing interest (`create_missing_fields`); returns its name."""
        with self._lock:
            known = database.interest_name(name)
            if known is not None:
                return known
            if not name.strip():
                return None
            if not self.settings.dry_run:
                self.session.request(
                    "POST", f"database/{database.id}/interests", body={"name": name}
                )
            self.logger.info("Created interest '%s' in database '%s'.", name, database.name)
            database.interests[name.casefold()] = name
            return name

    def drain_profile_sinks(self) -> None:
        """Write pending profiles before subprofiles, which need their parents."""
        for sink in self.sinks():
            if isinstance(sink, CopernicaSink) and not sink.route.collection:
                self.drain_one(sink)

    # -- the command line ---------------------------------------------------------------
    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        file_input: IO[str] | None = None,
    ) -> None:
        """The SDK's CLI run; input that is not a Singer stream ends it with one clear line."""
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, file_input=file_input
            )
        except (InvalidInputLine, RecordsWithoutSchemaException, ValueError) as exc:
            if (
                isinstance(exc, ValueError)
                and not isinstance(exc, InvalidInputLine)
                and ("message type" not in str(exc))
            ):
                raise
            cls.logger.error(  # noqa: TRY400 (the message is the whole story)
                "The input is not a valid Singer stream: %s. The run stopped there: records "
                "after the last STATE it emitted were not written, so rerunning from that "
                "state, once the producer is fixed, loses nothing.",
                str(exc).splitlines()[0][:300],
            )
            sys.exit(1)

    # -- end of the run ----------------------------------------------------------------
    def process_endofpipe(self) -> None:
        """Drain everything, log one summary line per stream, and set the exit status."""
        super().process_endofpipe()
        self.finish_writes()  # when no STATE came at all
        if self.journal is not None:
            self.journal.finish()
        self.rejects.close()
        for summary in self._summaries.values():
            summary.finish()
            self.logger.info(summary.line())
        self.logger.info(
            "Run: %d API requests, %d retries.", self.session.requests_sent, self.session.retries
        )
        rejected = self.rejects.total
        if rejected:
            self.logger.warning(
                "%d record(s) could not be written; they are in %s with the reason.",
                rejected,
                self.rejects.path,
            )
        if rejected and self.settings.fail_on_rejected:
            self.logger.error("Exiting with status %d: `fail_on_rejected` is on.", EXIT_REJECTED)
            sys.exit(EXIT_REJECTED)


logging.getLogger("target_copernica").setLevel(logging.INFO)

if __name__ == "__main__":
    TargetCopernica.cli()
