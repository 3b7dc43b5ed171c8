"""The base stream: URL, JWT auth, response checks, retries with Retry-After, page decoding.

Every request of the tap goes through `CopernicaStream`; paging strategies live in
`paging.py` and only decide which query parameters the next page needs. What a stream needs
from the run (settings, account lookups, progress, the JWT) comes in `StreamServices`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk.streams.rest import PageContext

from copernica_api.errors import JWTRejectedError
from copernica_api.http import RETRIABLE, RetryPolicy, check_response, retry_log_line
from copernica_api.payloads import dict_rows, payload_of
from copernica_api.sdk_compat import CompatRESTStream
from copernica_api.settings import ClientSettings
from copernica_api.tls import fail_fast_on_tls, trust_environment

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from copernica_api.auth import CopernicaAuthenticator
    from tap_copernica.account import Account
    from tap_copernica.progress import RunProgress
    from tap_copernica.settings import TapSettings


@dataclass(frozen=True)
class StreamServices:
    """What every stream of a run shares, built once by the tap."""

    settings: TapSettings
    account: Account
    progress: RunProgress
    #: one JWT per process, shared by every stream
    authenticator: CopernicaAuthenticator


class CopernicaStream(CompatRESTStream):
    """A Copernica REST v4 resource."""

    def __init__(self, tap: Tap, services: StreamServices, **kwargs: Any) -> None:
        # Plain attributes, not properties: the profile streams read them for every page.
        self.settings = services.settings
        self.account = services.account
        self.progress = services.progress
        self.services = services
        super().__init__(tap, **kwargs)

    @property
    def client_settings(self) -> ClientSettings:
        """The connection and request settings, typed."""
        return self.settings.client

    @property
    def url_base(self) -> str:
        """The API base from `api_url`, e.g. https://api.copernica.com/v4."""
        return self.client_settings.api_url

    @property
    def authenticator(self) -> CopernicaAuthenticator:
        """The tap's single authenticator: one JWT per process, shared by every stream."""
        return self.services.authenticator

    @property
    def requests_session(self) -> requests.Session:
        """The SDK's session, trusting the CA bundle the environment names (`copernica_api.tls`)."""
        return trust_environment(super().requests_session)

    @property
    def http_headers(self) -> dict[str, str]:
        """Headers for every request (the SDK adds User-Agent, the authenticator the JWT)."""
        return {"Accept": "application/json"}

    @property
    def timeout(self) -> int:
        """Seconds to wait for a response (`request_timeout`)."""
        return int(self.client_settings.request_timeout)

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
        return self.retrying_request()

    # -- responses ------------------------------------------------------------------------
    def validate_response(self, response: requests.Response) -> None:
        """Sort a response into success, JWT renewal, transient or permanent failure."""
        self.progress.request(self.name, ok=response.status_code < 300)
        check_response(response, self.authenticator)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """Rows of a list page or the single object of an object resource."""
        yield from dict_rows(payload_of(response))

    # -- retries (the policy lives in `http.py`, shared with the target) ------------------
    @property
    def retry_policy(self) -> RetryPolicy:
        """`max_retries` and `retry_initial_wait_ms` from the config."""
        return self.client_settings.retry

    def backoff_max_tries(self) -> int:
        """One try plus `max_retries` retries."""
        return self.retry_policy.max_tries

    def backoff_wait_generator(self) -> Generator[float, Any, None]:
        """Exponential waits, Retry-After when the API sends one, none for a JWT renewal."""
        return self.retry_policy.wait_generator()

    def backoff_jitter(self, value: float) -> float:
        """±20 % jitter, so parallel runs spread out but a Retry-After stays close."""
        return RetryPolicy.jitter(value)

    def backoff_handler(self, details: Any) -> None:
        """Log each retry at WARNING with the request path and the attempt number."""
        exc = details.get("exception")
        self.progress.retry(self.name)
        if isinstance(exc, JWTRejectedError):
            self.logger.info("%s; retrying with a new JWT.", exc)
            return
        method, url = self._request_of(details)
        self.logger.warning(retry_log_line(method, url, details, self.backoff_max_tries()))

    def request_decorator(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """The SDK's backoff, plus one clear error once the retries are used up."""
        retrying = super().request_decorator(fail_fast_on_tls(func))

        def call(prepared: requests.PreparedRequest, context: Context | None) -> Any:
            try:
                return retrying(prepared, context)
            except RETRIABLE as exc:
                policy = self.retry_policy
                raise policy.exhausted(prepared.method or "GET", prepared.url or "", exc) from None

        return call

    @staticmethod
    def _request_of(details: Any) -> tuple[str, str]:
        args = details.get("args") or ()
        prepared = args[0] if args else None
        if isinstance(prepared, requests.PreparedRequest):
            return prepared.method or "GET", prepared.url or ""
        return "GET", "request"
