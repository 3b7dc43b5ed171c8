"""Marketing Suite (`/ms/...`) and Publisher (`/publisher/...`) mailings, as the API serves them.

Seeded per product: emailings over several months, their destinations (linked to live
profiles), and the six kinds of event per destination, with bursts of events sharing one
second. Filters follow the documentation (`rest-get-ms-emailings.md`,
`rest-get-ms-deliveries.md` and their Publisher siblings): `fromdate`/`todate` on emailing lists,
`begintime`/`endtime` on Marketing Suite events (both taken as inclusive: the docs do not say,
so the harsher reading is emulated), `fields[]` on `timestamp` / `timestampsent` / `id` for
Publisher events and destinations. Lists come wrapped and paged with start/limit (cap 1000),
ordered by timestamp, then ID. Timestamps are local strings, IDs strings.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .clock import format_local
from .context import ApiContext, ApiRequest
from .filters import ORDERINGS, split_expression
from .messages import INVALID_METHOD, Response, json_response
from .model import ApiError
from .paging import page_from, wrapped
from .params import filter_expressions, is_true, last
from .store import Store

PRODUCTS = ("ms", "publisher")
EVENT_KINDS = ("deliveries", "impressions", "clicks", "errors", "unsubscribes", "abuses")
NO_EMAILING = "No emailing with supplied ID"
DAY = 86400
EXTENSION = "mailings"


@dataclass
class Emailing:
    id: int
    product: str
    timestamp: str
    subject: str
    template: int
    document: int


@dataclass
class Destination:
    id: int
    product: str
    emailing: int
    timestampsent: str
    profile: int
    subprofile: int | None
    hash: str

    @property
    def key(self) -> str:
        """The destination reference events carry (Publisher uses the hash)."""
        return str(self.id) if self.product == "ms" else self.hash


@dataclass
class Event:
    id: int
    product: str
    kind: str
    timestamp: str
    destination: Destination
    extra: dict[str, Any]


@dataclass
class MailingData:
    emailings: dict[str, list[Emailing]] = field(default_factory=dict)
    destinations: dict[str, list[Destination]] = field(default_factory=dict)
    events: dict[tuple[str, str], list[Event]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def next_id(self, kind: str) -> int:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]


def data_of(store: Store) -> MailingData:
    found = store.extensions.get(EXTENSION)
    if not isinstance(found, MailingData):
        found = MailingData()
        store.extensions[EXTENSION] = found
    return found


# ---------------------------------------------------------------------------------- seed
def _extra(kind: str, rng: random.Random, product: str) -> dict[str, Any]:
    if kind == "deliveries":
        if product == "ms":
            return {"attempts": rng.randint(1, 3)}
        return {"attempt": str(rng.randint(1, 3)), "smtp-response": "250 2.0.0 OK"}
    if kind == "impressions":
        return {"ip": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "useragent": "Mail/1.0"}
    if kind == "clicks":
        link = f"https://shop.example.com/p/{rng.randint(1, 40)}"
        extra: dict[str, Any] = {"link": link, "ip": "10.1.0.1", "useragent": "Mozilla/5.0"}
        if product == "publisher":
            extra |= {"link_id": str(rng.randint(1, 9)), "link_title": "Shop", "referer": None}
        return extra
    if kind == "errors":
        return {
            "errorcode": rng.choice(("550", "552", "421")),
            "description": "Mailbox unavailable",
            "errortype": rng.choice(("hard", "soft")),
        }
    if kind == "unsubscribes":
        return {"source": "link", "success": True}
    return {"report": {"feedback": "abuse"}} if product == "ms" else {"recognized_as": "spam"}


def _event(data: MailingData, product: str, kind: str, at: str, dest: Destination) -> Event:
    return Event(data.next_id(f"{product}:{kind}"), product, kind, at, dest, {})


def add_event(
    store: Store, product: str, kind: str, timestamp: str, *, emailing: int | None = None
) -> Event:
    """Append one event (tests use this for events arriving between runs)."""
    with store.lock:
        data = data_of(store)
        candidates = [
            d for d in data.destinations[product] if emailing is None or d.emailing == emailing
        ]
        dest = candidates[len(data.events[(product, kind)]) % len(candidates)]
        event = _event(data, product, kind, timestamp, dest)
        event.extra = _extra(kind, random.Random(event.id), product)
        data.events[(product, kind)].append(event)
        data.events[(product, kind)].sort(key=lambda e: (e.timestamp, e.id))
        return event


def remove_events(store: Store, product: str, kind: str, emailing: int, count: int) -> list[Event]:
    """Delete the `count` oldest events of one kind of one emailing (as a retention purge
    or a lost write would); their emailing's statistics no longer count them."""
    with store.lock:
        data = data_of(store)
        rows = data.events[(product, kind)]
        doomed = [e for e in rows if e.destination.emailing == emailing][:count]
        gone = {id(e) for e in doomed}
        data.events[(product, kind)] = [e for e in rows if id(e) not in gone]
        return doomed


def add_emailing(store: Store, product: str, timestamp: str, recipients: int = 5) -> Emailing:
    """Append one emailing with `recipients` destinations sent at `timestamp` (no events)."""
    with store.lock:
        data = data_of(store)
        emailing = Emailing(
            data.next_id(f"{product}:emailing"), product, timestamp, "New mailing", 1, 1
        )
        data.emailings[product].append(emailing)
        for profile in sorted(store.profile_rows)[:recipients]:
            dest_id = data.next_id(f"{product}:destination")
            data.destinations[product].append(
                Destination(
                    dest_id, product, emailing.id, timestamp, profile, None, f"{dest_id:032x}"
                )
            )
        return emailing


def seed(store: Store, *, seed: int, anchor: float) -> None:
    """Emailings over four months per product, destinations and thousands of events."""
    rng = random.Random(f"mailings:{seed}")
    data = data_of(store)
    profiles = sorted(store.profile_rows)
    if not profiles:
        return
    end = int(anchor) - 2 * 3600
    fmt: Callable[[int], str] = lambda epoch: format_local(epoch, store.tz)  # noqa: E731
    for product, emailings in (("ms", 8), ("publisher", 6)):
        data.emailings[product] = []
        data.destinations[product] = []
        for kind in EVENT_KINDS:
            data.events[(product, kind)] = []
        sent_times = sorted(rng.randint(end - 120 * DAY, end - 3 * DAY) for _ in range(emailings))
        # Two emailings sent in the same second (a split run).
        sent_times[2] = sent_times[1]
        for number, sent in enumerate(sent_times, start=1):
            emailing = Emailing(
                data.next_id(f"{product}:emailing"),
                product,
                fmt(sent),
                f"{product.upper()} mailing {number}",
                rng.randint(1, 5),
                rng.randint(1, 9),
            )
            data.emailings[product].append(emailing)
            recipients = rng.sample(profiles, min(len(profiles), rng.randint(40, 90)))
            for recipient in recipients:
                dest_id = data.next_id(f"{product}:destination")
                # Sending runs in batches: many destinations share a second.
                at = sent + rng.randint(0, 4)
                dest = Destination(
                    dest_id,
                    product,
                    emailing.id,
                    fmt(at),
                    recipient,
                    rng.choice((None, None, recipient * 10)),
                    f"{rng.getrandbits(128):032x}",
                )
                data.destinations[product].append(dest)
                _seed_events(data, rng, dest, at, fmt, end)
        for kind in EVENT_KINDS:
            data.events[(product, kind)].sort(key=lambda e: (e.timestamp, e.id))


def _seed_events(
    data: MailingData,
    rng: random.Random,
    dest: Destination,
    sent: int,
    fmt: Callable[[int], str],
    end: int,
) -> None:
    """A destination's events, none later than `end` (the seed's present)."""
    product = dest.product
    plan: list[tuple[str, int]] = []
    if rng.random() < 0.08:
        plan.append(("errors", sent + rng.randint(1, 30)))
    else:
        plan.append(("deliveries", sent + rng.randint(0, 3)))  # bursts on the same second
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            plan.append(("impressions", sent + rng.randint(60, 40 * DAY)))
        for _ in range(rng.choice((0, 0, 1, 2))):
            plan.append(("clicks", sent + rng.randint(120, 40 * DAY)))
        if rng.random() < 0.05:
            plan.append(("unsubscribes", sent + rng.randint(300, 20 * DAY)))
        if rng.random() < 0.02:
            plan.append(("abuses", sent + rng.randint(300, 10 * DAY)))
    for kind, at in plan:
        event = _event(data, product, kind, fmt(min(at, end)), dest)
        event.extra = _extra(kind, rng, product)
        data.events[(product, kind)].append(event)


# -------------------------------------------------------------------------------- render
def _sources() -> dict[str, Any]:
    return {"type": "database", "sources": [{"id": "1", "type": "database"}]}


def _sender() -> dict[str, str]:
    return {"name": "Webshop", "email": "news@shop.example.com"}


def _destinations_of(data: MailingData, emailing: Emailing) -> list[Destination]:
    return [d for d in data.destinations[emailing.product] if d.emailing == emailing.id]


def emailing_json(data: MailingData, e: Emailing) -> dict[str, Any]:
    count = len(_destinations_of(data, e))
    body: dict[str, Any] = {
        "id": str(e.id),
        "timestamp": e.timestamp,
        "template": str(e.template),
        "subject": e.subject,
        "from_address": _sender(),
        "type": "mass",
        "target": _sources(),
    }
    if e.product == "ms":
        return body | {"destinations": count}
    totals = {k: str(len(_events_of(data, e, k))) for k in ("clicks", "impressions", "errors")}
    return (
        body
        | totals
        | {
            "document": str(e.document),
            "description": "",
            "destinations": str(count),
            "testgroups": 0,
            "finalgroup": None,
            "unsubscribes": str(len(_events_of(data, e, "unsubscribes"))),
            "abuses": str(len(_events_of(data, e, "abuses"))),
            "contenttype": "html",
        }
    )


def destination_json(d: Destination) -> dict[str, Any]:
    body: dict[str, Any] = {
        "timestampsent": d.timestampsent,
        "profile": str(d.profile),
        "subprofile": None if d.subprofile is None else str(d.subprofile),
        "mailing": str(d.emailing),
    }
    if d.product == "ms":
        return {"ID": str(d.id), **body}
    return {"ID": d.hash, "internal": str(d.id), **body}


def event_json(event: Event, *, linked: bool) -> dict[str, Any]:
    dest = event.destination
    body: dict[str, Any] = {"ID": str(event.id), "timestamp": event.timestamp, **event.extra}
    body["destination"] = dest.key
    body["mailing" if event.product == "ms" else "emailing"] = str(dest.emailing)
    if linked:
        body["profile"] = dest.profile  # an integer, as in one of the docs' examples
        body["subprofile"] = None if dest.subprofile is None else str(dest.subprofile)
    return body


def _events_of(data: MailingData, e: Emailing, kind: str) -> list[Event]:
    return [
        x
        for x in data.events[(e.product, kind)]
        if x.destination.emailing == e.id and x.destination.product == e.product
    ]


def statistics_json(
    data: MailingData, e: Emailing, keep: Callable[[str], bool] = lambda _: True
) -> dict[str, Any]:
    """Counted from the events themselves, so they agree with the event lists; `keep`
    limits the period (`begintime`/`endtime`, inclusive like the event filters)."""

    def counts(kind: str, *, unique: bool = True) -> dict[str, int]:
        rows = [x for x in _events_of(data, e, kind) if keep(x.timestamp)]
        out = {"total": len(rows)}
        if unique:
            out["unique"] = len({x.destination.id for x in rows})
        return out

    return {
        "destinations": len(_destinations_of(data, e)),
        "deliveries": counts("deliveries", unique=False),
        "errors": counts("errors"),
        "impressions": counts("impressions"),
        "clicks": counts("clicks"),
        "unsubscribes": counts("unsubscribes"),
        "abuses": counts("abuses"),
        "retries": {"total": 0, "unique": 0},
        "unknown": {"total": 0},
        "dominant_results": {},
    }


def snapshot_json(e: Emailing) -> dict[str, Any]:
    body = {"name": e.subject, "from_address": "news@shop.example.com", "subject": e.subject}
    if e.product == "ms":
        return {"template": str(e.template), **body}
    return {"document": str(e.document), **body}


def scheduled_rows(product: str, store: Store) -> list[dict[str, Any]]:
    when = format_local(store.clock.epoch() + 7 * DAY, store.tz)
    before = format_local(store.clock.epoch() - 7 * DAY, store.tz)
    rows: list[dict[str, Any]] = []
    for n in range(1, 4):
        if product == "ms":
            rows.append(
                {
                    "id": str(n),
                    "start": before,
                    "rrule": "FREQ=WEEKLY",
                    "template": str(n),
                    "next": when,
                    "previous": before,
                    "subject": f"Weekly {n}",
                    "from_address": _sender(),
                    "type": "mass",
                    "target": _sources(),
                }
            )
        else:
            rows.append(
                {
                    "id": str(n),
                    "next": when,
                    "previous": before,
                    "interval": {"count": 1, "unit": "week"},
                    "iterations": "0",
                    "processed_iterations": str(n),
                    "scheduled_iterations": 0,
                    "document": n,
                    "template": str(n),
                    "subject": f"Digest {n}",
                    "from_address": _sender(),
                    "testgroups": 0,
                    "emailing_type": "mass",
                    "contenttype": "html",
                    "target": _sources(),
                }
            )
    return rows


def template_rows(product: str) -> list[dict[str, Any]]:
    if product == "ms":
        return [
            {
                "id": str(n),
                "name": f"Template {n}",
                "from_address": _sender(),
                "subject": f"Subject {n}",
                "type": "html",
                "archived": n == 5,
                "directory": "/",
            }
            for n in range(1, 6)
        ]
    return [{"id": str(n), "name": f"Layout {n}", "archived": n == 4} for n in range(1, 6)]


def document_rows(*, source: bool) -> list[dict[str, Any]]:
    rows = []
    for n in range(1, 10):
        row: dict[str, Any] = {
            "id": str(n),
            "template": str((n % 5) + 1),
            "name": f"Document {n}",
            "from_address": "news@shop.example.com",
            "subject": f"Document subject {n}",
            "archived": 1 if n == 9 else None,
        }
        if source:
            row["source"] = f"<html><body>Document {n}</body></html>"
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------- routes
def _list(rows: Sequence[Any], req: ApiRequest, render: Callable[[Any], Any]) -> Response:
    return json_response(wrapped(rows, page_from(req.query), render))


def _time_filter(req: ApiRequest, low: str, high: str) -> Callable[[str], bool]:
    begin, end = last(req.query, low), last(req.query, high)
    return lambda ts: (not begin or ts >= begin) and (not end or ts <= end)


def _fields_filter(
    req: ApiRequest, names: dict[str, Callable[[Any], Any]]
) -> Callable[[Any], bool]:
    tests: list[Callable[[Any], bool]] = []
    for expression in filter_expressions(req.query):
        parts = split_expression(expression)
        if parts is None:
            continue
        name, op, value = parts
        getter = names.get(name.lower())
        compare = ORDERINGS.get(op)
        if getter is None or compare is None:
            continue  # unknown names are silently ignored, like the API does
        tests.append(_condition(getter, compare, value, numeric=name.lower() == "id"))
    return lambda row: all(t(row) for t in tests)


def _condition(
    getter: Callable[[Any], Any],
    compare: Callable[[Any, Any], bool],
    value: str,
    *,
    numeric: bool,
) -> Callable[[Any], bool]:
    if numeric:
        return lambda row: compare(int(getter(row)), int(value or 0))
    return lambda row: compare(getter(row), value)


def _emailing(data: MailingData, product: str, ref: str) -> Emailing:
    for e in data.emailings.get(product, []):
        if str(e.id) == ref:
            return e
    raise ApiError(NO_EMAILING)


def _events(req: ApiRequest, events: list[Event], product: str, *, linked: bool) -> Response:
    if product == "ms":
        keep = _time_filter(req, "begintime", "endtime")
        rows = [e for e in events if keep(e.timestamp)]
    else:
        test = _fields_filter(req, {"timestamp": lambda e: e.timestamp, "id": lambda e: e.id})
        rows = [e for e in events if test(e)]
    return _list(rows, req, lambda e: event_json(e, linked=linked))


def route(req: ApiRequest, ctx: ApiContext) -> Response:
    """Answer a GET under /ms or /publisher."""
    product, tail = req.segments[0], req.segments[1:]
    if req.method != "GET" or not tail:
        raise ApiError(INVALID_METHOD)
    data = data_of(ctx.store)
    if not data.emailings:
        raise ApiError(INVALID_METHOD)
    part = tail[0]
    if part == "emailings":
        keep = _time_filter(req, "fromdate", "todate")
        rows = [e for e in data.emailings[product] if keep(e.timestamp)]
        return _list(rows, req, lambda e: emailing_json(data, e))
    if part in EVENT_KINDS and len(tail) == 1:
        return _events(req, data.events[(product, part)], product, linked=product != "ms")
    if part == "scheduledemailings":
        return _list(scheduled_rows(product, ctx.store), req, lambda r: r)
    if part == "templates":
        return _list(template_rows(product), req, lambda r: r)
    if part == "documents" and product == "publisher":
        source = is_true(last(req.query, "source") or "true")
        return _list(document_rows(source=source), req, lambda r: r)
    if part == "emailing" and len(tail) >= 2:
        return _emailing_part(req, data, _emailing(data, product, tail[1]), tail[2:])
    if part == "destination" and len(tail) == 3 and tail[2] in EVENT_KINDS:
        matches = [d for d in data.destinations[product] if str(d.key) == tail[1]]
        if not matches:
            raise ApiError("No destination with supplied ID")
        events = [e for e in data.events[(product, tail[2])] if e.destination is matches[0]]
        return _events(req, events, product, linked=True)
    raise ApiError(INVALID_METHOD)


def _emailing_part(
    req: ApiRequest, data: MailingData, emailing: Emailing, tail: list[str]
) -> Response:
    if not tail:
        return json_response(emailing_json(data, emailing))
    part = tail[0]
    if part == "statistics":
        keep = _time_filter(req, "begintime", "endtime")
        return json_response(statistics_json(data, emailing, keep))
    if part == "snapshot":
        return json_response(snapshot_json(emailing))
    if part == "destinations":
        test = _fields_filter(req, {"timestampsent": lambda d: d.timestampsent})
        rows = [d for d in _destinations_of(data, emailing) if test(d)]
        rows.sort(key=lambda d: (d.timestampsent, d.id))
        return _list(rows, req, destination_json)
    if part in EVENT_KINDS:
        return _events(req, _events_of(data, emailing, part), emailing.product, linked=True)
    raise ApiError(INVALID_METHOD)


__all__ = [
    "EVENT_KINDS",
    "PRODUCTS",
    "MailingData",
    "add_emailing",
    "add_event",
    "data_of",
    "remove_events",
    "route",
    "seed",
]
