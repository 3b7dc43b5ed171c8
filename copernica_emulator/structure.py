"""Selections and account settings: views, rules, conditions, miniviews, minirules,
unsubscribe behaviour, webhooks and consumption (`rest-get-database-views.md`,
`rest-get-view-rules.md`, `rest-get-collection-miniviews.md`, `rest-get-miniview-rules.md`,
`rest-get-database-unsubscribe.md`, `rest-get-consumption.md` and their neighbours).

GET only. Shapes follow the restv4 pages: views and miniviews as wrapped lists, rules with
their conditions embedded as a wrapped list (no GET endpoint for conditions exists in v4),
minirules keyed by a lowercase `id`, `inversed` (the JSON name) on rules, and an empty PHP
array (`[]`) as the `fields` of an unsubscribe behaviour that does not update anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .context import ApiContext, ApiRequest
from .messages import Response, json_response
from .model import ApiError
from .paging import page_from, wrapped
from .params import last
from .render import JSON, embedded, field_json
from .store import Store

NO_VIEW = "No view with supplied ID"
NO_RULE = "No rule with supplied ID"
NO_MINIVIEW = "No miniview with supplied ID"
NO_MINIRULE = "No minirule with supplied ID"
NO_WEBHOOK = "No webhook with supplied ID"
CONSUMPTION_DATES = "Parameters begin and end are required (YYYY-MM-DD)"
EMBEDDED_CONDITIONS_LIMIT = 100
#: Every condition type the restv4 pages list (rest-condition-type-*.md).
CONDITION_TYPES = (
    "Change",
    "Date",
    "DoubleField",
    "Email",
    "Export",
    "Fax",
    "Field",
    "Interest",
    "LastContact",
    "MiniView",
    "Sms",
    "ToDo",
    "Survey",
    "Part",
    "ReferView",
)
COUNTERS = ("emails", "texts", "fax", "webpages", "apicalls", "litmustests", "twofiftyoktests")


@dataclass
class Rule:
    id: int
    name: str
    owner_id: int  # view or miniview
    conditions: list[JSON]  # type-specific parameters, without ID/rule
    description: str = ""
    inversed: bool = False
    disabled: bool = False
    condition_ids: list[int] = field(default_factory=list)


@dataclass
class View:
    id: int
    name: str
    owner_id: int  # database (views) or collection (miniviews)
    parent_type: str
    parent_id: int
    last_built: str
    description: str = ""
    rule_ids: list[int] = field(default_factory=list)


@dataclass
class StructureData:
    views: dict[int, View] = field(default_factory=dict)
    rules: dict[int, Rule] = field(default_factory=dict)
    miniviews: dict[int, View] = field(default_factory=dict)
    minirules: dict[int, Rule] = field(default_factory=dict)
    database_unsubscribe: dict[int, JSON] = field(default_factory=dict)
    collection_unsubscribe: dict[int, JSON] = field(default_factory=dict)
    webhooks: dict[int, JSON] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    #: where miniview rules are served: the method page (`rest-get-miniview-rules.md`) says
    #: `rules`, the overview (`rest-api.md`) `minirules`; tests switch it to check the tap's
    #: fallback
    minirules_path: str = "rules"

    def next_id(self, kind: str) -> int:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind] * 7 + {"view": 4000, "rule": 2000, "cond": 9000}.get(kind, 0)


_DATA: weakref.WeakKeyDictionary[Store, StructureData] = weakref.WeakKeyDictionary()


def data_of(store: Store) -> StructureData:
    """The selections and settings of one emulated account (created empty on first use)."""
    with store.lock:
        if store not in _DATA:
            _DATA[store] = StructureData()
        return _DATA[store]


# ------------------------------------------------------------------------- mutation API
def add_view(store: Store, database: int | str, name: str, parent_view: int | None = None) -> int:
    """A view in `database`, top level or nested under `parent_view`."""
    data = data_of(store)
    db = store.database(database)
    view_id = data.next_id("view")
    data.views[view_id] = View(
        view_id,
        name,
        db.id,
        "view" if parent_view else "database",
        parent_view or db.id,
        store.now(),
        description=f"{name} ({db.name})",
    )
    return view_id


def add_miniview(store: Store, collection: int, name: str) -> int:
    data = data_of(store)
    col = store.collections[collection]
    view_id = data.next_id("view")
    data.miniviews[view_id] = View(view_id, name, col.id, "collection", col.id, store.now())
    return view_id


def add_rule(
    store: Store,
    view_id: int,
    name: str,
    conditions: list[JSON],
    *,
    mini: bool = False,
    inversed: bool = False,
    disabled: bool = False,
) -> int:
    """A rule (or minirule) with conditions: dicts with `type` and its parameters."""
    data = data_of(store)
    rule_id = data.next_id("rule")
    rule = Rule(rule_id, name, view_id, conditions, f"{name} rule", inversed, disabled)
    rule.condition_ids = [data.next_id("cond") for _ in conditions]
    (data.minirules if mini else data.rules)[rule_id] = rule
    (data.miniviews if mini else data.views)[view_id].rule_ids.append(rule_id)
    return rule_id


def set_unsubscribe(
    store: Store, kind: str, owner: int, behavior: str, fields: dict[str, str] | None = None
) -> None:
    data = data_of(store)
    table = data.database_unsubscribe if kind == "database" else data.collection_unsubscribe
    table[owner] = {"behavior": behavior, "fields": fields or []}  # PHP's empty array


def add_webhook(
    store: Store, webhook_id: int, handler: str, trigger: str, callers: list[str]
) -> None:
    data_of(store).webhooks[webhook_id] = {
        "ID": str(webhook_id),
        "handler": handler,
        "trigger": trigger,
        "callers": callers,
    }


def daily_consumption(day: dt.date) -> dict[str, int]:
    """Deterministic counters of one day (the same for every emulator)."""
    digest = hashlib.sha256(day.isoformat().encode()).digest()
    scale = (5000, 40, 3, 200, 20000, 2, 1)
    return {name: digest[i] * scale[i] // 255 for i, name in enumerate(COUNTERS)}


def consumption(begin: dt.date, end: dt.date) -> dict[str, int]:
    """Counters of the days `begin <= day < end` (the doc's example asks June as
    begin=06-01, end=07-01)."""
    totals = dict.fromkeys(COUNTERS, 0)
    day = begin
    while day < end:
        for name, value in daily_consumption(day).items():
            totals[name] += value
        day += dt.timedelta(days=1)
    return totals


# --------------------------------------------------------------------------- rendering
def view_json(data: StructureData, view: View) -> JSON:
    children = [
        v for v in data.views.values() if v.parent_type == "view" and v.parent_id == view.id
    ]
    referred = any(
        c.get("type") == "ReferView" and str(c.get("refer-view")) == str(view.id)
        for rule in data.rules.values()
        for c in rule.conditions
    )
    return {
        "ID": str(view.id),
        "name": view.name,
        "description": view.description,
        "parent-type": view.parent_type,
        "parent-id": str(view.parent_id),
        "has-children": bool(children),
        "has-referred": referred,
        "has-rules": bool(view.rule_ids),
        "database": str(view.owner_id),
        "last-built": view.last_built,
        "intentions": {"email": 1, "sms": None, "fax": None, "pdf": None},
    }


def miniview_json(view: View) -> JSON:
    return {
        "ID": str(view.id),
        "name": view.name,
        "description": view.description,
        "parent-type": view.parent_type,
        "parent-id": str(view.parent_id),
        "collection": str(view.owner_id),
        "last-built": view.last_built,
        "intentions": {"email": 1, "sms": None, "fax": None, "pdf": None},
    }


def conditions_json(rule: Rule) -> JSON:
    items = [
        {"ID": str(cid), "rule": str(rule.id), **params}
        for cid, params in zip(rule.condition_ids, rule.conditions, strict=True)
    ]
    return embedded(items, EMBEDDED_CONDITIONS_LIMIT)


def rule_json(rule: Rule) -> JSON:
    return {
        "ID": str(rule.id),
        "name": rule.name,
        "view": str(rule.owner_id),
        "conditions": conditions_json(rule),
        "inversed": rule.inversed,
        "disabled": rule.disabled,
    }


def minirule_json(rule: Rule) -> JSON:
    return {
        "id": str(rule.id),
        "name": rule.name,
        "description": rule.description,
        "view": str(rule.owner_id),
        "conditions": conditions_json(rule),
        "inversed": rule.inversed,
        "disabled": rule.disabled,
    }


# ------------------------------------------------------------------------------ routes
def route(req: ApiRequest, ctx: ApiContext) -> Response | None:
    """Answer a GET this module serves, or None to let the other routes decide."""
    if req.method != "GET" or not req.segments:
        return None
    store = ctx.store
    data = data_of(store)
    head, tail = req.segments[0], req.segments[1:]
    part = tail[1] if len(tail) > 1 else None
    if head == "consumption":
        return json_response(_consumption(req))
    if head == "database" and tail and part in ("views", "unsubscribe"):
        db = store.database(tail[0])
        if part == "unsubscribe":
            return json_response(data.database_unsubscribe.get(db.id, _NOTHING))
        top = [
            v for v in data.views.values() if v.owner_id == db.id and v.parent_type == "database"
        ]
        return _list(top, req, lambda v: view_json(data, v))
    if head == "collection" and tail and part in ("miniviews", "unsubscribe"):
        col = store.collection(tail[0])
        if part == "unsubscribe":
            return json_response(data.collection_unsubscribe.get(col.id, _NOTHING))
        return _list(
            [v for v in data.miniviews.values() if v.owner_id == col.id], req, miniview_json
        )
    if head == "view" and tail:
        return _view(req, data, _get(data.views, tail[0], NO_VIEW), tail[1:])
    if head == "rule" and len(tail) == 1:
        return json_response(rule_json(_get(data.rules, tail[0], NO_RULE)))
    if head == "miniview" and tail:
        return _miniview(req, data, _get(data.miniviews, tail[0], NO_MINIVIEW), tail[1:])
    if head == "minirule" and len(tail) == 1:
        return json_response(minirule_json(_get(data.minirules, tail[0], NO_MINIRULE)))
    if head == "webhook" and len(tail) == 1:
        return json_response(_get(data.webhooks, tail[0], NO_WEBHOOK))
    return None


_NOTHING: JSON = {"behavior": "nothing", "fields": []}


def _get(table: dict[int, Any], ref: str, message: str) -> Any:
    found = table.get(int(ref)) if ref.isdigit() else None
    if found is None:
        raise ApiError(message)
    return found


def _list(rows: list[Any], req: ApiRequest, render: Callable[[Any], Any]) -> Response:
    return json_response(wrapped(rows, page_from(req.query), render))


def _view(req: ApiRequest, data: StructureData, view: View, tail: list[str]) -> Response | None:
    if not tail:
        return json_response(view_json(data, view))
    if tail == ["views"]:
        nested = [
            v for v in data.views.values() if v.parent_type == "view" and v.parent_id == view.id
        ]
        return _list(nested, req, lambda v: view_json(data, v))
    rules = [data.rules[r] for r in view.rule_ids]
    if tail == ["rules"]:
        return _list(rules, req, rule_json)
    if len(tail) == 2 and tail[0] == "rule":
        rule = _get(data.rules, tail[1], NO_RULE)
        if rule.owner_id != view.id:
            raise ApiError(NO_RULE)
        return json_response(rule_json(rule))
    return None


def _miniview(req: ApiRequest, data: StructureData, view: View, tail: list[str]) -> Response | None:
    if not tail:
        return json_response(miniview_json(view))
    rules = [data.minirules[r] for r in view.rule_ids]
    if tail == [data.minirules_path]:
        return _list(rules, req, minirule_json)
    if len(tail) == 2 and tail[0] == "minirule":
        rule = _get(data.minirules, tail[1], NO_MINIRULE)
        if rule.owner_id != view.id:
            raise ApiError(NO_MINIRULE)
        return json_response(minirule_json(rule))
    return None


def _consumption(req: ApiRequest) -> JSON:
    try:
        begin = dt.date.fromisoformat(last(req.query, "begin") or "")
        end = dt.date.fromisoformat(last(req.query, "end") or "")
    except ValueError:
        raise ApiError(CONSUMPTION_DATES) from None
    return consumption(begin, end)


# -------------------------------------------------------------------------------- seed
def seed(store: Store) -> None:
    """Views with nested views and rules using every condition type, miniviews with
    minirules, unsubscribe settings for every database and collection, three webhooks."""
    customers = store.database("Customers")
    newsletter = store.database("Newsletter")
    legacy = store.database("Legacy")
    city = next(f for f in customers.fields if f.name == "city")
    segment = next(f for f in customers.fields if f.name == "segment")
    window = {"after-time": "2024-01-01 00:00:00", "before-mutation": '["minus","0","day","day"]'}

    orders, tickets = customers.collection_ids[0], customers.collection_ids[1]
    big = add_miniview(store, orders, "Big orders")
    active = add_view(store, customers.id, "Active customers")
    gold = add_view(store, customers.id, "Gold customers", parent_view=active)
    amsterdam = add_view(store, customers.id, "Gold in Amsterdam", parent_view=gold)
    dormant = add_view(store, customers.id, "Dormant customers")
    add_rule(
        store,
        active,
        "Recently changed",
        [
            {"type": "Change", "change-type": "edit", "field": False, "interest": False, **window},
            {"type": "Date", "field": "birthdate", "compare-mode": "ignoreyear", **window},
            {"type": "Export", "include-never-exported-profiles": True, **window},
        ],
    )
    mailing = {
        "match-mode": "match_profiles_that_received_something",
        "required-destination": "profile",
        "document": False,
        "template": False,
        "number": "1",
        "operator": ">",
    }
    add_rule(
        store,
        active,
        "Reached by a mailing",
        [
            {"type": "Email", "required-result": "anyclick", "clicked-url": False, **mailing},
            {"type": "Sms", **mailing, "after-time": "2024-06-01 00:00:00"},
            {"type": "Fax", **mailing},
        ],
        disabled=True,
    )
    add_rule(
        store,
        gold,
        "Gold segment",
        [
            {
                "type": "Field",
                "comparison": "equals",
                "field": field_json(segment),
                "value": "gold",
                "other-field": False,
                "numeric-comparison": False,
            },
            {
                "type": "Interest",
                "match-mode": "match_profiles_with_interest",
                "interest": "offers",
            },
            {"type": "DoubleField", "match-mode": "match_unique_profiles", "fields": "[email]"},
        ],
    )
    contact = {
        "match-type": "match_intelligent",
        "match-mode": "match_contacted_profiles",
        "contact-type": False,
        "min-closed": "1",
        "max-closed": "10",
        "user": False,
        "priority": "normal",
        "contains": "Bob",
    }
    add_rule(
        store,
        amsterdam,
        "Lives in Amsterdam",
        [
            {
                "type": "Field",
                "comparison": "equals",
                "field": field_json(city),
                "value": "Amsterdam",
                "other-field": False,
                "numeric-comparison": False,
            },
            {"type": "LastContact", **contact},
            {"type": "ToDo", **contact},
            {"type": "Survey", "submitter": "none", "survey-name": "Satisfaction"},
        ],
    )
    add_rule(
        store,
        amsterdam,
        "Not dormant",
        [
            {"type": "ReferView", "refer-view": str(dormant), "check-type": "no"},
            {"type": "Part", "begin": "0", "length": "50%", "fields": "email"},
            {
                "type": "MiniView",
                "mini-view": str(big),
                "min-subprofiles": "1",
                "max-subprofiles": "14",
            },
        ],
        inversed=True,
    )
    weekly = add_view(store, newsletter.id, "Weekly readers")
    add_rule(
        store,
        weekly,
        "Weekly interest",
        [{"type": "Interest", "match-mode": "match_profiles_with_interest", "interest": "weekly"}],
    )

    amount = next(f for f in store.collections[orders].fields if f.name == "amount")
    add_rule(
        store,
        big,
        "Amount over 100",
        [
            {
                "type": "Field",
                "comparison": "more",
                "field": field_json(amount),
                "value": "100",
                "other-field": False,
                "numeric-comparison": True,
            }
        ],
        mini=True,
    )
    open_tickets = add_miniview(store, tickets, "Open tickets")
    status = next(f for f in store.collections[tickets].fields if f.name == "status")
    add_rule(
        store,
        open_tickets,
        "Status open",
        [
            {
                "type": "Field",
                "comparison": "equals",
                "field": field_json(status),
                "value": "open",
                "other-field": False,
                "numeric-comparison": False,
            },
            {"type": "Change", "change-type": "editsubprofile", **window},
        ],
        mini=True,
    )
    add_miniview(store, tickets, "All tickets")  # no rules

    set_unsubscribe(store, "database", customers.id, "update", {"notes": "unsubscribed"})
    set_unsubscribe(store, "database", newsletter.id, "remove")
    set_unsubscribe(store, "database", legacy.id, "nothing")
    set_unsubscribe(store, "collection", orders, "nothing")
    set_unsubscribe(store, "collection", tickets, "update", {"status": "closed"})
    set_unsubscribe(store, "collection", legacy.collection_ids[0], "remove")

    add_webhook(store, 1, "https://hooks.example.com/copernica", "create", ["ms", "publisher"])
    add_webhook(store, 2, "https://hooks.example.com/updates", "update", ["ms"])
    add_webhook(store, 3, "https://hooks.example.com/removed", "delete", ["publisher"])
