"""The base stream: URL, JWT auth, response checks, retries with Retry-After, page decoding.

Every request of the tap goes through `CopernicaStream`; paging strategies live in
`paging.py` and only decide which query parameters the next page needs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
import requests
from singer_sdk import RESTStream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.streams.rest import PageContext

from tap_copernica.auth import bearer_of
from tap_copernica.errors import (
    CopernicaAPIError,
    JWTRejectedError,
    RetriesExhaustedError,
    TransientAPIError,
    api_error_message,
    describe_error,
    request_path,
)

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_copernica.auth import CopernicaAuthenticator
    from tap_copernica.tap import TapCopernica

_PAYLOAD_ATTR = "_copernica_payload"
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 60.0
_CONNECTION_ERRORS = (
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def payload_of(response: requests.Response) -> Any:
    """The JSON body of a response, decoded once (in `validate_response`), with msgspec.

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
    """Rows of a list answer: the `data` of the paging wrapper, or a bare JSON array."""
    if isinstance(payload, dict):
        data = payload.get("data")
        return data if isinstance(data, list) else [payload]
    if isinstance(payload, list):
        return payload
    return []


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if present."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER_SECONDS, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("Date")
    now = parsedate_to_datetime(date) if date else None
    if now is None:
        return None
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, (when - now).total_seconds()))


class CopernicaStream(RESTStream[Any]):
    """A Copernica REST v4 resource."""

    #: The tap that owns this stream (typed for the helpers it offers).
    _tap: TapCopernica

    @property
    def url_base(self) -> str:
        """The API base from `api_url`, e.g. https://api.copernica.com/v4."""
        return str(self.config.get("api_url", "https://api.copernica.com/v4")).rstrip("/")

    @property
    def authenticator(self) -> CopernicaAuthenticator:
        """The tap's single authenticator: one JWT per process, shared by every stream."""
        return self._tap.authenticator

    @property
    def http_headers(self) -> dict[str, str]:
        """Headers for every request (the SDK adds User-Agent, the authenticator the JWT)."""
        return {"Accept": "application/json"}

    @property
    def timeout(self) -> int:
        """Seconds to wait for a response (`request_timeout`)."""
        return int(self.config.get("request_timeout", 120))

    # -- requests outside the SDK's paging loop --------------------------------------------
    def fetch(self, context: Context | None, token: Any) -> requests.Response:
        """One request with the same URL, auth, retries and checks as the SDK's loop.

        For readers that plan several requests at once (see `prefetch.in_order`).
        """
        http = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=token)
        )
        prepared = self.build_prepared_request(
            method=http.method, url=http.url, params=http.encode_params(), headers=http.headers
        )
        return self._retrying_request(prepared, context)

    @cached_property
    def _retrying_request(self) -> Callable[..., requests.Response]:
        # The SDK's own paging loop wraps `_request` the same way.
        return self.request_decorator(self._request)

    # -- responses ------------------------------------------------------------------------
    def validate_response(self, response: requests.Response) -> None:
        """Sort a response into success, JWT renewal, transient or permanent failure."""
        status = response.status_code
        self._tap.progress.request(self.name, ok=status < 300)
        if status == 401 or (
            status == 400 and api_error_message(response).lower() == "invalid access token"
        ):
            self._handle_jwt_rejection(response)
        if status == 429 or status >= 500:
            reason = f"HTTP {status} {response.reason or ''}".strip()
            raise TransientAPIError(response, reason)
        if status >= 400:
            raise CopernicaAPIError(response)
        try:
            payload_of(response)
        except ValueError:
            # A 200 whose body is cut short (seen on very large pages): fetch it again.
            raise TransientAPIError(response, "response body is not complete JSON") from None

    def _handle_jwt_rejection(self, response: requests.Response) -> None:
        request = response.request
        if getattr(request, "_copernica_renewed", False):
            msg = (
                f"Copernica API refused a freshly issued JWT for {request_path(response)} "
                f"(HTTP {response.status_code}). The API token may lack access to REST v4 or "
                f"to this account: check `api_token`, and `api_url` against `auth_url`."
            )
            raise FatalAPIError(msg)
        setattr(request, "_copernica_renewed", True)  # noqa: B010 (a flag on requests' object)
        self.authenticator.invalidate(bearer_of(request))
        raise JWTRejectedError(response)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """Rows of a list page or the single object of an object resource."""
        for row in rows_of(payload_of(response)):
            if isinstance(row, dict):
                yield row

    # -- retries --------------------------------------------------------------------------
    def backoff_max_tries(self) -> int:
        """One try plus `max_retries` retries."""
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """Exponential waits, Retry-After when the API sends one, none for a JWT renewal."""
        initial = int(self.config.get("retry_initial_wait_ms", 2000)) / 1000
        attempt = 0
        exception = yield  # type: ignore[misc]  # primed by backoff with send(None)
        while True:
            attempt += 1
            exception = yield self._wait_seconds(exception, attempt, initial)

    @staticmethod
    def _wait_seconds(exception: Any, attempt: int, initial: float) -> float:
        if isinstance(exception, JWTRejectedError):
            return 0.0
        if isinstance(exception, RetriableAPIError):
            after = retry_after_seconds(exception.response)
            if after is not None:
                return after
        return float(min(MAX_BACKOFF_SECONDS, initial * 2 ** (attempt - 1)))

    def backoff_jitter(self, value: float) -> float:
        """±20 % jitter, so parallel runs spread out but a Retry-After stays close."""
        return value * random.uniform(0.8, 1.2)  # noqa: S311 (not for security)

    def backoff_handler(self, details: Any) -> None:
        """Log each retry at WARNING with the request path and the attempt number."""
        exc = details.get("exception")
        self._tap.progress.retry(self.name)
        if isinstance(exc, JWTRejectedError):
            self.logger.info("%s; retrying with a new JWT.", exc)
            return
        self.logger.warning(
            "Retrying %s (attempt %d of %d) in %.1f s after %s.",
            self._path_of(details),
            details.get("tries", 0) + 1,
            self.backoff_max_tries(),
            details.get("wait", 0.0),
            describe_error(exc),
        )

    def request_decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The SDK's backoff, plus one clear error once the retries are used up."""
        retrying = super().request_decorator(func)

        def call(prepared: requests.PreparedRequest, context: Context | None) -> Any:
            try:
                return retrying(prepared, context)
            except (RetriableAPIError, *_CONNECTION_ERRORS) as exc:
                path = urlsplit(prepared.url or "").path
                msg = (
                    f"Gave up on {prepared.method} {path} after {self.backoff_max_tries()} "
                    f"attempts; last failure: {describe_error(exc)}. Copernica may be overloaded "
                    f"or unreachable: rerun later (the run resumes from its last bookmark), "
                    f"or raise `max_retries`."
                )
                raise RetriesExhaustedError(msg) from None

        return call

    @staticmethod
    def _path_of(details: Any) -> str:
        args = details.get("args") or ()
        prepared = args[0] if args else None
        if isinstance(prepared, requests.PreparedRequest):
            return f"{prepared.method} {urlsplit(prepared.url or '').path}"
        return "request"
