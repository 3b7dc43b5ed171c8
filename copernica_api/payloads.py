"""JSON bodies of the API: decoded once, and the rows of a list answer."""

from __future__ import annotations

from typing import Any

import msgspec
import requests

_PAYLOAD_ATTR = "_copernica_payload"


def payload_of(response: requests.Response) -> Any:
    """The JSON body of a response, decoded once (the first caller pays), with msgspec.

    Raises ValueError when the body is not complete JSON.
    """
    if not hasattr(response, _PAYLOAD_ATTR):
        try:
            payload = msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None
        setattr(response, _PAYLOAD_ATTR, payload)
    return getattr(response, _PAYLOAD_ATTR)


def rows_of(payload: Any) -> list[Any]:
    """Rows of a list answer: the `data` of the paging wrapper, or a bare JSON array.

    An object without a `data` list is one row (the answer of an object resource).
    """
    if isinstance(payload, dict):
        data = payload.get("data")
        return data if isinstance(data, list) else [payload]
    if isinstance(payload, list):
        return payload
    return []


def dict_rows(payload: Any) -> list[dict[str, Any]]:
    """The rows of a list answer that are objects (profiles, fields, events, ...)."""
    return [row for row in rows_of(payload) if isinstance(row, dict)]


def to_int(value: Any) -> int | None:
    """An ID or count as the API sends it (string, number, '' or null) as an integer."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
