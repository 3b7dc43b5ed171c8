"""HTTP with the Copernica API, shared by the tap and the target: one policy for every request.

- `check_response` sorts an answer into success, JWT rejection (renew once, retry at once),
  transient failure (429, 5xx, a body that is not complete JSON) or permanent failure (any
  other 4xx, with the API's own message and the request path).
- `RetryPolicy` decides how long to wait before the next try: exponential backoff with
  jitter, the server's Retry-After when it sends one, nothing after a JWT renewal.
- `CopernicaSession` sends one request under that policy (the target's requests); the tap's
  streams use the same check and policy through the SDK's own retry loop
  (`tap_copernica.client`).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import backoff
import msgspec
import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from copernica_api.auth import CopernicaAuthenticator, bearer_of
from copernica_api.errors import (
    CopernicaAPIError,
    JWTRejectedError,
    RetriesExhaustedError,
    TransientAPIError,
    api_error_message,
    describe_error,
    request_path,
)
from copernica_api.payloads import payload_of
from copernica_api.tls import fail_fast_on_tls, trust_environment

_RENEWED_ATTR = "_copernica_renewed"
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_BACKOFF_SECONDS = 60.0
#: Failures below HTTP: the request may not have reached the API, or its answer was lost.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: Everything worth another try.
RETRIABLE: tuple[type[Exception], ...] = (RetriableAPIError, *CONNECTION_ERRORS)

logger = logging.getLogger("copernica.http")


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


def is_jwt_rejection(response: requests.Response) -> bool:
    """401, or the 400 'Invalid access token' older API versions answer."""
    status = response.status_code
    return status == 401 or (
        status == 400 and api_error_message(response).lower() == "invalid access token"
    )


def check_response(
    response: requests.Response,
    authenticator: CopernicaAuthenticator,
    *,
    expect_json: bool = True,
    decode: Callable[[bytes], Any] | None = None,
) -> None:
    """Sort a response into success, JWT renewal, transient or permanent failure.

    Writes answer 201/204 without a body, 303 with `Location`, 200 with `X-deleted`: with
    `expect_json=False` any 2xx or 303 is a success and the body is not read. A JSON body is
    decoded here (with `decode`, the stream's own decoder, when given: see `payload_of`).
    """
    check_status(response, authenticator, expect_json=expect_json)
    if expect_json:
        check_json_body(response, decode)


def check_status(
    response: requests.Response,
    authenticator: CopernicaAuthenticator,
    *,
    expect_json: bool = True,
) -> None:
    """`check_response` without reading the body (the tap decodes a body once its request
    has given back its slot: `check_json_body`)."""
    status = response.status_code
    if is_jwt_rejection(response):
        _jwt_rejected(response, authenticator)
    if status == 429 or status >= 500:
        reason = f"HTTP {status} {response.reason or ''}".strip()
        raise TransientAPIError(response, reason)
    if not expect_json and (200 <= status < 300 or status == 303):
        return
    if status >= 300:
        raise CopernicaAPIError(response)


def check_json_body(
    response: requests.Response, decode: Callable[[bytes], Any] | None = None
) -> None:
    """Decode the JSON body of a successful response (`payload_of`); one cut short is a
    transient failure, fetched again."""
    try:
        payload_of(response, decode)
    except ValueError:
        # A 200 whose body is cut short (seen on very large pages): fetch it again.
        raise TransientAPIError(response, "response body is not complete JSON") from None


def _jwt_rejected(response: requests.Response, authenticator: CopernicaAuthenticator) -> None:
    request = response.request
    if getattr(request, _RENEWED_ATTR, False):
        msg = (
            f"Copernica API refused a freshly issued JWT for {request_path(response)} "
            f"(HTTP {response.status_code}). The API token may lack access to REST v4 or "
            f"to this account: check `api_token`, and `api_url` against `auth_url`."
        )
        raise FatalAPIError(msg)
    setattr(request, _RENEWED_ATTR, True)
    authenticator.invalidate(bearer_of(request))
    raise JWTRejectedError(response)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (settings `max_retries`, `retry_initial_wait_ms`)."""

    max_tries: int = 9
    initial_wait: float = 2.0

    def wait_seconds(self, exception: BaseException | None, attempt: int) -> float:
        """Seconds before try `attempt + 1`: none after a JWT renewal, else Retry-After or
        exponential backoff."""
        if isinstance(exception, JWTRejectedError):
            return 0.0
        if isinstance(exception, RetriableAPIError):
            after = retry_after_seconds(exception.response)
            if after is not None:
                return after
        return float(min(MAX_BACKOFF_SECONDS, self.initial_wait * 2 ** (attempt - 1)))

    def wait_generator(self) -> Generator[float, Any, None]:
        """For `backoff.on_exception`: it sends each failure in and takes the wait out."""
        attempt = 0
        exception = yield  # type: ignore[misc]  # primed by backoff with send(None)
        while True:
            attempt += 1
            exception = yield self.wait_seconds(exception, attempt)

    @staticmethod
    def jitter(value: float) -> float:
        """±20 % jitter, so parallel clients spread out but a Retry-After stays close."""
        return value * random.uniform(0.8, 1.2)  # noqa: S311 (not for security)

    def exhausted(self, method: str, url: str, exc: BaseException) -> RetriesExhaustedError:
        """The clear error once every retry is used up."""
        msg = (
            f"Gave up on {method} {urlsplit(url).path} after {self.max_tries} attempts; "
            f"last failure: {describe_error(exc)}. Copernica may be overloaded or "
            f"unreachable: rerun later (the run resumes from its last bookmark), or raise "
            f"`max_retries`."
        )
        return RetriesExhaustedError(msg)


def retry_log_line(method: str, url: str, details: Mapping[str, Any], max_tries: int) -> str:
    """The WARNING logged before a retry (path only: a query can hold personal data)."""
    return (
        f"Retrying {method} {urlsplit(url).path} (attempt {details.get('tries', 0) + 1} of "
        f"{max_tries}) in {details.get('wait', 0.0):.1f} s after "
        f"{describe_error(details.get('exception'))}."
    )


Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]]


class CopernicaSession:
    """Requests to the API under the shared check and retry policy (thread-safe)."""

    def __init__(
        self,
        *,
        api_url: str,
        authenticator: CopernicaAuthenticator,
        policy: RetryPolicy,
        timeout: float,
        user_agent: str,
        on_retry: Callable[[], None] | None = None,
        pool_size: int = 10,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.authenticator = authenticator
        self.policy = policy
        self.timeout = timeout
        self._on_retry = on_retry
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        self.retries = 0
        self._session = trust_environment(requests.Session())
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Accept": "application/json", "User-Agent": user_agent})

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        expect_json: bool | None = None,
        before_retry: Callable[[BaseException], bool] | None = None,
    ) -> requests.Response:
        """Send one request, retrying transient failures; raise on a permanent one.

        `before_retry(exc)` runs after the wait, before each resend after a transient
        failure, and may return False to stop with `RetryStopped` (the target uses it to
        check whether an insert whose answer was lost did land).
        """
        url = f"{self.api_url}/{path.lstrip('/')}"
        want_json = method == "GET" if expect_json is None else expect_json
        request = requests.Request(
            method,
            url,
            params=params,
            data=msgspec.json.encode(body) if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
        )
        prepared = self._session.prepare_request(request)

        tries: list[BaseException | None] = []

        def send() -> requests.Response:
            previous = tries[-1] if tries else None
            # After the wait, before sending again: has the lost request landed after all?
            if (
                before_retry is not None
                and previous is not None
                and not isinstance(previous, JWTRejectedError)
                and not before_retry(previous)
            ):
                raise RetryStopped(describe_error(previous))
            with self._count_lock:
                self.requests_sent += 1
            self.authenticator.authenticate_request(prepared)
            try:
                response = self._session.send(prepared, timeout=self.timeout, allow_redirects=False)
                check_response(response, self.authenticator, expect_json=want_json)
            except RETRIABLE as exc:
                tries.append(exc)
                raise
            return response

        def on_backoff(details: Any) -> None:
            exc = details.get("exception")
            with self._count_lock:
                self.retries += 1
            if self._on_retry is not None:
                self._on_retry()
            if isinstance(exc, JWTRejectedError):
                logger.info("%s; retrying with a new JWT.", exc)
                return
            logger.warning(retry_log_line(method, url, details, self.policy.max_tries))

        retrying = backoff.on_exception(
            self.policy.wait_generator,
            RETRIABLE,
            max_tries=self.policy.max_tries,
            jitter=self.policy.jitter,
            on_backoff=on_backoff,
            raise_on_giveup=True,
            logger=None,
        )(fail_fast_on_tls(send))
        try:
            return retrying()
        except RETRIABLE as exc:
            raise self.policy.exhausted(method, url, exc) from None


class RetryStopped(Exception):  # noqa: N818 (a signal, not a failure)
    """`before_retry` decided that the request must not be sent again."""


__all__ = [
    "CONNECTION_ERRORS",
    "RETRIABLE",
    "CopernicaSession",
    "RetryPolicy",
    "RetryStopped",
    "check_json_body",
    "check_response",
    "check_status",
    "retry_after_seconds",
]
