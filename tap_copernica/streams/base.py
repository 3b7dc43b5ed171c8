"""The stream table's row type (`StreamSpec`) and the two simplest kinds of resource.

- `ObjectStream`: one object per call (`identity`); the base of every stream of the tap.
- `ListStream`: a small paged list (databases, fields, interests, collections).

Each resource is one `StreamSpec` (or a spec of a stream family, with that family's own
fields); `build_stream_classes` turns the table into the classes the SDK links by type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import SchemaDirectory, StreamSchema

from copernica_api.payloads import payload_of, rows_of, to_int
from tap_copernica.client import CopernicaStream
from tap_copernica.paging import StartLimitPaginator
from tap_copernica.record_shape import RecordShape
from tap_copernica.schemas_dir import schema_dir

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from tap_copernica.readahead import Entry
    from tap_copernica.settings import TapSettings

SCHEMAS = SchemaDirectory(schema_dir())


@dataclass(frozen=True)
class StreamSpec:
    """One row of the stream table: a resource, and the class that reads it.

    Stream families with settings of their own (profiles, mailings, rules) have a spec type
    of their own that adds them as typed fields.
    """

    name: str
    path: str
    base: type[ObjectStream]
    keys: tuple[str, ...] = ("ID",)
    parent: str | None = None
    shape: RecordShape = field(default_factory=RecordShape)
    #: child context key -> record field (or key of this stream's own context)
    child_keys: Mapping[str, str] = field(default_factory=dict)
    #: the SDK's replication key, for incremental streams whose class does not fix one
    replication_key: str | None = None
    #: the products whose emailing list the stream asks `Account` for, whatever the settings
    emailing_lists: tuple[str, ...] = ()

    def emailing_lists_read(self, settings: TapSettings) -> tuple[str, ...]:
        """The products whose emailing list the stream reads with these settings (read
        alongside the account's structure when the stream is selected)."""
        return self.emailing_lists


class ObjectStream(CopernicaStream):
    """A resource that answers with one object."""

    schema: ClassVar[StreamSchema] = StreamSchema(SCHEMAS)
    #: the stream's row of the stream table (set on each class `build_stream_classes` makes)
    spec: StreamSpec

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """Normalise IDs and timestamps (the API's strings) to typed values."""
        if self.selected:
            self.progress.record(self.name)
        return self.spec.shape.apply(row, self.settings.tz, utc=self.settings.utc_timestamps)

    def generate_child_contexts(
        self, record: dict, context: Context | None
    ) -> Iterable[Context | None]:
        """Contexts for child streams; none at all for a stream without children."""
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    def get_child_context(self, record: dict, context: Context | None) -> dict:
        """Path parameters for child streams."""
        values = {**(context or {}), **record}
        return {key: to_int(values[source]) for key, source in self.spec.child_keys.items()}

    # -- reading ahead (`readahead.py`) -----------------------------------------------------
    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The query parameters of this stream's first request for `context`, when they can
        be known before it is read; None (the default) when they cannot, or when nothing is
        requested."""
        return None

    def known_records(self, context: Context | None) -> list[dict[str, Any]] | None:
        """The rows of `context` when the run has read them already (`Account`), as the API
        sent them (copies); None when they must be requested."""
        return None

    def records_ahead(self, context: Context | None) -> AbstractContextManager[object]:
        """Before the SDK walks this stream's partitions (`context` None), read ahead the
        first request of each, and those of the children of every record already known.
        A child stream's contexts were planned by its parent."""
        if context is not None:
            return nullcontext()
        return self._whole_stream_ahead()

    @contextmanager
    def _whole_stream_ahead(self) -> Iterator[None]:
        """The stream's plan while it syncs; once it ended (also early: a failure, the
        budget), what the run planned for it and its children is neither sent nor kept."""
        read_ahead = self.services.read_ahead
        streams = [self.name, *(s.name for s in self.descendent_streams)]
        try:
            if read_ahead.planning:
                with (
                    read_ahead.syncing(streams),
                    read_ahead.plan(self.planned(self.entries_ahead)),
                ):
                    try:
                        yield
                    finally:  # before the plan closes: its calls still running send no more
                        read_ahead.stream_done(streams)
            else:
                yield
        finally:
            read_ahead.stream_done(streams)

    def entries_ahead(self) -> list[Entry]:
        """The first request of each of this stream's partitions, and of the children of
        their known records, in the order the SDK reaches them (see `run_ahead`)."""
        entries: list[Entry] = []
        if not self.services.read_ahead.planning:
            return entries
        partitions: list[Context | None] = [*(self.partitions or [])] or [None]
        for partition in partitions:
            entries += self.plan_of(partition)
        return entries

    def plan_of(self, context: Context | None) -> list[Entry]:
        """This stream's first request for `context`, then those of its known records'
        children, in the order the SDK reaches them."""
        entries: list[Entry] = []
        if context is not None and self.skip_context(context):
            return entries  # read to its end by an earlier part of a split run
        params = self.first_request(context)
        if params is not None:
            entries.append(self.ahead(context, params))
        known = self.known_records(context)
        if known:
            entries += self.children_ahead(known, context)
        return entries

    def children_ahead(self, rows: list[dict[str, Any]], context: Context | None) -> list[Entry]:
        """The first requests of the children of `rows` (records of `context`) that the
        run will read, record by record as the SDK syncs them."""
        children = [
            c
            for c in self.child_streams
            if isinstance(c, ObjectStream) and (c.selected or c.has_selected_descendents)
        ]
        entries: list[Entry] = []
        if not children or not self.services.read_ahead.planning:
            return entries
        for row in rows:
            values = dict(row)
            if "ID" not in values and "id" in values:  # as `RecordShape.apply` names it
                values["ID"] = values["id"]
            try:
                contexts = list(self.generate_child_contexts(values, context))
            except (KeyError, TypeError, ValueError):
                continue  # a row the SDK will refuse: nothing to read ahead for it
            for child_context in contexts:
                for child in children:
                    entries += child.planned(partial(child.plan_of, child_context))
        return entries

    def planned(self, plan: Callable[[], list[Entry]]) -> list[Entry]:
        """The entries `plan` gives, or none when planning fails: reading ahead only saves
        time, so its error must never end a stream (the stream's own read reports it)."""
        try:
            return plan()
        except Exception as exc:
            self.logger.debug("Not reading '%s' ahead: %s", self.name, exc)
            return []


class OneObjectStream(ObjectStream):
    """A resource that answers with one object to a request without parameters."""

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The one request (read ahead for every partition)."""
        return {}


class ListStream(ObjectStream):
    """A small list paged with start/limit."""

    #: while the SDK reads a context: where its pages' plans live, and the reading thread
    #: (a lookup of `Account` through the same stream in another thread plans nothing)
    _page_plans: tuple[ExitStack, Context | None] | None = None
    _page_thread: int | None = None

    def get_new_paginator(self) -> BaseAPIPaginator:
        """Offset paging: structure lists are small and rarely change mid-run."""
        return StartLimitPaginator(self.settings.page_size)

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """start/limit from the paginator; no totals (they cost the API a count)."""
        return {**(next_page_token or {}), "limit": self.settings.page_size, "total": "false"}

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The first page, unless the run has read the list already."""
        if self.known_records(context) is not None:
            return None
        return self.get_url_params(context, {"start": 0})

    def following_page(self, token: Any, response: requests.Response) -> Any | None:
        """The next offset after a full page (`StartLimitPaginator.following`)."""
        return StartLimitPaginator.following(
            token, len(rows_of(payload_of(response))), self.settings.page_size
        )

    def known_records(self, context: Context | None) -> list[dict[str, Any]] | None:
        """The list as `Account` read it for discovery (fields, collections): the same
        request, not sent twice in one run."""
        return self.account.rows_read(self.name, context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The rows `Account` read already, else the pages; each page's children are read
        ahead while its records go out."""
        known = self.known_records(context)
        if known is not None:
            yield from known
            return
        with self.pages_ahead(context):
            yield from super().get_records(context)

    @contextmanager
    def pages_ahead(self, context: Context | None) -> Iterator[None]:
        """While reading `context`: the children of each page are read ahead (`page_read`),
        until all of the context's records (and so their children) are through."""
        with ExitStack() as stack:
            self._page_plans, self._page_thread = (stack, context), threading.get_ident()
            try:
                yield
            finally:
                self._page_plans = self._page_thread = None

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """The page's rows; their children's first requests are read ahead meanwhile."""
        rows = list(super().parse_response(response))
        self.page_read(rows)
        return rows

    def page_read(self, rows: list[dict[str, Any]]) -> None:
        """A page arrived: read ahead the first requests of its rows' children."""
        plans = self.page_plans()
        if plans is not None and rows:
            stack, context = plans
            stack.enter_context(self.services.read_ahead.plan(self.children_ahead(rows, context)))

    def page_plans(self) -> tuple[ExitStack, Context | None] | None:
        """Where this thread's reading of a context keeps its pages' plans, if it is one."""
        return self._page_plans if self._page_thread == threading.get_ident() else None


def run_ahead(streams: Iterable[object]) -> list[Entry]:
    """The first requests of every stream the SDK's `sync_all` will sync (top-level streams,
    selected or with selected children), in its order: planned once for the whole run
    (`ReadAhead.plan` around `sync_all`), a stream's first requests are in flight while the
    streams before it are read, instead of each stream starting with a round trip."""
    entries: list[Entry] = []
    for stream in streams:
        if not isinstance(stream, ObjectStream) or stream.parent_stream_type:
            continue
        if not (stream.selected or stream.has_selected_descendents):
            continue
        parts = stream.services.parts
        if parts.active and parts.finished_before(stream.name, None):
            continue  # read to its end by an earlier part of a split run
        entries += stream.planned(stream.entries_ahead)
    return entries


def build_stream_classes(specs: Iterable[StreamSpec]) -> list[type[ObjectStream]]:
    """One class per spec, parents before children (the SDK links them by class)."""
    classes: dict[str, type[ObjectStream]] = {}
    for spec in specs:
        attrs: dict[str, Any] = {
            "name": spec.name,
            "path": spec.path,
            "primary_keys": list(spec.keys),
            "spec": spec,
            "__module__": spec.base.__module__,
        }
        if spec.replication_key is not None:
            attrs["replication_key"] = spec.replication_key
        if spec.parent:
            attrs["parent_stream_type"] = classes[spec.parent]
        class_name = "".join(part.capitalize() for part in spec.name.split("_")) + "Stream"
        classes[spec.name] = type(class_name, (spec.base,), attrs)
    return list(classes.values())
