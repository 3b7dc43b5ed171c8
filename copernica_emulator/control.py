"""The emulator's control endpoint, under ``/_emulator/`` (a path the REST API never uses).

Only for what the public REST API cannot do; everything else (deleting, changing and adding
profiles, adding fields) goes through the REST API, as a client would do it.

- ``GET /_emulator/status``: the emulator's clock and its databases with their live profile
  counts. No token needed; it changes nothing and tells a caller it talks to the emulator.
- ``POST /_emulator/events`` with a JSON body ``{"count": 50, "kind": "clicks",
  "product": "ms", "emailing": 3}`` (kind, product and emailing optional): that many events
  on existing emailings' destinations, stamped now. Needs a valid JWT (``Authorization:
  Bearer``), like the REST API. Answers 201 with the new events' IDs. An optional
  ``"timestamp": "YYYY-MM-DD hh:mm:ss"`` stamps them then instead (a late event).
- ``DELETE /_emulator/events`` with ``{"count": 3, "kind": "clicks", "product": "ms",
  "emailing": 2}``: deletes that emailing's oldest events of that kind (as Copernica's
  retention would), behind a client's back. Needs a JWT. Answers with the deleted IDs.
"""

from __future__ import annotations

import json
from typing import Any

from . import mailings
from .messages import Response, error_response, json_response
from .store import Store

PREFIX = "_emulator"
MAX_EVENTS = 100_000


def handle(
    method: str, segments: list[str], body: bytes, store: Store, *, authorized: bool
) -> Response:
    """Answer one request whose first path segment is ``_emulator``."""
    tail = segments[1:]
    if tail == ["status"] and method == "GET":
        with store.lock:
            return json_response(status(store))
    if tail == ["events"] and method in ("POST", "DELETE"):
        if not authorized:
            return error_response("Invalid access token", 401)
        try:
            request = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return error_response("The body must be a JSON object")
        if not isinstance(request, dict):
            return error_response("The body must be a JSON object")
        with store.lock:
            if method == "DELETE":
                return remove_events(store, request)
            return add_events(store, request)
    return error_response(f"No emulator control endpoint {method} /{'/'.join(segments)}", 404)


def status(store: Store) -> dict[str, Any]:
    data = mailings.data_of(store)
    return {
        "emulator": "copernica",
        "now": store.now(),
        "databases": [
            {"ID": db.id, "name": db.name, "profiles": len(db.live_ids)}
            for db in store.databases.values()
        ],
        "emailings": {product: len(rows) for product, rows in data.emailings.items()},
    }


EventRequest = tuple[int, str, str, int | None]


def event_request(request: dict[str, Any]) -> EventRequest | Response:
    """(count, kind, product, emailing) of an events control request, or the error."""
    count, kind = request.get("count", 1), request.get("kind", "clicks")
    product, emailing = request.get("product", "ms"), request.get("emailing")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_EVENTS:
        return error_response(f"count must be an integer from 1 to {MAX_EVENTS}")
    if kind not in mailings.EVENT_KINDS:
        return error_response(f"kind must be one of {', '.join(mailings.EVENT_KINDS)}")
    if product not in mailings.PRODUCTS:
        return error_response(f"product must be one of {', '.join(mailings.PRODUCTS)}")
    if emailing is not None and (not isinstance(emailing, int) or isinstance(emailing, bool)):
        return error_response("emailing must be an integer ID")
    return count, kind, product, emailing


def add_events(store: Store, request: dict[str, Any]) -> Response:
    parsed = event_request(request)
    if isinstance(parsed, Response):
        return parsed
    count, kind, product, emailing = parsed
    data = mailings.data_of(store)
    usable = {d.emailing for d in data.destinations.get(product, [])}
    if emailing is not None and emailing not in usable:
        known = ", ".join(str(e) for e in sorted(usable)) or "none"
        return error_response(
            f"No {product} emailing {emailing} with destinations (emailings: {known})"
        )
    if not usable:
        return error_response(f"No {product} emailing has destinations to add events to")
    timestamp = request.get("timestamp", store.now())
    if not isinstance(timestamp, str) or len(timestamp) != len("YYYY-MM-DD hh:mm:ss"):
        return error_response("timestamp must be a string YYYY-MM-DD hh:mm:ss")
    events = [
        mailings.add_event(store, product, kind, timestamp, emailing=emailing) for _ in range(count)
    ]
    return json_response(
        {
            "product": product,
            "kind": kind,
            "timestamp": timestamp,
            "ids": [event.id for event in events],
            "emailings": sorted({event.destination.emailing for event in events}),
        },
        201,
    )


def remove_events(store: Store, request: dict[str, Any]) -> Response:
    parsed = event_request(request)
    if isinstance(parsed, Response):
        return parsed
    count, kind, product, emailing = parsed
    if emailing is None:
        return error_response("emailing is required: whose events to delete")
    gone = mailings.remove_events(store, product, kind, emailing, count)
    return json_response(
        {"product": product, "kind": kind, "emailing": emailing, "ids": [e.id for e in gone]}
    )
