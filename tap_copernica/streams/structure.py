"""Selections (views, miniviews, rules, conditions), unsubscribe behaviour, webhooks and
consumption.

`STRUCTURE_SPECS` is registered in `tap.py`. The kinds of resource here, on top of the
bases in `base.py`:

- `ViewsStream`: every view of a database. `/database/{id}/views` lists only the top level,
  so views with `has-children` are read on through `/view/{id}/views` (parents first).
- `RulesStream` / `ConditionsStream`: v4 has no GET for conditions; a rule carries them as an
  embedded wrapped list. The rule stream takes them out of its record and hands them to its
  conditions child, which emits one record per condition: `type` as a column, everything
  else type-specific in `parameters`.
- `UnsubscribeStream`: the one settings object of a database or collection.
- `WebhooksStream`: v4 reads webhooks by ID only (no list), so the IDs come from the
  `webhook_ids` setting.
- `ConsumptionStream`: `GET /consumption` requires `begin` and `end`; one record per
  calendar month, incremental on `begin` (the bookmarked month is read again, since the
  current month keeps counting).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from copernica_api.errors import CopernicaAPIError
from copernica_api.payloads import to_int
from copernica_api.timeutil import api_to_datetime, parse_instant
from tap_copernica.prefetch import in_order
from tap_copernica.settings import PRODUCTS
from tap_copernica.streams.base import (
    ListStream,
    ObjectStream,
    OneObjectStream,
    RecordShape,
    StreamSpec,
)

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

_SELECTION_SHAPE = RecordShape(("ID", "parent-id"), ("last-built",))
_RULE_SHAPE = RecordShape(("ID",), drop=("view",))


class ViewsStream(ListStream):
    """All views of a database: the top level, then each view's nested views."""

    def get_url(self, context: Context | None) -> str:
        """`/view/{id}/views` while reading nested views, else the database's list."""
        if context and "parent_view_id" in context:
            return f"{self.url_base}/view/{int(context['parent_view_id'])}/views"
        return super().get_url(context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Each view once, a parent before its children."""
        assert context is not None
        seen: set[int] = set()
        pending: list[dict[str, Any]] = [dict(context)]
        with self.pages_ahead(context):
            while pending:
                rows = list(self.request_records(pending.pop()))
                nested: list[dict[str, Any]] = []
                for row in rows:
                    view_id = to_int(row.get("ID"))
                    if view_id is None or view_id in seen:
                        continue  # a view tree has no cycles; never loop if the API says so
                    seen.add(view_id)
                    yield row
                    if row.get("has-children") is True:
                        nested.append({**context, "parent_view_id": view_id})
                pending.extend(reversed(nested))

    def page_read(self, rows: list[dict[str, Any]]) -> None:
        """Tell the rules stream which views have no rules (the API says so: no request
        for them); read ahead the rules and the nested views of this page's views."""
        for child in self.child_streams:
            if isinstance(child, RulesStream):
                child.told_empty.update(
                    int(row["ID"])
                    for row in rows
                    if row.get("has-rules") is False and to_int(row.get("ID")) is not None
                )
        plans = self.page_plans()
        if plans is None or not rows:
            return
        stack, context = plans
        # One plan: the rules of each view (as its record goes out), then the nested views.
        entries = self.children_ahead(rows, context)
        entries += [
            self.ahead(ctx, self.get_url_params(ctx, {"start": 0}))
            for ctx in (
                {**(context or {}), "parent_view_id": to_int(row.get("ID"))}
                for row in rows
                if row.get("has-children") is True and to_int(row.get("ID")) is not None
            )
        ]
        stack.enter_context(self.services.read_ahead.plan(entries))


class ConditionsStream(ObjectStream):
    """The conditions of one rule, taken from the rule record by its parent stream."""

    spec: ConditionsSpec

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: dict[int, list[dict[str, Any]]] = {}

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The conditions the parent handed over for this rule."""
        assert context is not None
        yield from self.pending.pop(int(context[self.spec.rule_key]), [])

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """`ID` and `type` as columns, the type-specific rest as `parameters`."""
        parameters = {k: v for k, v in row.items() if k not in ("ID", "id", "type", "rule")}
        record = {
            "ID": row.get("ID", row.get("id")),
            "type": row.get("type"),
            "parameters": parameters,
        }
        return super().post_process(record, context)


class RulesStream(ListStream):
    """Rules of a view (or miniview); their embedded conditions go to the child stream."""

    spec: RulesSpec

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: views whose record says they have no rules (`has-rules` false): not asked
        self.told_empty: set[int] = set()

    def _told_empty(self, context: Context | None) -> bool:
        view_id = to_int((context or {}).get("view_id"))
        return view_id is not None and view_id in self.told_empty

    def first_request(self, context: Context | None) -> dict[str, Any] | None:
        """The first page, unless the view has no rules."""
        return None if self._told_empty(context) else super().first_request(context)

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The rules; once, on "Invalid method", from `fallback_path` instead. None for a
        view whose record says it has none."""
        if self._told_empty(context):
            return
        try:
            yield from super().get_records(context)
        except CopernicaAPIError as exc:
            alternative = self.spec.fallback_path
            invalid = exc.api_message.strip().lower() == "invalid method"
            if alternative is None or self.path == alternative or not invalid:
                raise
            self.logger.info("%s: %s; reading %s instead.", self.name, exc, alternative)
            self.path = alternative  # for the rest of the run
            yield from super().get_records(context)

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """Normalise the rule; hand its conditions to the conditions stream."""
        conditions = row.pop("conditions", None)
        # The JSON name is `inversed`; the documentation's text calls it `inverted`.
        if "inversed" not in row and "inverted" in row:
            row["inversed"] = row.pop("inverted")
        record = super().post_process(row, context)
        if record is None or record.get("ID") is None:
            return record
        for child in self.child_streams:
            if isinstance(child, ConditionsStream) and child.selected:
                child.pending[int(record["ID"])] = self._condition_rows(record["ID"], conditions)
        return record

    def _condition_rows(self, rule_id: int, conditions: Any) -> list[dict[str, Any]]:
        """Rows of the embedded wrapper (or a bare list); warns when it was cut short."""
        if isinstance(conditions, dict):
            rows = conditions.get("data") or []
            total, count = to_int(conditions.get("total")), len(rows)
            if total is not None and count < total:
                self.logger.warning(
                    "%s %s: the API embedded %s of its %s conditions and has no endpoint "
                    "to read the rest; only those %s are emitted.",
                    self.name,
                    rule_id,
                    count,
                    total,
                    count,
                )
        else:
            rows = conditions if isinstance(conditions, list) else []
        return [r for r in rows if isinstance(r, dict)]


class UnsubscribeStream(OneObjectStream):
    """The unsubscribe behaviour of one database or collection."""

    def post_process(
        self, row: dict[str, Any], context: Context | None = None
    ) -> dict[str, Any] | None:
        """`fields` as an object always (an empty PHP array arrives as `[]`)."""
        if not isinstance(row.get("fields"), dict):
            row["fields"] = {}
        return super().post_process(row, context)


class WebhooksStream(ObjectStream):
    """The webhooks named by `webhook_ids` (v4 has no list of webhooks)."""

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Each configured webhook; one that no longer exists is skipped with a warning."""
        for webhook_id in self.settings.webhook_ids:
            try:
                yield from self.request_records({"webhook_id": webhook_id})
            except CopernicaAPIError as exc:
                if exc.status_code not in (400, 404):
                    raise
                self.logger.warning("webhooks: skipping webhook %s: %s", webhook_id, exc)


#: First run without `consumption_start_date`: this many months before the current one.
CONSUMPTION_DEFAULT_MONTHS = 12
#: Asked to start more months back than this, consumption first looks up the account's
#: earliest activity (reading it costs about as many requests as it can save below this).
FLOOR_WORTH_MONTHS = 3


class ConsumptionStream(ObjectStream):
    """Account consumption per calendar month, incremental on the month's first day.

    The first month: the bookmark's (read again, it may have been the current one); on a
    first run `consumption_start_date`, else `start_date`, else the same month a year ago,
    but never a month before the account can have used anything. That is the month of its
    earliest activity the API shows: the oldest database's `created` or the first emailing
    of either product (consulted only when it can save requests, i.e. more than
    `FLOOR_WORTH_MONTHS` months are asked for; the lists it reads are shared with the other
    streams). Usage before the first database or emailing still listed (API calls of an
    empty account, deleted databases) is not read.
    """

    replication_key = "begin"
    is_sorted = True

    def get_url_params(self, context: Context | None, next_page_token: Any) -> dict[str, Any]:
        """The required period: `begin` (first day) and `end` (first day of the next)."""
        assert context is not None
        return {"begin": context["begin"], "end": context["end"]}

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """One record per month from the bookmark (or the start) up to the current one.

        Each month is one request of its own: they are sent side by side (up to
        `max_parallel_requests`), and their records still go out in month order, so the
        bookmark only ever moves past months already written.
        """
        today = dt.datetime.now(self.settings.tz).date()
        periods = [
            {"begin": begin.isoformat(), "end": end.isoformat()}
            for begin, end in months(self._first_month(context, today), today)
        ]
        calls = [partial(self.fetch, period, None) for period in periods]
        responses = in_order(calls, self.settings.max_parallel_requests)
        for period, response in zip(periods, responses, strict=True):
            complete = dt.date.fromisoformat(period["end"]) <= today
            for row in self.parse_response(response):
                yield {**row, **period, "complete": complete}

    def _first_month(self, context: Context | None, today: dt.date) -> dt.date:
        state = self.get_context_state(context)
        bookmark = state.get("replication_key_value")
        if bookmark and state.get("replication_key") == self.replication_key:
            # the bookmarked month is read again: it may have been the current one
            return month_start(dt.date.fromisoformat(str(bookmark)[:10]))
        configured = self.settings.consumption_start_date or self.settings.start_date
        if configured:
            first = month_start(parse_instant(configured, self.settings.tz).date())
        else:
            first = add_months(month_start(today), -CONSUMPTION_DEFAULT_MONTHS)
        if first >= add_months(month_start(today), -FLOOR_WORTH_MONTHS):
            return first
        activity = self._first_activity()
        return first if activity is None else max(first, month_start(activity))

    def _first_activity(self) -> dt.date | None:
        """The earliest database creation or emailing the API lists (None: neither)."""
        tz = self.settings.tz
        days: list[dt.date] = []
        for db in self.account.databases():
            try:
                created = api_to_datetime(str(db.get("created") or ""), tz)
            except ValueError:
                created = None
            if created is not None:
                days.append(created.date())
        for product in PRODUCTS:
            try:
                sent = self.account.first_emailing_time(product)
            except CopernicaAPIError as exc:  # a product the account does not have
                self.logger.info("consumption: no %s emailings to date from: %s", product, exc)
                continue
            if sent is not None:
                days.append(sent.date())
        return min(days, default=None)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(first: dt.date, count: int) -> dt.date:
    index = first.year * 12 + first.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def months(first: dt.date, today: dt.date) -> Iterable[tuple[dt.date, dt.date]]:
    """(first day, first day of the next month) from `first`'s month to today's."""
    begin = month_start(first)
    while begin <= today:
        end = add_months(begin, 1)
        yield begin, end
        begin = end


@dataclasses.dataclass(frozen=True, kw_only=True)
class RulesSpec(StreamSpec):
    """Rules of a view or miniview."""

    base: type[ObjectStream] = RulesStream
    #: the other path the documentation names for the same rules, tried once when the API
    #: answers "Invalid method" (it names both `/miniview/{id}/rules` and
    #: `/miniview/{id}/minirules`)
    fallback_path: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConditionsSpec(StreamSpec):
    """The conditions embedded in the rules of a parent rules stream."""

    base: type[ObjectStream] = ConditionsStream
    #: context key of the owning rule (`rule_id` or `minirule_id`)
    rule_key: str


_CONSUMPTION_COUNTERS = (
    "emails",
    "texts",
    "fax",
    "webpages",
    "apicalls",
    "litmustests",
    "twofiftyoktests",
)

STRUCTURE_SPECS: tuple[StreamSpec, ...] = (
    StreamSpec(
        "views",
        "/database/{database_id}/views",
        ViewsStream,
        parent="databases",
        shape=RecordShape(("ID", "parent-id"), ("last-built",), ("database",)),
        child_keys={"database_id": "database_id", "view_id": "ID"},
    ),
    RulesSpec(
        "view_rules",
        "/view/{view_id}/rules",
        parent="views",
        shape=_RULE_SHAPE,
        child_keys={"database_id": "database_id", "view_id": "view_id", "rule_id": "ID"},
    ),
    ConditionsSpec(
        "rule_conditions",
        "/rule/{rule_id}",  # not requested: the conditions come embedded in the rule
        parent="view_rules",
        shape=RecordShape(("ID",)),
        rule_key="rule_id",
    ),
    StreamSpec(
        "miniviews",
        "/collection/{collection_id}/miniviews",
        ListStream,
        parent="collections",
        shape=RecordShape(("ID", "parent-id"), ("last-built",), ("collection",)),
        child_keys={
            "database_id": "database_id",
            "collection_id": "collection_id",
            "miniview_id": "ID",
        },
    ),
    RulesSpec(
        "minirules",
        "/miniview/{miniview_id}/rules",
        parent="miniviews",
        shape=_RULE_SHAPE,
        child_keys={
            "database_id": "database_id",
            "collection_id": "collection_id",
            "miniview_id": "miniview_id",
            "minirule_id": "ID",
        },
        fallback_path="/miniview/{miniview_id}/minirules",
    ),
    ConditionsSpec(
        "miniconditions",
        "/minirule/{minirule_id}",  # not requested: embedded in the minirule
        parent="minirules",
        shape=RecordShape(("ID",)),
        rule_key="minirule_id",
    ),
    StreamSpec(
        "database_unsubscribe",
        "/database/{database_id}/unsubscribe",
        UnsubscribeStream,
        keys=("database_id",),
        parent="databases",
    ),
    StreamSpec(
        "collection_unsubscribe",
        "/collection/{collection_id}/unsubscribe",
        UnsubscribeStream,
        keys=("collection_id",),
        parent="collections",
    ),
    StreamSpec(
        "webhooks",
        "/webhook/{webhook_id}",
        WebhooksStream,
        shape=RecordShape(("ID",)),
    ),
    StreamSpec(
        "consumption",
        "/consumption",
        ConsumptionStream,
        keys=("begin",),
        shape=RecordShape(integers=_CONSUMPTION_COUNTERS),
        # Months start no earlier than the first emailing of either product.
        emailing_lists=PRODUCTS,
    ),
)
