"""The sink: one per stream; maps records, then writes each batch by import or by API calls.

A record is rejected (file + summary), never dropped, when it fails its SCHEMA, lacks a key
field, names a field the destination does not have, has a value its field cannot take, or
is refused by the API. Everything else is written before `process_batch` returns, except
the batch's last import, which the server works on while the next batch is read: it is seen
to its end before anything else is written and before any STATE is emitted (`confirm.py`),
so a STATE still follows every record before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, cast

from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError, InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from copernica_api.http import CopernicaSession
from copernica_api.sdk_compat import CompatBatchSink, is_date_like
from target_copernica.api_writer import ApiWriter
from target_copernica.bulk_import import BulkImporter
from target_copernica.confirm import StateConfirmer
from target_copernica.destination import Structure
from target_copernica.journal import InsertJournal
from target_copernica.mirror import MirrorBook, MirrorTarget, mark
from target_copernica.records import (
    DELETED_AT,
    TAP_SHAPE_META,
    TAP_TYPED_MARKERS,
    Item,
    RecordMapper,
    Rejected,
    creatable,
    fingerprint_of,
    is_deleted,
    last_writes,
    new_field_type,
)
from target_copernica.registry import DestinationRegistry
from target_copernica.rejects import RejectedRecords
from target_copernica.settings import INSERT, UPDATE_ONLY, TargetSettings
from target_copernica.stream_write import StreamDestination, StreamWrite
from target_copernica.summary import StreamSummaries
from target_copernica.validation import CompiledSchemaValidator


@dataclass(frozen=True)
class SinkServices:
    """What the sinks of a run share, handed to each by the target."""

    settings: TargetSettings
    session: CopernicaSession  # the writers' requests
    registry: DestinationRegistry  # destinations, key indexes, created fields
    confirmer: StateConfirmer  # batch bookkeeping, STATE, the insert journal
    rejects: RejectedRecords
    summaries: StreamSummaries
    drain_profile_sinks: Callable[[], None]  # writes pending parents of subprofiles
    mirror: MirrorBook | None = None  # `mirror_mode` on: full tables' keys, refusals


class SinkHost(Protocol):
    """The target, as its sinks see it (`target.TargetCopernica`)."""

    @property
    def sink_services(self) -> SinkServices: ...

    @property
    def record_version(self) -> int | None: ...


class CopernicaSink(CompatBatchSink):
    """Writes one stream into a Copernica database (profiles) or collection (subprofiles)."""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self._host = cast("SinkHost", target)
        # The destination first: a database or collection the account does not have ends
        # the run with one line naming the setting (the SDK adds a line of its own to a
        # failing `setup`). The rest is checked in `setup`.
        services = self._host.sink_services
        route = services.settings.route_for(stream_name)
        database = services.registry.database(route.database, route.origin)
        if route.collection:
            services.registry.collection(database, route.collection)
        super().__init__(target, stream_name, schema, key_properties)

    def setup(self) -> None:
        """Resolve the destination and check the key fields before anything is written."""
        self.services = services = self._host.sink_services
        settings = services.settings
        registry = services.registry
        self.route = settings.route_for(self.stream_name)
        self.summary = services.summaries.for_stream(self.stream_name)
        self._invalid_reason: str | None = None
        self._seq = 0
        database = registry.database(self.route.database, self.route.origin)
        parent = None
        if self.route.collection:
            structure = registry.collection(database, self.route.collection)
            database.require_key_fields([self.route.parent_key_field or ""], self.stream_name)
            index_keys: tuple[str, ...] = (self.route.parent_key_field or "",)
            parent = database
        else:
            structure = database
            index_keys = self.route.key_fields
        if settings.create_missing_fields:
            registry.create_fields(structure, self._new_fields(structure))
        structure.require_key_fields(self.route.key_fields, self.stream_name)
        self.destination = StreamDestination(
            structure=structure,
            index=registry.key_index(database, index_keys),
            key_fields=tuple(structure.field_name(k) or k for k in self.route.key_fields),
        )
        self.mapper = RecordMapper(
            stream=self.stream_name,
            route=self.route,
            structure=structure,
            parent=parent,
            tz=settings.tz,
            ensure_interest=(
                (lambda name: registry.create_interest(database, name))
                if settings.create_missing_fields and parent is None
                else None
            ),
            truncate=settings.truncate_long_values,
        )
        self._mirror = None if parent is not None else self._mirror_target(database)

    def _mirror_target(self, database: Structure) -> MirrorTarget | None:
        """Where this stream's mirror acts, when `mirror_mode` is on and the stream writes
        into the scope's database; a marker the database lacks stops the run here, before
        anything is written."""
        book = self.services.mirror
        if book is None:
            return None
        registry = self.services.registry
        scope = book.settings.scope
        if scope.database is not None:
            owned = registry.database(scope.database, "`mirror_scope.database`")
            if owned.id != database.id:
                return None
            if scope.field is None:
                self._check_single_writer(owned)
        problems: list[str] = []
        marker_field = self._defined(database, "field", scope.field, "mirror_scope.field", problems)
        marker_interest = self._defined(
            database, "interest", scope.interest, "mirror_scope.interest", problems
        )
        settings = book.settings
        unsubscribe_field = self._defined(
            database, "field", settings.unsubscribe_field, "mirror_unsubscribe.field", problems
        )
        unsubscribe_interest = self._defined(
            database,
            "interest",
            settings.unsubscribe_interest,
            "mirror_unsubscribe.interest",
            problems,
        )
        if problems:
            raise ConfigValidationError("; ".join(problems), errors=problems)
        target = MirrorTarget(
            stream=self.stream_name,
            database=database,
            index=self.destination.index,
            key_fields=self.destination.key_fields,
            marker_field=marker_field,
            marker_value=scope.value_for(self.stream_name),
            marker_interest=marker_interest,
            unsubscribe_field=unsubscribe_field,
            unsubscribe_interest=unsubscribe_interest,
            summary=self.summary,
        )
        book.writes_into(target)
        return target

    def _check_single_writer(self, owned: Structure) -> None:
        """A scope without a marker field is the whole database: the config must route no
        other stream there (`settings._single_writer` compared the names as written; here
        an ID and a name of one database are the same)."""
        settings = self.services.settings
        registry = self.services.registry
        fix = (
            "use a marker `field` in `mirror_scope` (each mirrored stream writes its own "
            "value into it) or a database only this stream is routed to"
        )
        problem = ""
        if settings.default_database is not None:
            default = registry.database(settings.default_database, "`database`")
            if default.id == owned.id:
                problem = (
                    f"`mirror_scope.database` '{owned.name}' is the default `database` (by "
                    f"ID or name), which every stream without a route writes into"
                )
        writers = []
        for pattern, route in settings.routes:
            entry = {"database": route} if isinstance(route, (str, int)) else route
            ref = entry.get("database") if isinstance(entry, dict) else None
            if ref is None or entry.get("collection"):
                continue
            try:
                routed = registry.database(str(ref), f"`stream_routes.{pattern}`")
            except ConfigValidationError:
                continue  # a route no stream of this run may use; its own run says so
            if routed.id == owned.id:
                writers.append(pattern)
        if not problem and len(writers) > 1:
            problem = f"`mirror_scope.database` '{owned.name}' is routed to by {writers}"
        if problem:
            message = (
                f"{problem}, so one stream's full table would remove the profiles of "
                f"another: {fix}. Nothing was written."
            )
            raise ConfigValidationError(message, errors=[message])

    def _defined(
        self,
        database: Structure,
        kind: str,
        name: str | None,
        setting: str,
        problems: list[str],
    ) -> str | None:
        """The defined name of a field or interest a mirror setting names."""
        if name is None:
            return None
        if kind == "field":
            found = database.field_name(name)
            known = sorted(database.names.values())
        else:
            found = database.interest_name(name)
            known = sorted(database.interests.values())
        if found is None:
            problems.append(
                f"Stream '{self.stream_name}': `{setting}` names {kind} '{name}', which "
                f"database '{database.name}' does not have (its {kind}s: "
                f"{', '.join(known) or '(none)'}). Create it in Copernica or name another; "
                f"nothing was written."
            )
        return found

    def _new_fields(self, structure: Structure) -> dict[str, str]:
        """Schema properties the destination lacks and that can be created: name -> type."""
        properties = self.schema.get("properties", {})
        skip = {"interests", "fields", self.route.parent_key_property}
        if TAP_TYPED_MARKERS.issubset(properties):  # the tap's typed table: not fields
            skip |= TAP_SHAPE_META
        wanted: dict[str, str] = {}
        for name, prop in properties.items():
            if name.startswith("_sdc_") or name in skip or structure.field_name(name):
                continue
            if creatable(name) and isinstance(prop, dict):
                wanted[name] = new_field_type(prop)
        return wanted

    # -- records -----------------------------------------------------------------------
    def keep_metadata(self) -> Iterable[str]:
        """Of the SDK's metadata, keep `_sdc_deleted_at`: it marks a delete."""
        return (DELETED_AT,)

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """The stream's SCHEMA compiled once (`validate_records` still switches it off)."""
        return CompiledSchemaValidator(self.schema) if self.validate_schema else None

    def validate_record(self, record: dict) -> dict:
        """Validate against the SCHEMA; an invalid record is rejected, not fatal."""
        self._invalid_reason = None
        validator = self.schema_validator()
        if validator is not None:
            try:
                validator.validate(record)
            except InvalidRecord as exc:
                self._invalid_reason = f"does not match the stream's SCHEMA: {exc.error_message}"
                return record
        if record.keys() <= self._plain_properties:
            return record  # nothing for the SDK's timestamp parsing to parse or warn about
        try:
            self.parse_timestamps(record)
        except ValueError as exc:
            self._invalid_reason = f"does not match the stream's SCHEMA: {exc}"
        return record

    @cached_property
    def _plain_properties(self) -> frozenset[str]:
        """The SCHEMA's properties that the SDK's timestamp parsing leaves alone (those
        that are not date-like); it walks every property of every record, so a record
        with only these skips it. `tests/test_target_units.py` checks this against the SDK."""
        return frozenset(
            name
            for name, prop in self.schema.get("properties", {}).items()
            if isinstance(prop, dict) and not is_date_like(prop)
        )

    def missing_key_properties(self, record: dict, missing: list[str]) -> None:
        """A record without a property the SCHEMA lists in `key_properties` is rejected in
        `process_record`, like one whose key is empty (the SDK would end the whole load)."""
        self._invalid_reason = (
            f"key propert{'y' if len(missing) == 1 else 'ies'} {missing} (the stream's "
            f"`key_properties`) missing from the record"
        )

    def process_record(self, record: dict, context: dict) -> None:
        """Map the record now (so rejects are found early); the write waits for the batch."""
        self._seq += 1
        if self._invalid_reason is not None:
            self.reject_record(record, self._invalid_reason)
            self._note_rejected(record, self._invalid_reason)
            self._invalid_reason = None
            return
        try:
            item = self.mapper.map(self._seq, record)
        except Rejected as exc:
            self.reject_record(record, exc.reason)
            self._note_rejected(record, exc.reason)
            return
        item.epoch = self.services.confirmer.state_epoch
        mirror = self._mirror
        # A hard delete's key is not present; a soft one (`hard_delete` off) keeps its
        # profile, which the mirror must keep too.
        if mirror is not None and not (item.delete and self.services.settings.hard_delete):
            book = self.services.mirror
            assert book is not None
            item.version = self._host.record_version
            if not item.delete:
                mark(item, mirror)
            book.note(self.stream_name, item.version, item.key)
        context.setdefault("items", []).append(item)

    def _note_rejected(self, record: dict[str, Any], reason: str) -> None:
        """A rejected record of a full table still stands for its profile, when its key is
        usable (the mirror must not take it for absent)."""
        book = self.services.mirror
        if self._mirror is None or book is None:
            return
        if is_deleted(record) and self.services.settings.hard_delete:
            return
        key = self.mapper.key_of(record)
        book.note(self.stream_name, self._host.record_version, key, reason)

    def reject_record(self, record: dict[str, Any], reason: str) -> None:
        """Put a record in the rejected-records file and the summary."""
        self.services.rejects.add(self.stream_name, record, reason)
        self.summary.add("rejected")

    def _reject_item(self, item: Item, reason: str) -> None:
        self.reject_record(item.record, reason)

    # -- batches -----------------------------------------------------------------------
    def process_batch(self, context: dict) -> None:
        """Write the batch: an import for many plain profile rows, API calls for the rest."""
        confirmer = self.services.confirmer
        confirmer.batch_started()
        self._write_batch(context.get("items", []))
        confirmer.batch_written(self)

    def _write_batch(self, items: list[Item]) -> None:
        if not items:
            return
        services = self.services
        settings = services.settings
        confirmer = services.confirmer
        if self.route.collection:
            services.drain_profile_sinks()  # parents first (their import may run on)
        # The import an earlier batch (or that drain) left running ends first: writes keep
        # input order, and subprofiles find the parents it adds.
        confirmer.finish_writes()
        journal = confirmer.journal
        if journal is not None:
            confirmer.settle_journal()  # before the keys are counted
            items = self._not_written_before(items, journal)
        if settings.load_method != INSERT:
            items, superseded = last_writes(items)
            if superseded:
                self.summary.add("superseded", superseded)
        truncated = sum(item.truncated for item in items)
        if truncated:
            self.summary.add("truncated", truncated)
        services.registry.ensure_index(self.destination.index)
        if services.mirror is not None and self._mirror is not None:
            index = self.destination.index
            services.mirror.classify(self.stream_name, items, lambda key: index.count(key) > 0)
        write = StreamWrite(
            session=services.session,
            destination=self.destination,
            load_method=settings.load_method,
            summary=self.summary,
            reject=self._reject_item,
            journal=journal,
        )
        writer = ApiWriter(
            write,
            hard_delete=settings.hard_delete,
            dry_run=settings.dry_run,
            max_parallel=settings.max_parallel_requests,
        )
        if not self._use_bulk(items):
            writer.write(items)
            return
        bulk_items, api_items = self._split_for_bulk(items)
        importer = BulkImporter(write, timeout_seconds=settings.import_timeout_seconds)
        retry, running = importer.write(bulk_items)
        writer.write(retry + api_items)  # other keys than the running import's
        if running is not None:
            # The server works on the last import while the next batch is read and mapped.
            confirmer.finish_later(lambda: writer.write(importer.finish(running)))

    def _not_written_before(self, items: list[Item], journal: InsertJournal) -> list[Item]:
        """Leave out the inserts an interrupted run had already made (a rerun's replay)."""
        fresh: list[Item] = []
        for item in items:
            fp = fingerprint_of(self.stream_name, item)
            if not item.delete and journal.already_written(fp, item.epoch):
                self.summary.add("already_written")
            else:
                fresh.append(item)
        return fresh

    def _use_bulk(self, items: list[Item]) -> bool:
        settings = self.services.settings
        if self.route.collection or settings.dry_run or settings.write_path == "api":
            return False
        return settings.write_path == "bulk" or len(items) >= settings.bulk_threshold_rows

    def _split_for_bulk(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        """Whole key groups go one way, so records with one key stay in input order."""
        update_only = self.services.settings.load_method == UPDATE_ONLY
        if not update_only and all(map(BulkImporter.eligible, items)):
            return items, []  # the usual case: every record can be imported
        groups: dict[Any, list[Item]] = {}
        for item in items:
            groups.setdefault(item.group, []).append(item)
        bulk: list[Item] = []
        api: list[Item] = []
        index = self.destination.index
        for group in groups.values():
            if not all(BulkImporter.eligible(item) for item in group):
                api.extend(group)
            elif update_only and index.count(group[0].key) == 0:
                self.summary.add("not_found", len(group))
            else:
                bulk.extend(group)
        bulk.sort(key=lambda item: item.seq)
        api.sort(key=lambda item: item.seq)
        return bulk, api

    # -- full tables -------------------------------------------------------------------
    def activate_version(self, new_version: int) -> None:
        """A full table ended (or, sent before its records, begins): mirror it when
        `mirror_mode` is on (`mirror.py`)."""
        book = self.services.mirror
        if book is None or self._mirror is None:
            if book is None:
                why = "`mirror_mode` is off"
            elif self.route.collection:
                why = "mirror acts on profiles, not subprofiles"
            else:
                why = "the stream writes outside `mirror_scope`"
            self.logger.info("ACTIVATE_VERSION %s: %s, so no profile is removed.", new_version, why)
            return
        book.mirror(
            self._mirror,
            new_version,
            registry=self.services.registry,
            write_everything=self.services.confirmer.write_everything,
            max_parallel=self.services.settings.max_parallel_requests,
        )

    def clean_up(self) -> None:
        """Stop the stream's clock for the summary."""
        self.summary.finish()
        super().clean_up()
