"""tap-copernica: the SDK's tap, building every stream and the services they share.

Discovery, the checks before the first data request (`preflight`), and the run. What the
streams share is built here once: the typed settings (`settings.py`), the account lookups
(`account.py`), the progress counters and the authenticator (`client.StreamServices`).
"""

from __future__ import annotations

import json
import sys
from functools import cached_property, partial
from typing import IO, Any, NoReturn, cast

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.singerlib import StateMessage

from copernica_api.auth import (
    AuthenticationRefusedError,
    AuthenticationUnavailableError,
    CopernicaAuthenticator,
)
from copernica_api.bodies import read_bodies_in_large_chunks
from copernica_api.heap import settle_for_a_long_run
from tap_copernica.account import Account
from tap_copernica.budget import STATE_KEY, RequestBudgetSpent
from tap_copernica.client import CopernicaStream, StreamServices
from tap_copernica.output import SingerLineWriter
from tap_copernica.page_helpers import PageHelpers
from tap_copernica.progress import RunProgress
from tap_copernica.settings import PRODUCTS, SETTINGS, TapSettings
from tap_copernica.state import state_problems
from tap_copernica.streams.base import ObjectStream, build_stream_classes, run_ahead
from tap_copernica.streams.mailings import MAILING_SPECS
from tap_copernica.streams.profiles import STREAM_SPECS, ProfileStream
from tap_copernica.streams.reconciliation import (
    RECONCILIATION_SPECS,
    passed_over_quietly,
    run_last,
)
from tap_copernica.streams.structure import STRUCTURE_SPECS
from tap_copernica.streams.typed import TypedProfileStream, TypedTable, unique_names

#: Exit code of a run that stopped before its end (also config and input errors).
EXIT_STOPPED = 1
#: Exit code of a run that finished but in which the API refused some streams for good.
EXIT_SOME_STREAMS_FAILED = 3


#: Errors that end a run with one line of their own (not "Config validation failed").
FATAL = (FatalAPIError, AuthenticationUnavailableError, AuthenticationRefusedError)


class UnusableInputError(Exception):
    """The catalog or the state cannot be used (no config problem): one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


class TapCopernica(Tap):
    """Singer tap for Copernica REST API v4."""

    name = "tap-copernica"
    config_jsonschema = SETTINGS
    # Discovery reads the account's field definitions, so it needs a valid config.
    dynamic_catalog = True
    # msgspec encodes RECORD lines several times faster than the default JSON writer.
    message_writer_class = SingerLineWriter

    def discover_streams(self) -> list[ObjectStream]:
        """Every stream of the spec tables, then a typed table per database and collection.

        The typed tables come from the account's field definitions, so discovery talks to
        the API; it checks the settings it can first (`preflight`).
        """
        # `reconciliation` last of the generic streams: it checks what the others wrote.
        specs = (*STREAM_SPECS, *STRUCTURE_SPECS, *MAILING_SPECS, *RECONCILIATION_SPECS)
        services = self.services
        self._generic = {
            s.name: s for s in (cls(self, services) for cls in build_stream_classes(specs))
        }
        self.preflight()
        typed = [TypedProfileStream(self, services, table) for table in self.typed_tables()]
        return [*self._generic.values(), *typed]

    def emailing_lists_wanted(self) -> list[str]:
        """The products whose emailing list this sync reads: those a selected stream reads
        (`StreamSpec.emailing_lists_read`). None at discovery (no catalog), nor with a
        request budget (nothing is read before it is needed). `Account` keeps them: read
        alongside the structure, they are not asked again."""
        if self.input_catalog is None or self.settings.max_requests is not None:
            return []
        if not hasattr(self, "_generic"):
            _ = self.streams
        wanted = {
            product
            for name in self.catalog_selected()
            if name in self._generic
            for product in self._generic[name].spec.emailing_lists_read(self.settings)
        }
        return [product for product in PRODUCTS if product in wanted]

    def catalog_selected(self) -> set[str]:
        """The streams the input catalog selects (none without one): known before the
        streams are built, so the structure's reads can plan for them."""
        catalog = self.input_catalog
        if catalog is None:
            return set()
        return {e.tap_stream_id for e in catalog.streams if e.metadata.resolve_selection()[()]}

    def typed_tables(self) -> list[TypedTable]:
        """One table per database read, and one per collection of those databases."""
        account = self.account
        account.read_structure_ahead(self.emailing_lists_wanted())
        ids = account.database_ids()
        databases = [db for db in account.databases() if int(db["ID"]) in ids]
        db_names = unique_names([(int(db["ID"]), str(db.get("name", ""))) for db in databases])
        tables = [
            TypedTable(
                name=f"profiles_{db_names[db_id]}",
                kind="database",
                context={"database_id": db_id},
                fields=account.field_types("database", db_id),
            )
            for db_id in db_names
        ]
        for db_id in db_names:
            collections = account.collections_of(db_id)
            names = unique_names([(int(c["ID"]), str(c.get("name", ""))) for c in collections])
            tables += [
                TypedTable(
                    name=f"subprofiles_{db_names[db_id]}_{names[col_id]}",
                    kind="collection",
                    context={"database_id": db_id, "collection_id": col_id},
                    fields=account.field_types("collection", col_id),
                )
                for col_id in names
            ]
        return tables

    # -- shared by every stream -----------------------------------------------------------
    @cached_property
    def settings(self) -> TapSettings:
        """The config, typed; a setting that is wrong raises `ConfigValidationError`."""
        return TapSettings.from_config(self.config)

    @cached_property
    def authenticator(self) -> CopernicaAuthenticator:
        """One JWT for the whole run, shared by all streams."""
        return self.settings.client.authenticator(user_agent=f"{self.name}/{self.plugin_version}")

    @cached_property
    def progress(self) -> RunProgress:
        """Counts and progress lines for this run."""
        return RunProgress(self.logger, self.settings.progress_interval, self.settings.max_requests)

    @cached_property
    def account(self) -> Account:
        """The account's databases, collections, fields and emailings, read once."""
        return Account(self.settings, self._generic_stream)

    @cached_property
    def services(self) -> StreamServices:
        """What every stream gets: settings, account, progress, the authenticator."""
        read_bodies_in_large_chunks()  # once, before any stream reads a page
        return StreamServices(
            settings=self.settings,
            account=self.account,
            progress=self.progress,
            authenticator=self.authenticator,
            page_helpers=PageHelpers.for_run(self.settings, self.logger),
        )

    def _generic_stream(self, name: str) -> CopernicaStream:
        """A generic stream, used as the shared reader (also while discovery runs)."""
        if not hasattr(self, "_generic"):
            _ = self.streams
        return self._generic[name]

    # -- run ------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Check what can be checked before the first data request; raise a clear error."""
        _ = self.settings  # the settings that need no request
        self.authenticator.current_jwt()  # a refused token fails here, with its own message
        if not self.account.databases_read():
            self.read_profiles_ahead()
            self.account.read_databases_and_guess_ahead()
        self.account.selected_database_ids()  # unknown database names fail here

    def read_profiles_ahead(self) -> None:
        """The first `profiles` page of a database `database_ids` names, sent beside the
        account's structure and held for the stream (`ReadAhead.follow_up`): one round trip
        sooner than after the structure.

        At most that one request more than the run would otherwise send, and only where it
        is likely used:

        - every database is named by ID: a misspelt name stops the run before any data
          request;
        - the catalog selects `profiles`, and no STATE entry has a problem the run refuses,
          nor is a run in parts recorded (it may have finished that database);
        - a slot is free beside the structure's first requests (the database list, and the
          fields and collections of each database named);
        - one page, of the lowest ID (read first where the API lists databases by ID): a
          resource the API refuses is asked once.

        It goes unused, as the structure's own guesses do
        (`Account.read_databases_and_guess_ahead`), when an ID does not exist, when the
        database has a field called `modified` (`ProfileStream.guessed_ahead`), or when the
        catalog names a stream the account no longer has.
        """
        profiles, account = self._generic.get("profiles"), self.account
        named = account.databases_named_by_id()
        if not named or len(named) < len(self.settings.database_ids):  # a name among them
            return
        if not isinstance(profiles, ProfileStream) or "profiles" not in self.catalog_selected():
            return
        if self.settings.max_parallel_requests <= account.requests_guessed_ahead():
            return
        bookmarks = self.state_dict.get("bookmarks")
        streams = list(bookmarks) if isinstance(bookmarks, dict) else []
        if STATE_KEY in self.state_dict or any(self.state_problems_of(s) for s in streams):
            return
        first = min(named)
        self.services.read_ahead.follow_up(profiles.planned(partial(profiles.guessed_ahead, first)))

    def state_problems_of(self, stream: str) -> list[str]:
        """What is wrong with the STATE entry of profile stream `stream` (`state_problems`
        for each of its partitions)."""
        bookmarks = self.state_dict.get("bookmarks")
        entry = bookmarks.get(stream) if isinstance(bookmarks, dict) else None
        if not isinstance(entry, dict):
            return []
        partitions = entry.get("partitions", [])
        if not isinstance(partitions, list) or not all(isinstance(p, dict) for p in partitions):
            return [f"state of stream '{stream}': partitions must be a list of objects"]
        return [
            problem
            for partition in partitions
            for problem in state_problems(stream, partition, self.settings.tz)
        ]

    @property
    def state_dict(self) -> dict[str, Any]:
        """The tap's STATE as a plain dict (the SDK types it with `bookmarks` only)."""
        return cast("dict[str, Any]", self.state)

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK's bookmarks, plus the entry of a run split by `max_requests` (`budget.py`),
        which the SDK would drop."""
        super().load_state(state)
        if isinstance(state.get(STATE_KEY), dict):
            self.state_dict[STATE_KEY] = state[STATE_KEY]

    def run_discovery(self) -> str:
        """The SDK's discovery; an error that stops it is one clear line and exit code 1."""
        try:
            return super().run_discovery()
        except ConfigValidationError as exc:
            for error in exc.errors or [str(exc)]:
                self.logger.error("%s", error)  # noqa: TRY400 (the message is the whole story)
            sys.exit(1)
        except (FatalAPIError, AuthenticationUnavailableError, RequestBudgetSpent) as exc:
            self.logger.error("Discovery failed: %s", exc)  # noqa: TRY400
            sys.exit(1)

    def check_catalog_and_state(self) -> None:
        """Refuse a catalog that selects unknown streams, or a state this tap cannot read."""
        problems: list[str] = []
        if self.input_catalog is not None:
            unknown = sorted(
                entry.tap_stream_id
                for entry in self.input_catalog.streams
                if entry.tap_stream_id not in self.streams and entry.metadata.root.selected is True
            )
            if unknown:
                problems.append(
                    f"The catalog selects streams this account does not have: "
                    f"{', '.join(unknown)}. A database or collection may have been renamed or "
                    f"removed: run discovery again (Meltano: --refresh-catalog) and reselect."
                )
        for name, stream in self.streams.items():
            if isinstance(stream, ProfileStream):
                problems += self.state_problems_of(name)
        if problems:
            problems[-1] += (
                " Fix or remove that entry (Meltano: `meltano state clear <state id>` reads "
                "everything again)."
                if "state of stream" in problems[-1]
                else ""
            )
            raise UnusableInputError(problems)

    def run(self) -> None:
        """Preflight, then the SDK's sync; a fatal error ends the run with one clear line.

        Exit codes: 0 every selected stream finished, or `max_requests` were spent (a
        warning says what is left; the next run continues); 1 the run stopped (a fatal
        error: config, token, retries used up, ...); 3 the run finished but the API refused
        some streams for good (listed at the end; see `fail_fast`).
        """
        parts = self.services.parts
        syncing = False
        try:
            # Streams first: discovery runs `preflight` itself, and its lookups (the database
            # list) are then cached for the check below instead of requested twice.
            _ = self.streams
            self.preflight()
            self.check_catalog_and_state()
            parts.begin(self.state_dict, budgeted=self.settings.max_requests is not None)
            if parts.resumed:
                self.logger.info(
                    "Continuing a run that spent its max_requests: what it finished is skipped."
                )
            syncing = True
            # The first requests of the streams to come are in flight while earlier ones
            # are read (`readahead.py`), instead of each stream starting with a round trip.
            streams = self.streams.values()
            with (
                self.services.read_ahead.plan(run_ahead(streams)),
                passed_over_quietly(self.logger, streams),
            ):
                self.sync_all()
            run_last(self.streams.values())  # `reconciliation`: after every other stream
        except RequestBudgetSpent as exc:
            if not syncing:
                self.budget_too_small(exc)
            # Spent outside a stream's records: reported below like any other stop.
            self.progress.stopped(exc.stream, exc.context)
        except UnusableInputError as exc:
            for problem in exc.problems:
                self.logger.error("%s", problem)  # noqa: TRY400
            sys.exit(EXIT_STOPPED)
        except FATAL as exc:
            self.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
            # Send the state as it stands: a rerun resumes after the last emitted record.
            self.write_message(StateMessage(value=self.state))
            self._flush()
            self.progress.log_summary()
            sys.exit(EXIT_STOPPED)
        finally:
            self.services.read_ahead.close()
            if self.services.page_helpers is not None:
                self.services.page_helpers.close()
            self._flush()
        failures = self.services.failures
        spent = self.progress.spent
        # A run that reached the end closes a run in parts (its STATE entry goes).
        ended = not spent and parts.end()
        if failures or spent or ended:
            # Every bookmark of the streams that finished, whatever the last stream wrote.
            self.write_message(StateMessage(value=self.state))
            self._flush()
        self.progress.log_summary()
        if spent:
            self.logger.warning("%s", self.progress.budget_line())
        for failure in failures:
            self.logger.error("Stream '%s' failed: %s", failure.stream, failure.error)
        if failures:
            self.logger.error(
                "%d selected stream(s) failed (listed above); the others finished. Exit code %d.",
                len(failures),
                EXIT_SOME_STREAMS_FAILED,
            )
            sys.exit(EXIT_SOME_STREAMS_FAILED)

    @classmethod
    def budget_too_small(cls, exc: RequestBudgetSpent) -> NoReturn:
        """`max_requests` was spent on the account's structure, before any stream: no run
        could ever get further, so this is a setting to change (exit 1), not a stop."""
        cls.logger.error(
            "%s while reading the account's structure, before any stream: raise "
            "`max_requests` (each run reads the structure first).",
            exc,
        )
        sys.exit(EXIT_STOPPED)

    def _flush(self) -> None:
        writer = self.message_writer
        if isinstance(writer, SingerLineWriter):
            writer.flush()

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: IO[str] | None = None,
        catalog: IO[str] | None = None,
    ) -> None:
        """The SDK's CLI sync (`Tap.invoke`), running `run` instead of a bare `sync_all`.

        Config errors (also those found by `preflight`) still reach the SDK's CLI, which
        prints them as such and exits 1; other errors before the run are one line each.
        """
        super(Tap, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        state_value = cls._read_json_file(
            state,
            "state",
            "Fix it or leave out --state to read everything again (Meltano: "
            "`meltano state clear <state id>`).",
        )
        catalog_value = cls._read_json_file(
            catalog, "catalog", "Fix it or write a new one with --discover."
        )
        try:
            tap = cls(
                config=config.config if config else None,
                state=state_value,
                catalog=catalog_value,
                parse_env_config=bool(config and config.parse_env),
                validate_config=True,
            )
        except FATAL as exc:
            # Discovery (part of building the tap) could not read the account.
            cls.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
            sys.exit(EXIT_STOPPED)
        except RequestBudgetSpent as exc:
            cls.budget_too_small(exc)
        settle_for_a_long_run()  # what is built so far lives all run
        tap.run()

    @classmethod
    def _read_json_file(cls, file: IO[str] | None, what: str, fix: str) -> Any:
        """The JSON object of a --state or --catalog file; one line and exit 1 if it is not
        one (before any request)."""
        if file is None:
            return None
        name = getattr(file, "name", what)
        try:
            value = json.loads(file.read())
        except json.JSONDecodeError as exc:
            problem = f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        except UnicodeDecodeError:
            problem = "is not UTF-8 text"
        else:
            if isinstance(value, dict):
                return value
            problem = "is not a JSON object ({...})"
        cls.logger.error("The %s file %s %s. %s", what, name, problem, fix)
        sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    TapCopernica.cli()
