"""The base stream: URL, JWT auth, response checks, retries with Retry-After, page decoding.

Every request of the tap goes through `CopernicaStream`; paging strategies live in
`paging.py` and only decide which query parameters the next page needs. What a stream needs
from the run (settings, account lookups, progress, the JWT) comes in `StreamServices`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import requests
from singer_sdk.streams.rest import PageContext

from copernica_api.errors import CopernicaAPIError, JWTRejectedError
from copernica_api.http import (
    RETRIABLE,
    RetryPolicy,
    check_json_body,
    check_status,
    retry_log_line,
)
from copernica_api.payloads import dict_rows, payload_of
from copernica_api.sdk_compat import CompatRESTStream
from copernica_api.settings import ClientSettings
from copernica_api.tls import fail_fast_on_tls, trust_environment
from tap_copernica.budget import RequestBudgetSpent, RunInParts
from tap_copernica.readahead import Entry, ReadAhead, request_key, worth_following

if TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from copernica_api.auth import CopernicaAuthenticator
    from tap_copernica.account import Account
    from tap_copernica.page_helpers import PageHelpers
    from tap_copernica.progress import RunProgress
    from tap_copernica.settings import TapSettings


#: The lines the `backoff` library logs itself through the SDK's retry decorator; each retry
#: already has its WARNING from `backoff_handler`, and giving up its error.
_BACKOFF_FORMATS = frozenset(
    {"Backing off %s(...) for %.1fs (%s)", "Giving up %s(...) after %d tries (%s)"}
)


def _not_from_backoff(record: logging.LogRecord) -> bool:
    return record.msg not in _BACKOFF_FORMATS


@dataclass(frozen=True)
class StreamFailure:
    """A stream the API refused for good in this run (the other streams went on)."""

    stream: str
    error: CopernicaAPIError


@dataclass(frozen=True)
class StreamServices:
    """What every stream of a run shares, built once by the tap."""

    settings: TapSettings
    account: Account
    progress: RunProgress
    #: one JWT per process, shared by every stream
    authenticator: CopernicaAuthenticator
    #: the streams that failed with a permanent API error, in order (see `isolate_failure`)
    failures: list[StreamFailure] = field(default_factory=list)
    #: what a run split by `max_requests` has finished (`budget.py`)
    parts: RunInParts = field(default_factory=RunInParts)
    #: requests read ahead, and the bound on requests in flight (`readahead.py`)
    read_ahead: ReadAhead = field(default_factory=ReadAhead)
    #: processes that turn profile pages into RECORD lines (`page_helpers.py`); None: none
    page_helpers: PageHelpers | None = None


class CopernicaStream(CompatRESTStream):
    """A Copernica REST v4 resource."""

    # A full table's ACTIVATE_VERSION (the ID lists) only once its complete list is out: a
    # run cut off mid-stream must not make a target mark the IDs not yet sent as deleted.
    activate_version_after_records = True
    #: How the stream's JSON answers are decoded: plain msgspec, or a stream's own decoder
    #: (the profile streams decode pages straight into records: `ProfileRecords.decode`).
    decode_body: Callable[[bytes], Any] | None = None

    def __init__(self, tap: Tap, services: StreamServices, **kwargs: Any) -> None:
        # Plain attributes, not properties: the profile streams read them for every page.
        self.settings = services.settings
        self.account = services.account
        self.progress = services.progress
        self.services = services
        services.read_ahead.configure(
            services.settings.max_parallel_requests,
            budgeted=services.settings.max_requests is not None,
        )
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

    # -- a permanent error ends this stream only --------------------------------------------
    def isolate_failure(self, exc: Exception) -> bool:
        """A permanent API error (a 4xx: this account or API host refuses the resource) ends
        this stream only: it is listed at the end of the run and the others go on. Anything
        else (retries used up, TLS, paging, authentication), and every error with
        `fail_fast`, still ends the run. A spent `max_requests` ends this stream too (it
        is not a failure): every stream then stops at its next request."""
        if isinstance(exc, RequestBudgetSpent):
            self.progress.stopped(self.name, exc.context if exc.stream == self.name else None)
            return True
        if self.settings.fail_fast or not isinstance(exc, CopernicaAPIError):
            return False
        self.services.failures.append(StreamFailure(self.name, exc))
        # Nothing more of it is read ahead: a plan already made would ask again what the
        # API refused (plans start sending as soon as they are made).
        self.services.read_ahead.stream_done(
            [self.name, *(s.name for s in self.descendent_streams)]
        )
        self.logger.error("Stream '%s' stopped: %s The other streams go on.", self.name, exc)
        return True

    # -- requests outside the SDK's paging loop --------------------------------------------
    def fetch(self, context: Context | None, token: Any) -> requests.Response:
        """One request outside the SDK's paging loop (readers that send several at once,
        see `prefetch.in_order`), with the same URL, auth, retries and checks as that loop.

        Like every request of the stream, the loop's too (`CompatRESTStream._request`), it
        takes a response read ahead for exactly its URL instead of sending (`readahead.py`).
        """
        return self._retrying_request(self.prepare_page(context, token), context)

    def prepare_page(self, context: Context | None, token: Any) -> requests.PreparedRequest:
        """The request of one page, as the SDK's loop would build it (same URL encoding)."""
        http = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=token)
        )
        return self.build_prepared_request(
            method=http.method, url=http.url, params=http.encode_params(), headers=http.headers
        )

    def ahead(self, context: Context | None, token: Any) -> Entry:
        """The page's request, to be read ahead (`ReadAhead.plan`); its answer is taken by
        the stream's own request for that page. Under latency a full page has the page
        after it asked at once (`following_page`), and so on: a list of several pages is in
        hand when its turn comes, instead of starting a chain of round trips then."""
        prepared = self.prepare_page(context, token)
        key = request_key(self.name, str(prepared.url))
        return Entry(self.name, key, partial(self._send_ahead, prepared, context, token))

    def following_page(self, token: Any, response: requests.Response) -> Any | None:
        """The token of the page this stream asks after `response` (a page asked with
        `token`) when that is known from the page alone; None (the default) when it is
        not, or after the last page."""
        return None

    def _send_ahead(
        self, prepared: requests.PreparedRequest, context: Context | None, token: Any
    ) -> requests.Response:
        response = self._sending(prepared, context)
        if worth_following(response):
            try:
                following = self.following_page(token, response)
                if following is not None:
                    self.services.read_ahead.follow_up([self.ahead(context, following)])
            except Exception as exc:  # only saves time: the stream's own read reports it
                self.logger.debug("Not reading '%s' on ahead: %s", self.name, exc)
        return response

    def serve_prefetched(self, prepared: requests.PreparedRequest) -> requests.Response | None:
        """The response read ahead for this URL, if any; the error that ended it is raised
        here, at the stream's turn, as if the request had just been sent."""
        outcome = self.services.read_ahead.take(request_key(self.name, str(prepared.url)))
        if outcome is None:
            return None
        if outcome.error is not None:
            raise outcome.error
        return outcome.response

    def request_slot(self) -> AbstractContextManager[object]:
        """One of the tap's `max_parallel_requests` slots."""
        return self.services.read_ahead.slot(self.name)

    @cached_property
    def _retrying_request(self) -> Callable[..., requests.Response]:
        return self.retrying_request()

    @cached_property
    def _sending(self) -> Callable[..., requests.Response]:
        return self.retrying_request(served=False)

    # -- responses ------------------------------------------------------------------------
    def validate_response(self, response: requests.Response) -> None:
        """Sort a response into success, JWT renewal, transient or permanent failure (the
        body is decoded once the request has given back its slot: `check_body`)."""
        self.progress.response(self.name, ok=response.status_code < 300)
        check_status(response, self.authenticator)

    def check_body(self, response: requests.Response) -> None:
        """Decode the JSON body (with the stream's own decoder, if any); one cut short is
        fetched again."""
        check_json_body(response, self.decode_body)

    def parse_response(self, response: requests.Response) -> Iterable[dict[str, Any]]:
        """Rows of a list page or the single object of an object resource."""
        yield from dict_rows(payload_of(response))

    # -- the request budget and a run in parts (`budget.py`) ------------------------------
    def before_send(self, prepared: requests.PreparedRequest, context: Context | None) -> None:
        """Count the request under this stream; `RequestBudgetSpent` keeps it from being
        sent once `max_requests` are spent (retries count: each try is a request)."""
        self.progress.request(self.name, context)

    @property
    def partitions_one_by_one(self) -> bool:
        """While a run may be split, partitions are tracked one by one."""
        return self.services.parts.active

    def skip_context(self, context: Context | None) -> bool:
        """What an earlier run of a split run finished is not read again."""
        parts = self.services.parts
        if not parts.active or not parts.finished_before(self.name, context):
            return False
        if context is None:
            self.logger.info("Skipping '%s': read to its end by an earlier run.", self.name)
        return True

    def table_version(self, version: int) -> int:
        """A full table read in parts keeps one version: its ACTIVATE_VERSION, sent by the
        run that reads its end, then covers the records every part sent."""
        return self.services.parts.version(self.name, version)

    def context_read(self, context: Context | None) -> None:
        """Note a stream, partition or parent context read to its end (with its children),
        so that the next run of a split run skips it."""
        if not self.services.parts.active:
            return
        family = (self, *self.descendent_streams)
        if any(isinstance(s, CompatRESTStream) and s.failure is not None for s in family):
            return
        self.services.parts.finished(self.name, context, [s.name for s in self.descendent_streams])

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
        """The SDK's backoff, plus one clear error once the retries are used up; each retry
        logged once (`backoff_handler`), not also by the `backoff` library."""
        if _not_from_backoff not in self.logger.filters:
            self.logger.addFilter(_not_from_backoff)
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
