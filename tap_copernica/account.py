"""What the tap knows about the Copernica account, read once per run and shared by streams.

The database list, each database's collections, the fields of databases and collections,
and the emailings of each mailing product. Every read goes through the generic stream that
declares the resource (`StreamReader`), so requests and progress are counted under that
stream's name, and discovery reads with the same URL, auth and retries as a sync.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from singer_sdk.exceptions import ConfigValidationError

from copernica_api.payloads import payload_of, rows_of, to_int
from copernica_api.timeutil import api_to_datetime
from tap_copernica.prefetch import in_order

if TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

    from tap_copernica.settings import TapSettings


class StreamReader(Protocol):
    """The requests a generic stream makes for others (`CopernicaStream` is one)."""

    def request_records(self, context: Context | None) -> Iterable[dict]:
        """Every row of the stream's resource for `context`, page by page."""
        ...

    def fetch(self, context: Context | None, token: Any) -> requests.Response:
        """One request with the query parameters `token`."""
        ...


class Account:
    """The account's structure and emailings, each read at most once per run."""

    def __init__(self, settings: TapSettings, reader: Callable[[str], StreamReader]) -> None:
        """`reader` gives the generic stream of a name (`databases`, `ms_emailings`, ...)."""
        self.settings = settings
        self._reader = reader
        self._databases: list[dict[str, Any]] | None = None
        self._resolved: tuple[set[int] | None] | None = None
        self._collections: dict[int, list[dict[str, Any]]] = {}
        self._collection_contexts: list[dict[str, int]] | None = None
        self._fields: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._emailings: dict[str, list[dict[str, Any]]] = {}
        #: the error that ended a product's emailing-list read (e.g. a product the account
        #: lacks): raised again, not asked again by each stream and plan of the run
        self._emailings_failed: dict[str, Exception] = {}
        self._emailings_date: dict[str, str | None] = {}

    # -- databases ------------------------------------------------------------------------
    def databases(self) -> list[dict[str, Any]]:
        """The account's databases, as the API lists them."""
        if self._databases is None:
            self._databases = list(self._reader("databases").request_records(None))
        return self._databases

    def databases_read(self) -> bool:
        """Whether the database list has been read already."""
        return self._databases is not None

    def database_rows(self) -> list[dict[str, Any]]:
        """The account's databases as read at discovery (copies: streams reshape them)."""
        return [dict(row) for row in self.databases()]

    def selected_database_ids(self) -> set[int] | None:
        """IDs named by `database_ids` (names resolved), or None for all databases."""
        if self._resolved is None:
            self._resolved = (self._resolve_database_ids(),)
        return self._resolved[0]

    def _resolve_database_ids(self) -> set[int] | None:
        wanted = self.settings.database_ids
        if not wanted:
            return None
        databases = self.databases()
        by_id = {to_int(db.get("ID")): db for db in databases}
        by_name = {str(db.get("name", "")).lower(): db for db in databases}
        resolved: set[int] = set()
        unknown: list[str] = []
        for text in wanted:
            db = by_id.get(to_int(text)) if text.isdigit() else by_name.get(text.lower())
            if db is None:
                unknown.append(text)
            else:
                resolved.add(int(db["ID"]))
        if unknown:
            available = ", ".join(f"{db.get('name')} ({db.get('ID')})" for db in databases)
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
        ids = [int(db["ID"]) for db in self.databases()]
        return [i for i in ids if wanted is None or i in wanted]

    # -- collections and fields -----------------------------------------------------------
    def collections_of(self, database_id: int) -> list[dict[str, Any]]:
        """The collections of one database."""
        if database_id not in self._collections:
            rows = self._reader("collections").request_records({"database_id": database_id})
            self._collections[database_id] = list(rows)
        return self._collections[database_id]

    def collection_contexts(self) -> list[dict[str, int]]:
        """`database_id` and `collection_id` of every collection of the databases read."""
        if self._collection_contexts is None:
            self._collection_contexts = [
                {"database_id": db, "collection_id": int(row["ID"])}
                for db in self.database_ids()
                for row in self.collections_of(db)
            ]
        return self._collection_contexts

    def id_list_partitions(self, stream_name: str) -> list[dict[str, Any]]:
        """Partitions of the ID list streams: each database, or each collection."""
        if stream_name == "profile_ids":
            return [{"database_id": db} for db in self.database_ids()]
        return list(self.collection_contexts())

    def field_definitions(self, kind: str, owner_id: int) -> list[dict[str, Any]]:
        """The fields of a database or collection (`kind`), read once per run."""
        key = (kind, owner_id)
        if key not in self._fields:
            rows = self._reader(f"{kind}_fields").request_records({f"{kind}_id": owner_id})
            self._fields[key] = list(rows)
        return self._fields[key]

    def field_types(self, kind: str, owner_id: int) -> tuple[tuple[str, str], ...]:
        """(name, Copernica type) of each field of a database or collection."""
        return tuple(
            (str(f["name"]), str(f.get("type", "text")))
            for f in self.field_definitions(kind, owner_id)
        )

    def has_modified_field(self, kind: str, owner_id: int) -> bool:
        """Whether a database/collection has its own field called `modified` (any case)."""
        names = {str(f.get("name", "")).lower() for f in self.field_definitions(kind, owner_id)}
        return "modified" in names

    def rows_read(self, stream_name: str, context: Context | None) -> list[dict[str, Any]] | None:
        """Copies of the rows this run read already for stream `stream_name` and `context`
        (a database's collections, a database's or collection's fields), else None: the
        stream emits them instead of asking the API the same request again."""
        context = context or {}
        rows: list[dict[str, Any]] | None = None
        if stream_name == "collections" and "database_id" in context:
            rows = self._collections.get(int(context["database_id"]))
        elif stream_name in ("database_fields", "collection_fields"):
            kind = stream_name.removesuffix("_fields")
            if f"{kind}_id" in context:
                rows = self._fields.get((kind, int(context[f"{kind}_id"])))
        return None if rows is None else [dict(row) for row in rows]

    # -- reading ahead --------------------------------------------------------------------
    def read_structure_ahead(self, products: Iterable[str] = ()) -> None:
        """Fetch every database's fields and collections, then the collections' fields, with
        `max_parallel_requests` in flight (discovery is otherwise a chain of round trips);
        alongside the first of those, the emailing lists of `products` (the run reads them
        for its windows and partitions: asked later, each would be a round trip alone)."""
        workers = self.settings.max_parallel_requests
        ids = self.database_ids()
        calls: list[Callable[[], object]] = [
            partial(self.field_definitions, "database", db) for db in ids
        ]
        calls += [partial(self.collections_of, db) for db in ids]
        calls += [partial(self._emailings_ahead, product) for product in products]
        for _ in in_order(calls, workers):
            pass
        collections = [c["collection_id"] for c in self.collection_contexts()]
        for _ in in_order(
            [partial(self.field_definitions, "collection", c) for c in collections], workers
        ):
            pass

    def databases_named_by_id(self) -> list[int]:
        """The databases `database_ids` names by ID: known before the database list is read."""
        return [int(d) for d in self.settings.database_ids if d.isdigit()]

    def requests_guessed_ahead(self) -> int:
        """How many requests `read_databases_and_guess_ahead` sends side by side: the
        database list, and the fields and collections of each database named by ID."""
        return 1 + 2 * len(self.databases_named_by_id())

    def read_databases_and_guess_ahead(self) -> None:
        """Read the database list; meanwhile, read the fields and collections of databases
        named by ID in `database_ids`, which discovery needs next (one round trip fewer).

        A guess that fails is dropped quietly: the database list decides whether the ID
        exists, and a real read later reports any other error.
        """
        guesses = self.databases_named_by_id()

        def quietly(read: Callable[[], object]) -> None:
            try:
                read()
            except Exception:  # a guess: the real read reports the error
                return

        calls: list[Callable[[], object]] = [self.databases]
        for db in guesses:
            calls.append(partial(quietly, partial(self.field_definitions, "database", db)))
            calls.append(partial(quietly, partial(self.collections_of, db)))
        for _ in in_order(calls, self.settings.max_parallel_requests):
            pass

    # -- emailings ------------------------------------------------------------------------
    def _emailings_ahead(self, product: str) -> None:
        """Read the product's emailing list now; an error is kept and raised to the stream
        that asks for the list (a product the account lacks ends only that stream)."""
        with contextlib.suppress(Exception):
            self._emailing_rows(product)

    def _emailing_rows(self, product: str) -> list[dict[str, Any]]:
        """Every emailing of `product`, read through its `<product>_emailings` stream."""
        if product in self._emailings_failed:
            raise self._emailings_failed[product]
        if product not in self._emailings:
            try:
                self._emailings[product] = self._read_emailings(product)
            except Exception as exc:
                self._emailings_failed[product] = exc
                raise
        return self._emailings[product]

    def _read_emailings(self, product: str) -> list[dict[str, Any]]:
        """The pages of the product's emailing list, through its stream."""
        reader = self._reader(f"{product}_emailings")
        rows: list[dict[str, Any]] = []
        size = self.settings.page_size
        while True:
            params = {"start": len(rows), "limit": size, "total": "false"}
            response = reader.fetch(None, params)
            if not rows:
                self._emailings_date[product] = response.headers.get("Date")
            page = rows_of(payload_of(response))
            rows += [r for r in page if isinstance(r, dict)]
            if len(page) < size:
                break
        return rows

    def emailing_ids(self, product: str) -> list[int]:
        """Every emailing of the product, in the API's order."""
        ids = (to_int(r.get("id", r.get("ID"))) for r in self._emailing_rows(product))
        return [i for i in ids if i is not None]

    def first_emailing_time(self, product: str) -> dt.datetime | None:
        """When the product's first emailing was sent (None: no emailings)."""
        stamps = [self.sent_time(row) for row in self._emailing_rows(product)]
        return min((s for s in stamps if s is not None), default=None)

    def emailing_rows(self, product: str) -> list[dict[str, Any]]:
        """Every emailing of the product as the API lists it (shared: do not change them)."""
        return self._emailing_rows(product)

    def emailing_sent(self, product: str, emailing_id: int) -> dt.datetime | None:
        """When one emailing of the product was sent (None: not in the product's list)."""
        for row in self._emailing_rows(product):
            if to_int(row.get("id", row.get("ID"))) == emailing_id:
                return self.sent_time(row)
        return None

    def emailings_date(self, product: str) -> str | None:
        """The server's `Date` of the first page of the product's emailing list: what was
        sent before it (minus the lookback) is in the list and can be read in full."""
        self._emailing_rows(product)
        return self._emailings_date.get(product)

    def sent_time(self, row: dict[str, Any]) -> dt.datetime | None:
        """An emailing row's send time (its `timestamp`), None when it has none."""
        try:
            return api_to_datetime(str(row.get("timestamp") or ""), self.settings.tz)
        except ValueError:
            return None
