"""The requests a perfect reader needs for a sync, computed from the emulator's own data.

The bound is taken from the emulator's `Store` (and the data its mailing and structure
modules keep beside it), never from what the tap did, so a tap cannot lower it by reading
less. For each selected stream it is the sum, over the stream's list endpoints and the
parents it is read for, of ``ceil(rows / 1000)`` (1000 is the API's largest page), at least
1 each: even an empty list takes one request to learn that it is empty.

Rules per stream family (a *first sync* reads every row; *incremental* see below):

- `identity`: 1 (one object). `webhooks`: 1 per configured `webhook_ids` entry (v4 has no
  list of webhooks, so none configured costs nothing).
- `databases`: pages of the database list. `database_fields`, `database_interests`,
  `collections`: pages per database. `database_unsubscribe`: 1 per database (an object).
- `collection_fields`, `miniviews`: pages per collection. `collection_unsubscribe`: 1 per
  collection. `subprofile_ids`: 1 per collection (the endpoint takes no paging parameters).
- `views`: pages of each database's top-level views, plus pages of `/view/{id}/views` only
  for views that have nested views (each view's `has-children` says so, so a perfect reader
  asks nothing for the others). `view_rules`: pages per view (nested views included) that
  has rules: a view's `has-rules` says so, so one without costs nothing. `minirules`: pages
  per miniview (a miniview has no such flag, so at least 1 each). `rule_conditions`,
  `miniconditions`: 0 (the conditions come embedded in their rule).
- `profiles`: pages of live profiles per database (rows modified at or after `start_date`
  when one is given); `subprofiles` likewise per collection. A typed stream
  (`profiles_<database>`, `subprofiles_<database>_<collection>`) has the same bound as the
  generic stream for its one database or collection: each selected stream is counted on its
  own, even though both read the same endpoint. `profile_ids`: pages of live profile IDs per
  database (a full table: read in full every run).
- Mailing products (`ms`, `publisher`): `<p>_emailings`, `<p>_scheduled_emailings`,
  `<p>_templates`, `publisher_documents`: pages of the list. `<p>_emailing_statistics`,
  `<p>_emailing_snapshot`: 1 per emailing (objects). `<p>_emailing_destinations`: pages per
  emailing. Event streams (`<p>_deliveries`, ... `<p>_abuses`): pages of the account-wide
  event list (one partition, no parent), rows at or after `start_date`. Time windows are a
  way to read these exactly and resumably, not something the data needs: a window with no
  rows counts for nothing here.
- `consumption`: the API answers one object per requested period and the stream's grain is a
  calendar month, so at least one call per month is needed. The months counted run from the
  configured first month (`consumption_start_date`, else `start_date`, else the tap's
  documented default of 12 months before the current one) to the current month, but never
  from before the month of the account's oldest data (the earliest database `created`, which
  the tap reads anyway): no consumption can exist before the account had a database.

Incremental run with nothing changed (`incremental=True`): an incremental stream needs one
request per partition (one empty page says nothing changed), except profiles of a database
(subprofiles of a collection) with a field of its own named `modified`: the API cannot filter
those on modification time, so they are read in full; a full-table stream is read in full
again (its first-sync bound); `consumption` needs 1 (the current month, read again
because it was still open). That floor is one request per partition (`partition_count()`)
plus the extra pages of full tables: the goal "incremental nothing changed <= partitions + a
small constant" is checked against it (`bench/account.py`).

A stream without a rule here (`has_rule`) is left out of `bounds()`: the bench lists it
instead of failing.

`stream_of()` attributes a logged request to a stream by its API path. The generic and the
typed profile streams read the same endpoint, so their requests are attributed to the groups
`profiles*` and `subprofiles*` (and their bounds are summed by `group_of()`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from copernica_emulator import mailings, structure
from copernica_emulator.model import find_field
from copernica_emulator.store import Store

PAGE = 1000
PRODUCTS = ("ms", "publisher")
EVENT_KINDS = mailings.EVENT_KINDS
#: The tap's default first consumption month: this many months before the current one.
CONSUMPTION_DEFAULT_MONTHS = 12
PROFILE_GROUP, SUBPROFILE_GROUP = "profiles*", "subprofiles*"
AUTH = "(authentication)"

#: Streams whose incremental run reads only what changed (one request per partition when
#: nothing did); every other stream is a full table, read in full each run.
INCREMENTAL = frozenset(
    {"profiles", "subprofiles", "consumption"}
    | {f"{p}_emailings" for p in PRODUCTS}
    | {f"{p}_emailing_destinations" for p in PRODUCTS}
    | {f"{p}_{kind}" for p in PRODUCTS for kind in EVENT_KINDS}
)


@dataclass(frozen=True)
class Partition:
    """One list endpoint read for one parent: how many rows, how many requests at least."""

    stream: str
    parent: str  # e.g. "database 1", "emailing 3", "" for account-wide lists
    rows: int
    requests: int
    #: read in full by every run, also when nothing changed (a full table, or profiles
    #: the API cannot filter on modification time)
    full: bool = False


def pages(rows: int) -> int:
    """Requests to read `rows` rows: ceil(rows / 1000), at least 1."""
    return max(1, math.ceil(rows / PAGE))


def group_of(stream: str) -> str:
    """The attribution group: typed profile streams share their generic stream's endpoint."""
    if stream == "profiles" or stream.startswith("profiles_"):
        return PROFILE_GROUP
    if stream == "subprofiles" or (
        stream.startswith("subprofiles_") and stream != "subprofile_ids"
    ):
        return SUBPROFILE_GROUP
    return stream


def is_incremental(stream: str) -> bool:
    return stream in INCREMENTAL or group_of(stream) in (PROFILE_GROUP, SUBPROFILE_GROUP)


_N = r"([^/]+)"
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(f"^/v4{pattern}$"), stream)
    for pattern, stream in (
        ("/identity", "identity"),
        ("/databases", "databases"),
        (f"/database/{_N}/fields", "database_fields"),
        (f"/database/{_N}/interests", "database_interests"),
        (f"/database/{_N}/collections", "collections"),
        (f"/database/{_N}/unsubscribe", "database_unsubscribe"),
        (f"/database/{_N}/views", "views"),
        (f"/database/{_N}/profileids", "profile_ids"),
        (f"/database/{_N}/profiles", PROFILE_GROUP),
        (f"/view/{_N}/views", "views"),
        (f"/view/{_N}/rules", "view_rules"),
        (f"/rule/{_N}", "rule_conditions"),
        (f"/collection/{_N}/fields", "collection_fields"),
        (f"/collection/{_N}/miniviews", "miniviews"),
        (f"/collection/{_N}/unsubscribe", "collection_unsubscribe"),
        (f"/collection/{_N}/subprofileids", "subprofile_ids"),
        (f"/collection/{_N}/subprofiles", SUBPROFILE_GROUP),
        (f"/miniview/{_N}/(?:mini)?rules", "minirules"),
        (f"/minirule/{_N}", "miniconditions"),
        ("/consumption", "consumption"),
        (f"/webhook/{_N}", "webhooks"),
        ("/(ms|publisher)/emailings", r"\1_emailings"),
        ("/(ms|publisher)/scheduledemailings", r"\1_scheduled_emailings"),
        ("/(ms|publisher)/templates", r"\1_templates"),
        ("/(publisher)/documents", r"\1_documents"),
        (f"/(ms|publisher)/emailing/{_N}/(statistics|snapshot|destinations)", r"\1_emailing_\3"),
        (f"/(ms|publisher)/(?:emailing|destination)/{_N}/({'|'.join(EVENT_KINDS)})", r"\1_\3"),
        (f"/(ms|publisher)/({'|'.join(EVENT_KINDS)})", r"\1_\2"),
    )
)


def stream_of(path: str) -> str:
    """The stream (or group) a request for `path` (no query string) was made for."""
    clean = "/" + "/".join(part for part in path.split("/") if part)
    if clean == "/authenticate":
        return AUTH
    for pattern, stream in _ROUTES:
        match = pattern.match(clean)
        if match:
            return match.expand(stream)
    return f"(other) {clean}"


def _local(start_date: str | None, tz: ZoneInfo) -> str:
    """`start_date` as the account's local "YYYY-MM-DD HH:MM:SS" ("" when not given)."""
    if not start_date:
        return ""
    moment = dt.datetime.fromisoformat(start_date.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


class Bounds:
    """Partitions and bounds of an emulated account, for the streams a sync selects."""

    def __init__(
        self,
        store: Store,
        *,
        start_date: str | None = None,
        consumption_start_date: str | None = None,
        webhook_ids: Iterable[int] = (),
        today: dt.date | None = None,
    ) -> None:
        self.store = store
        self.since = _local(start_date, store.tz)
        self.start_date, self.consumption_start_date = start_date, consumption_start_date
        self.webhook_ids = tuple(webhook_ids)
        self.today = today or dt.datetime.now(store.tz).date()
        self.mail = mailings.data_of(store)
        self.views = structure.data_of(store)
        # Typed stream name -> its database or collection (the tap's naming, by name).
        self.typed: dict[str, tuple[str, int]] = {}
        for db in store.databases.values():
            db_name = _safe(db.name)
            self.typed[f"profiles_{db_name}"] = ("database", db.id)
            for col in store.collections_of(db):
                self.typed[f"subprofiles_{db_name}_{_safe(col.name)}"] = ("collection", col.id)

    # -- what the data holds --------------------------------------------------------------
    def _profiles(self, db_id: int) -> int:
        rows = self.store.live_profiles(db_id)
        return sum(1 for p in rows if p.modified >= self.since)

    def _subprofiles(self, col_id: int) -> int:
        rows = self.store.live_subprofiles(col_id)
        return sum(1 for s in rows if s.modified >= self.since)

    def _profile_partition(self, stream: str, db_id: int) -> Partition:
        n = self._profiles(db_id)
        clash = find_field(self.store.database(db_id).fields, "modified") is not None
        return Partition(stream, f"database {db_id}", n, pages(n), full=clash)

    def _subprofile_partition(self, stream: str, col_id: int) -> Partition:
        n = self._subprofiles(col_id)
        clash = find_field(self.store.collection(col_id).fields, "modified") is not None
        return Partition(stream, f"collection {col_id}", n, pages(n), full=clash)

    def _consumption_months(self) -> int:
        configured = self.consumption_start_date or self.start_date
        if configured:
            first = _month_index(dt.date.fromisoformat(configured[:10]))
        else:
            first = _month_index(self.today) - CONSUMPTION_DEFAULT_MONTHS
        created = [db.created[:10] for db in self.store.databases.values()]
        if created:
            first = max(first, _month_index(dt.date.fromisoformat(min(created))))
        return max(1, _month_index(self.today) - first + 1)

    # -- partitions -----------------------------------------------------------------------
    def partitions(self, stream: str) -> list[Partition]:
        """The list endpoints and parents `stream` is read for, with its rows in each."""
        store, dbs = self.store, list(self.store.databases.values())
        cols = [c for db in dbs for c in store.collections_of(db)]

        def per_db(rows: Mapping[int, int]) -> list[Partition]:
            return [Partition(stream, f"database {i}", n, pages(n)) for i, n in rows.items()]

        def per_col(rows: Mapping[int, int]) -> list[Partition]:
            return [Partition(stream, f"collection {i}", n, pages(n)) for i, n in rows.items()]

        def whole(rows: int) -> list[Partition]:
            return [Partition(stream, "", rows, pages(rows))]

        if stream in self.typed:
            kind, owner = self.typed[stream]
            if kind == "database":
                return [self._profile_partition(stream, owner)]
            return [self._subprofile_partition(stream, owner)]
        match stream:
            case "identity":
                return whole(1)
            case "webhooks":
                return [Partition(stream, f"webhook {w}", 1, 1) for w in self.webhook_ids]
            case "databases":
                return whole(len(dbs))
            case "database_fields":
                return per_db({db.id: len(db.fields) for db in dbs})
            case "database_interests":
                return per_db({db.id: len(db.interests) for db in dbs})
            case "collections":
                return per_db({db.id: len(db.collection_ids) for db in dbs})
            case "database_unsubscribe":
                return per_db(dict.fromkeys((db.id for db in dbs), 1))
            case "profiles":
                return [self._profile_partition(stream, db.id) for db in dbs]
            case "profile_ids":
                return per_db({db.id: len(store.live_profiles(db.id)) for db in dbs})
            case "collection_fields":
                return per_col({c.id: len(c.fields) for c in cols})
            case "miniviews":
                views = self.views.miniviews.values()
                return per_col({c.id: sum(v.owner_id == c.id for v in views) for c in cols})
            case "collection_unsubscribe" | "subprofile_ids":
                return [Partition(stream, f"collection {c.id}", 1, 1) for c in cols]
            case "subprofiles":
                return [self._subprofile_partition(stream, c.id) for c in cols]
            case "views":
                tree = list(self.views.views.values())
                top = {
                    db.id: sum(v.owner_id == db.id and v.parent_type == "database" for v in tree)
                    for db in dbs
                }
                nested = {
                    v.id: sum(c.parent_type == "view" and c.parent_id == v.id for c in tree)
                    for v in tree
                }
                return per_db(top) + [
                    Partition(stream, f"view {i}", n, pages(n)) for i, n in nested.items() if n
                ]
            case "view_rules":  # a view's `has-rules` says whether asking is needed
                return [
                    Partition(stream, f"view {v.id}", len(v.rule_ids), pages(len(v.rule_ids)))
                    for v in self.views.views.values()
                    if v.rule_ids
                ]
            case "minirules":
                return [
                    Partition(stream, f"miniview {v.id}", len(v.rule_ids), pages(len(v.rule_ids)))
                    for v in self.views.miniviews.values()
                ]
            case "rule_conditions" | "miniconditions":
                return []
            case "consumption":
                months = self._consumption_months()
                return [Partition(stream, "", months, months)]
            case "publisher_documents":
                return whole(len(mailings.document_rows(source=False)))
        product, _, rest = stream.partition("_")
        if product not in PRODUCTS:
            raise ValueError(f"no lower-bound rule for stream {stream!r}")
        emailings = self.mail.emailings.get(product, [])
        if rest == "emailings":
            return whole(sum(e.timestamp >= self.since for e in emailings))
        if rest == "scheduled_emailings":
            return whole(len(mailings.scheduled_rows(product, store)))
        if rest == "templates":
            return whole(len(mailings.template_rows(product)))
        if rest in ("emailing_statistics", "emailing_snapshot"):
            return [Partition(stream, f"emailing {e.id}", 1, 1) for e in emailings]
        if rest == "emailing_destinations":
            dests = self.mail.destinations.get(product, [])
            return [
                Partition(stream, f"emailing {e.id}", n, pages(n))
                for e in emailings
                for n in [sum(d.emailing == e.id and d.timestampsent >= self.since for d in dests)]
            ]
        if rest in EVENT_KINDS:
            events = self.mail.events.get((product, rest), [])
            return whole(sum(e.timestamp >= self.since for e in events))
        raise ValueError(f"no lower-bound rule for stream {stream!r}")

    # -- bounds ---------------------------------------------------------------------------
    def has_rule(self, stream: str) -> bool:
        """Whether this module knows `stream` (a stream added to the tap later may not be)."""
        try:
            self.partitions(stream)
        except ValueError:
            return False
        return True

    def bound(self, stream: str, *, incremental: bool = False) -> int:
        """Requests a perfect reader needs for `stream` (first sync, or nothing changed)."""
        parts = self.partitions(stream)
        if not incremental:
            return sum(p.requests for p in parts)
        if stream == "consumption":
            return 1
        if is_incremental(stream):
            return sum(p.requests if p.full else 1 for p in parts)
        return sum(p.requests for p in parts)

    def bounds(self, streams: Iterable[str], *, incremental: bool = False) -> dict[str, int]:
        """Bound per attribution group (`group_of`) of the selected streams."""
        found: dict[str, int] = {}
        for stream in filter(self.has_rule, streams):
            group = group_of(stream)
            found[group] = found.get(group, 0) + self.bound(stream, incremental=incremental)
        return found

    def partition_count(self, streams: Iterable[str]) -> int:
        return sum(len(self.partitions(s)) for s in streams if self.has_rule(s))


def _safe(text: str) -> str:
    """The tap's stream-name form of a database or collection name (`typed.safe_name`)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unnamed"
