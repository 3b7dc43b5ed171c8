"""Response and request-log value types shared by the app and the HTTP layer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

INVALID_TOKEN = "Invalid access token"
INVALID_METHOD = "Invalid method"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RequestLog:
    """One handled request. ``path`` has no query string; ``status`` is 0 for a reset."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    authorized: bool
    at: float


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, body, "application/json")


def error_response(message: str, status: int = 400) -> Response:
    return json_response({"error": {"message": message}}, status)


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> Response:
    return Response(status, text.encode(), content_type)


def empty_response(status: int, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, b"", None, headers)
