"""Errors a user acts on: each message names the problem, where it happened and what to do."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

# What to do about the API's own error messages (`{"error": {"message": ...}}`).
_HINTS = {
    "no database with supplied id": "The database may have been removed; check the "
    "settings that name it.",
    "no collection with given id": "The collection may have been removed; rerun to rediscover.",
    "invalid method": "This API host or account does not offer this resource (if every "
    "stream fails, check `api_url`: …/v4).",
    "invalid access token": "The JWT was refused twice in a row; check `api_token`.",
}


def api_error_message(response: requests.Response) -> str:
    """The API's own error text from `{"error": {"message": ...}}`, else a short body excerpt."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return ""


def describe_error(exc: BaseException | None) -> str:
    """A short, secret-free description of a failure for logs and messages."""
    if isinstance(exc, TransientAPIError):
        return exc.reason
    if exc is None:
        return "an unknown error"
    if isinstance(exc, requests.RequestException):
        # The text of requests' errors can repeat the URL and more; the class name is enough.
        return type(exc).__name__
    return str(exc) or type(exc).__name__


def request_path(response: requests.Response) -> str:
    """Method and path of the request behind a response (query left out: it can hold PII)."""
    request = response.request
    path = urlsplit(request.url or "").path if request is not None else "?"
    method = request.method if request is not None else "GET"
    return f"{method} {path}"


class CopernicaAPIError(FatalAPIError):
    """The API answered with a permanent error (4xx other than 401/429)."""

    def __init__(self, response: requests.Response) -> None:
        api_message = api_error_message(response)
        hint = _HINTS.get(api_message.strip().lower(), "")
        message = (
            f"Copernica API refused {request_path(response)} with HTTP {response.status_code}"
            + (f": {api_message}" if api_message else "")
            + (f". {hint}" if hint else ".")
        )
        super().__init__(message)
        self.status_code = response.status_code
        self.api_message = api_message


class TransientAPIError(RetriableAPIError):
    """5xx, 429, or a body that is not complete JSON: worth retrying."""

    def __init__(self, response: requests.Response, reason: str) -> None:
        super().__init__(f"{request_path(response)}: {reason}", response)
        self.reason = reason


class JWTRejectedError(RetriableAPIError):
    """The API said the JWT is not valid (401, or 400 'Invalid access token' on old versions)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"{request_path(response)}: JWT rejected, renewing it", response)


class RetriesExhaustedError(FatalAPIError):
    """A transient failure that outlasted every retry."""


class TLSVerificationError(FatalAPIError):
    """The server's certificate did not verify: no retry can fix that."""


class CopernicaPagingError(FatalAPIError):
    """The API answered a keyset page in a way that would make paging inexact."""

    def __init__(self, stream: str, detail: str) -> None:
        super().__init__(
            f"Stream '{stream}': {detail}. Stopping rather than risk missing records; "
            f"please report this with the API host you use (`api_url`)."
        )
