"""tap-copernica: settings, preflight checks, and the account-level lookups streams share."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from functools import cached_property, partial
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.singerlib import StateMessage

from copernica_api.auth import AuthenticationUnavailableError, CopernicaAuthenticator
from copernica_api.payloads import to_int
from copernica_api.settings import CONNECTION_SETTINGS, REQUEST_SETTINGS, ClientSettings
from copernica_api.timeutil import parse_instant, zone
from tap_copernica.client import CopernicaStream
from tap_copernica.mailings import MAILING_SPECS
from tap_copernica.output import SingerLineWriter
from tap_copernica.prefetch import in_order
from tap_copernica.progress import RunProgress
from tap_copernica.state import state_problems
from tap_copernica.streams import (
    STREAM_SPECS,
    ObjectStream,
    ProfileStream,
    build_stream_classes,
)
from tap_copernica.structure import STRUCTURE_SPECS, webhook_ids
from tap_copernica.typed import TypedProfileStream, TypedTable, unique_names

MAX_PAGE_SIZE = 1000

SETTINGS = th.PropertiesList(
    *CONNECTION_SETTINGS,
    *REQUEST_SETTINGS,
    th.Property(
        "start_date",
        th.DateTimeType,
        description="ISO 8601 date or date-time. On a first run, profiles and subprofiles "
        "modified before it, and emailings, destinations and events before it, are skipped; "
        "bookmarks take over afterwards.",
    ),
    th.Property(
        "database_ids",
        th.ArrayType(th.StringType),
        description="Databases to read, by ID or name (case-insensitive). Default: all.",
    ),
    th.Property(
        "emailing_ids",
        th.ArrayType(th.StringType),
        description="Only these emailings, as 'ms:<ID>' (Marketing Suite) or "
        "'publisher:<ID>': per-emailing streams read just them, and the event streams read "
        "their per-emailing endpoints instead of the account-wide ones. Default: all.",
    ),
    th.Property(
        "destination_ids",
        th.ArrayType(th.StringType),
        description="Only these destinations (messages), as 'ms:<ID>' or 'publisher:<ID>': "
        "the event streams then read their per-destination endpoints. Default: all.",
    ),
    th.Property(
        "event_window_days",
        th.IntegerType(minimum=1),
        default=7,
        description="Events are read in windows of this many days; the bookmark moves after "
        "each window, so a large history is read in bounded requests and a run that stops "
        "resumes where it was.",
    ),
    th.Property(
        "webhook_ids",
        th.ArrayType(th.StringType),
        description="Webhooks to read, by ID: the API has no list of webhooks, only a "
        "lookup by ID. Default: none (the webhooks stream is then empty).",
    ),
    th.Property(
        "consumption_start_date",
        th.DateTimeType,
        description="First month of the consumption stream on a first run (ISO 8601 date). "
        "Default: the same month a year ago. Bookmarks take over afterwards.",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        description="Rows per request, 1 to 1000 (the API's maximum).",
    ),
    th.Property(
        "lookback_seconds",
        th.IntegerType(minimum=0),
        default=60,
        description="Changes made this many seconds before a run reads them are read again by "
        "the next run, so a profile changed while the run read it, or a clock difference "
        "between Copernica's servers, can never hide a change.",
    ),
    th.Property(
        "max_parallel_requests",
        th.IntegerType(minimum=1, maximum=10),
        default=4,
        description="Requests in flight at once when a full load reads a database by ID "
        "ranges (1 = strictly one after another). Records still come out in ID order.",
    ),
    th.Property(
        "progress_interval",
        th.IntegerType(minimum=0),
        default=30,
        description="Seconds between progress lines (records, pages, rate) in the log.",
    ),
).to_dict()


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
        specs = STREAM_SPECS + STRUCTURE_SPECS + MAILING_SPECS
        self._generic = {s.name: s for s in (cls(tap=self) for cls in build_stream_classes(specs))}
        self.preflight()
        typed = [TypedProfileStream(self, table) for table in self.typed_tables()]
        return [*self._generic.values(), *typed]

    def typed_tables(self) -> list[TypedTable]:
        """One table per database read, and one per collection of those databases."""
        self._read_structure_ahead()
        databases = [db for db in self._databases if int(db["ID"]) in self.database_ids()]
        db_names = unique_names([(int(db["ID"]), str(db.get("name", ""))) for db in databases])
        tables = [
            TypedTable(
                name=f"profiles_{db_names[db_id]}",
                kind="database",
                context={"database_id": db_id},
                fields=self._field_types("database", db_id),
            )
            for db_id in db_names
        ]
        for db_id in db_names:
            collections = self._collections_of(db_id)
            names = unique_names([(int(c["ID"]), str(c.get("name", ""))) for c in collections])
            tables += [
                TypedTable(
                    name=f"subprofiles_{db_names[db_id]}_{names[col_id]}",
                    kind="collection",
                    context={"database_id": db_id, "collection_id": col_id},
                    fields=self._field_types("collection", col_id),
                )
                for col_id in names
            ]
        return tables

    def _read_structure_ahead(self) -> None:
        """Fetch every database's fields and collections, then the collections' fields, with
        `max_parallel_requests` in flight (discovery is otherwise a chain of round trips)."""
        workers = self.max_parallel_requests
        ids = self.database_ids()
        calls: list[Callable[[], object]] = [
            partial(self.field_definitions, "database", db) for db in ids
        ]
        calls += [partial(self._collections_of, db) for db in ids]
        for _ in in_order(calls, workers):
            pass
        collections = [c["collection_id"] for c in self._collections]
        for _ in in_order(
            [partial(self.field_definitions, "collection", c) for c in collections], workers
        ):
            pass

    def _field_types(self, kind: str, owner_id: int) -> tuple[tuple[str, str], ...]:
        return tuple(
            (str(f["name"]), str(f.get("type", "text")))
            for f in self.field_definitions(kind, owner_id)
        )

    # -- shared by every stream -----------------------------------------------------------
    @cached_property
    def authenticator(self) -> CopernicaAuthenticator:
        """One JWT for the whole run, shared by all streams."""
        return ClientSettings.from_config(self.config).authenticator(
            user_agent=f"{self.name}/{self.plugin_version}"
        )

    @cached_property
    def progress(self) -> RunProgress:
        """Counts and progress lines for this run."""
        return RunProgress(self.logger, int(self.config.get("progress_interval", 30)))

    @cached_property
    def timezone(self) -> ZoneInfo:
        """The account's time zone (`timezone`)."""
        return zone(str(self.config.get("timezone") or "Europe/Amsterdam"))

    @property
    def lookback_seconds(self) -> int:
        """Seconds of recent changes the next run reads again (`lookback_seconds`)."""
        return int(self.config.get("lookback_seconds", 60))

    @property
    def max_parallel_requests(self) -> int:
        """Requests in flight at once (`max_parallel_requests`)."""
        return int(self.config.get("max_parallel_requests", 4))

    @property
    def page_size(self) -> int:
        """Rows per request (`page_size`)."""
        return int(self.config.get("page_size", MAX_PAGE_SIZE))

    def _stream(self, name: str) -> CopernicaStream:
        """A generic stream, used as the shared reader (also while discovery runs)."""
        if not hasattr(self, "_generic"):
            _ = self.streams
        return cast("CopernicaStream", self._generic[name])

    @cached_property
    def _databases(self) -> list[dict[str, Any]]:
        return list(self._stream("databases").request_records(None))

    def database_rows(self) -> list[dict[str, Any]]:
        """The account's databases as read at discovery (copies: streams reshape them)."""
        return [dict(row) for row in self._databases]

    def selected_database_ids(self) -> set[int] | None:
        """IDs named by `database_ids` (names resolved), or None for all databases."""
        return self._resolved_database_ids

    @cached_property
    def _resolved_database_ids(self) -> set[int] | None:
        wanted = self.config.get("database_ids")
        if not wanted:
            return None
        by_id = {to_int(db.get("ID")): db for db in self._databases}
        by_name = {str(db.get("name", "")).lower(): db for db in self._databases}
        resolved: set[int] = set()
        unknown: list[str] = []
        for item in wanted:
            text = str(item).strip()
            db = by_id.get(to_int(text)) if text.isdigit() else by_name.get(text.lower())
            if db is None:
                unknown.append(text)
            else:
                resolved.add(int(db["ID"]))
        if unknown:
            available = ", ".join(f"{db.get('name')} ({db.get('ID')})" for db in self._databases)
            msg = (
                f"`database_ids`: no database {', '.join(repr(u) for u in unknown)} in this "
                f"Copernica account. Available: {available or 'none'}. Use an ID or a name "
                f"from that list."
            )
            raise ConfigValidationError(msg, errors=[msg])
        return resolved

    def database_ids(self) -> list[int]:
        """The databases this run reads, in the API's order."""
        wanted = self.selected_database_ids()
        ids = [int(db["ID"]) for db in self._databases]
        return [i for i in ids if wanted is None or i in wanted]

    def _collections_of(self, database_id: int) -> list[dict[str, Any]]:
        if database_id not in self._collection_cache:
            rows = self._stream("collections").request_records({"database_id": database_id})
            self._collection_cache[database_id] = list(rows)
        return self._collection_cache[database_id]

    @cached_property
    def _collection_cache(self) -> dict[int, list[dict[str, Any]]]:
        return {}

    @cached_property
    def _collections(self) -> list[dict[str, int]]:
        return [
            {"database_id": db, "collection_id": int(row["ID"])}
            for db in self.database_ids()
            for row in self._collections_of(db)
        ]

    def id_list_partitions(self, stream_name: str) -> list[dict[str, Any]]:
        """Partitions of the ID list streams: each database, or each collection."""
        if stream_name == "profile_ids":
            return [{"database_id": db} for db in self.database_ids()]
        return list(self._collections)

    def field_definitions(self, kind: str, owner_id: int) -> list[dict[str, Any]]:
        """The fields of a database or collection, read once per run."""
        key = (kind, owner_id)
        if key not in self._field_cache:
            rows = self._stream(f"{kind}_fields").request_records({f"{kind}_id": owner_id})
            self._field_cache[key] = list(rows)
        return self._field_cache[key]

    @cached_property
    def _field_cache(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        return {}

    def has_modified_field(self, kind: str, owner_id: int) -> bool:
        """Whether a database/collection has its own field called `modified` (any case)."""
        names = {str(f.get("name", "")).lower() for f in self.field_definitions(kind, owner_id)}
        return "modified" in names

    # -- run ------------------------------------------------------------------------------
    def preflight(self) -> None:
        """Check what can be checked before the first data request; raise a clear error."""
        errors: list[str] = []
        try:
            _ = self.timezone
        except ValueError as exc:
            errors.append(str(exc))
        start_date = self.config.get("start_date")
        if start_date:
            try:
                parse_instant(str(start_date), ZoneInfo("UTC"))
            except ValueError:
                errors.append(
                    f"`start_date`: {start_date!r} is not an ISO 8601 date or date-time "
                    f"(e.g. 2024-01-31 or 2024-01-31T00:00:00Z)."
                )
        try:
            webhook_ids(self.config.get("webhook_ids"))
        except ConfigValidationError as exc:
            errors.append(str(exc))
        if errors:
            raise ConfigValidationError(errors[0], errors=errors)
        self.authenticator.current_jwt()  # a refused token fails here, with its own message
        if "_databases" not in self.__dict__:
            self._read_databases_and_guess_ahead()
        self.selected_database_ids()  # unknown database names fail here

    def _read_databases_and_guess_ahead(self) -> None:
        """Read the database list; meanwhile, read the fields and collections of databases
        named by ID in `database_ids`, which discovery needs next (one round trip fewer).

        A guess that fails is dropped quietly: the database list decides whether the ID
        exists, and a real read later reports any other error.
        """
        named = [str(d).strip() for d in self.config.get("database_ids") or []]
        guesses = [int(d) for d in named if d.isdigit()]
        _ = self._field_cache, self._collection_cache  # created here, not in two threads

        def quietly(read: Callable[[], object]) -> None:
            try:
                read()
            except Exception:  # a guess: the real read reports the error
                return

        calls: list[Callable[[], object]] = [lambda: self._databases]
        for db in guesses:
            calls.append(partial(quietly, partial(self.field_definitions, "database", db)))
            calls.append(partial(quietly, partial(self._collections_of, db)))
        for _ in in_order(calls, self.max_parallel_requests):
            pass

    def run_discovery(self) -> str:
        """The SDK's discovery; an error that stops it is one clear line and exit code 1."""
        try:
            return super().run_discovery()
        except ConfigValidationError as exc:
            for error in exc.errors or [str(exc)]:
                self.logger.error("%s", error)  # noqa: TRY400 (the message is the whole story)
            sys.exit(1)
        except (FatalAPIError, AuthenticationUnavailableError) as exc:
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
        bookmarks = self.state.get("bookmarks", {}) if isinstance(self.state, dict) else {}
        for name, stream in self.streams.items():
            if isinstance(stream, ProfileStream) and isinstance(bookmarks.get(name), dict):
                for partition in bookmarks[name].get("partitions", []):
                    problems += state_problems(name, partition, self.timezone)
        if problems:
            problems[-1] += (
                " Fix or remove that entry (Meltano: `meltano state clear <state id>` reads "
                "everything again)."
                if "state of stream" in problems[-1]
                else ""
            )
            raise ConfigValidationError(problems[0], errors=problems)

    def run(self) -> None:
        """Preflight, then the SDK's sync; a fatal error ends the run with one clear line."""
        try:
            # Streams first: discovery runs `preflight` itself, and its lookups (the database
            # list) are then cached for the check below instead of requested twice.
            _ = self.streams
            self.preflight()
            self.check_catalog_and_state()
            # Everything built so far (SDK, schemas, catalog) lives for the whole run: keep it
            # out of the collector's passes, which a page of fresh rows would otherwise
            # trigger over and over (measured: several % of a full load).
            gc.freeze()
            self.sync_all()
        except (FatalAPIError, AuthenticationUnavailableError) as exc:
            self.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
            # Send the state as it stands: a rerun resumes after the last emitted record.
            self.write_message(StateMessage(value=self.state))
            self.progress.log_summary()
            sys.exit(1)
        finally:
            writer = self.message_writer
            if isinstance(writer, SingerLineWriter):
                writer.flush()
        self.progress.log_summary()

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
        prints them as such and exits 1.
        """
        super(Tap, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        try:
            tap = cls(
                config=config.config if config else None,
                state=None if state is None else json.loads(state.read()),
                catalog=None if catalog is None else json.loads(catalog.read()),
                parse_env_config=bool(config and config.parse_env),
                validate_config=True,
            )
        except (FatalAPIError, AuthenticationUnavailableError) as exc:
            # Discovery (part of building the tap) could not read the account.
            cls.logger.error("%s", exc)  # noqa: TRY400 (the message is the whole story)
            sys.exit(1)
        tap.run()


if __name__ == "__main__":
    TapCopernica.cli()
