"""target-copernica: writes Singer records into Copernica as profiles and subprofiles.

It authenticates with the shared client's `CopernicaAuthenticator` and sends every request
through its HTTP policy (`copernica_api.http`), as the tap does: one JWT per process, the
same classification of answers, the same retries.

The target builds what its sinks share and hands it to each sink once (`SinkServices`):
the destinations (`registry.py`), when STATE is emitted and the insert journal
(`confirm.py`), the rejected-records file and the per-stream summaries.
"""

from __future__ import annotations

import logging
import sys
from functools import cached_property
from pathlib import Path
from typing import IO, Any, ClassVar

from singer_sdk import Sink
from singer_sdk.exceptions import ConfigValidationError, RecordsWithoutSchemaException
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TargetCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine

from copernica_api.auth import AuthenticationUnavailableError, CopernicaAuthenticator
from copernica_api.heap import settle_for_a_long_run
from copernica_api.http import CopernicaSession
from copernica_api.sdk_compat import CompatTarget
from copernica_api.settings import ClientSettings
from target_copernica.bulk_import import ImportStillRunning, ImportUndecided, wait_for_import
from target_copernica.confirm import StateConfirmer
from target_copernica.mirror import EXIT_MIRROR_REFUSED, KeyFiles, MirrorBook
from target_copernica.reader import SingerLineReader
from target_copernica.registry import DestinationRegistry
from target_copernica.rejects import RejectedRecords
from target_copernica.settings import INSERT, SETTINGS, TargetSettings
from target_copernica.sinks import CopernicaSink, SinkServices
from target_copernica.summary import StreamSummaries

EXIT_REJECTED = 2


class TargetCopernica(CompatTarget):
    """Singer target for Copernica REST API v4."""

    name = "target-copernica"
    # The distribution that ships both plugins: its version is the target's (`--version`).
    package_name = "tap-copernica"
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
        self.summaries = StreamSummaries(dry_run=self.settings.dry_run)

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
    def registry(self) -> DestinationRegistry:
        """The destinations of the run, read once."""
        return DestinationRegistry(self.session, dry_run=self.settings.dry_run, logger=self.logger)

    @cached_property
    def confirmer(self) -> StateConfirmer:
        """When STATE is emitted, and the insert journal of an append-only run."""
        settings = self.settings
        appends = settings.load_method == INSERT and not settings.dry_run
        return StateConfirmer(
            latest_state=lambda: self.latest_state,
            nothing_held=self._nothing_held,
            drain_all=self.drain_all,
            emit_state=self._emit_confirmed_state,
            journal_path=settings.insert_journal_path if appends else None,
            # Both are asked only when a journal of an interrupted run is settled; the
            # session and the registry are made at their first use, not here.
            count_matches=lambda lookup: self.registry.count_matches(lookup),  # noqa: PLW0108
            import_processed=self._interrupted_import_processed,
        )

    def _interrupted_import_processed(self, import_id: str) -> int:
        """The rows an interrupted run's import added, once it has ended; a rerun of an
        append-only load must not guess while it still runs (`ImportStillRunning`)."""
        settings = self.settings
        result = wait_for_import(self.session, import_id, settings.import_timeout_seconds)
        if result.timed_out:
            subject = f"The interrupted run's import {import_id}"
            raise ImportStillRunning(
                subject, settings.import_timeout_seconds, settings.insert_journal_path
            )
        return result.processed

    @cached_property
    def mirror(self) -> MirrorBook | None:
        """The full tables' keys and the mirrors refused (None when `mirror_mode` is off)."""
        settings = self.settings.mirror
        if settings is None:
            return None
        # The full tables' key files live beside the insert journal, a run's other local
        # file that must survive until a rerun.
        directory = Path(self.settings.insert_journal_path).parent / "mirror_keys"
        return MirrorBook(settings, KeyFiles(directory, read_only=self.settings.dry_run))

    def _emit_confirmed_state(self, state: dict) -> None:
        """Emit a STATE, once the full tables' keys it covers are on disk: a rerun starts
        after it and the records before it come again only from those files."""
        if self.mirror is not None:
            self.mirror.save()
        self.emit_state(state)

    @cached_property
    def sink_services(self) -> SinkServices:
        """What every sink of the run shares."""
        return SinkServices(
            settings=self.settings,
            session=self.session,
            registry=self.registry,
            confirmer=self.confirmer,
            rejects=self.rejects,
            summaries=self.summaries,
            drain_profile_sinks=self.drain_profile_sinks,
            mirror=self.mirror,
        )

    def _nothing_held(self, besides: Sink | None = None) -> bool:
        return all(s.current_size == 0 for s in self.sinks() if s is not besides)

    # What a STATE read and a STATE due mean here (`copernica_api.sdk_compat.CompatTarget`
    # calls these) is decided by the confirmer.
    def state_read(self, changed: bool) -> None:
        self.confirmer.state_read(changed)

    def state_due(self, state: dict) -> None:
        self.confirmer.state_due(state)

    def redact(self, text: str) -> str:
        """`text` without the API token or the JWT."""
        return self.authenticator.redact(text)

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
        # The module loggers (`target_copernica.*`) report at INFO whatever the root's level.
        logging.getLogger("target_copernica").setLevel(logging.INFO)
        settle_for_a_long_run()  # the SDK and every module it loaded live all run
        try:
            super().invoke(
                about=about, about_format=about_format, config=config, file_input=file_input
            )
        except ConfigValidationError as exc:
            # A setting the account contradicts (an unknown database, a refused token, ...):
            # one line each, no traceback.
            for error in exc.errors or [str(exc)]:
                cls.logger.error(error)  # noqa: TRY400 (the message is the whole story)
            sys.exit(1)
        except (AuthenticationUnavailableError, ImportUndecided) as exc:
            cls.logger.error(str(exc))  # noqa: TRY400
            sys.exit(1)
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
        self.confirmer.finish_writes()  # when no STATE came at all
        journal = self.confirmer.journal
        if journal is not None:
            journal.finish()
        self.rejects.close()
        if self.mirror is not None:
            self.mirror.finish()
        for summary in self.summaries:
            summary.finish()
            self.logger.info(summary.line())
            for note in summary.notes:
                self.logger.info(note)
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
        refusals = self.mirror.refusals if self.mirror is not None else []
        if refusals:
            self.logger.error(
                "Exiting with status %d: %d mirror(s) refused or failed (the reason is "
                "above); the records themselves were written.",
                EXIT_MIRROR_REFUSED,
                len(refusals),
            )
            sys.exit(EXIT_MIRROR_REFUSED)
        if rejected and self.settings.fail_on_rejected:
            self.logger.error("Exiting with status %d: `fail_on_rejected` is on.", EXIT_REJECTED)
            sys.exit(EXIT_REJECTED)


if __name__ == "__main__":
    TargetCopernica.cli()
