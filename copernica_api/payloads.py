"""JSON bodies of the API: decoded once, and the rows of a list answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import requests

_PAYLOAD_ATTR = "_copernica_payload"


def payload_of(response: requests.Response, decode: Callable[[bytes], Any] | None = None) -> Any:
    """The JSON body of a response, decoded once (the first caller pays), with msgspec or
    with `decode`, a stream's own decoder (the profile streams': `ProfileRecords.decode`), which
    raises `msgspec.DecodeError` as msgspec does.

    Raises ValueError when the body is not complete JSON.
    """
    if not hasattr(response, _PAYLOAD_ATTR):
        try:
            payload = (decode or plain_json)(response.content)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None
        setattr(response, _PAYLOAD_ATTR, payload)
    return getattr(response, _PAYLOAD_ATTR)


def plain_json(content: bytes) -> Any:
    """A body as plain JSON (dictionaries and lists), decoded with msgspec; raises
    `msgspec.DecodeError` when it is not complete JSON."""
    return msgspec.json.decode(content)


def struct_decoder(page_type: Any) -> Callable[[bytes], Any | None]:
    """A decoder of bodies into `page_type`, msgspec structs made for one kind of page (the
    profile streams': `ProfileRecords`). It gives None for complete JSON that does not fit the
    type, and raises `msgspec.DecodeError` when the body is not complete JSON."""
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(page_type)

    def decode(content: bytes) -> Any | None:
        try:
            return decoder.decode(content)
        except msgspec.ValidationError:
            return None

    return decode


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
    """An ID or count as the API sends it (string, number, '' or null) as an integer; None
    for anything else, a fraction included (12.5 is no ID: `int` would make it 12)."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        return None
