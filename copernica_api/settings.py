"""The settings both plugins declare to reach the API, with their defaults written once, and
a typed view of them (`ClientSettings`) that builds the authenticator and the session."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from singer_sdk import typing as th

from copernica_api.auth import DEFAULT_AUTH_URL, CopernicaAuthenticator, authenticator_from_config
from copernica_api.http import CopernicaSession, RetryPolicy
from copernica_api.timeutil import zone

DEFAULT_API_URL = "https://api.copernica.com/v4"
DEFAULT_TIMEZONE = "Europe/Amsterdam"
DEFAULT_REQUEST_TIMEOUT = 120
DEFAULT_MAX_RETRIES = 8
DEFAULT_RETRY_INITIAL_WAIT_MS = 2000

#: Where the API is and how to authenticate.
CONNECTION_SETTINGS = th.PropertiesList(
    th.Property(
        "api_token",
        th.StringType,
        required=True,
        secret=True,
        description="Copernica REST API token (Admin > Account > Access tokens). It is only "
        "sent to the authentication service, which trades it for a JWT.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default=DEFAULT_API_URL,
        description="REST API v4 base URL. Accounts with large datasets may use "
        "https://rest.copernica.com/v4.",
    ),
    th.Property(
        "auth_url",
        th.StringType,
        default=DEFAULT_AUTH_URL,
        description="Authentication service that trades the API token for a JWT.",
    ),
)

#: The account's clock, and how long to wait for and how often to retry a request.
REQUEST_SETTINGS = th.PropertiesList(
    th.Property(
        "timezone",
        th.StringType,
        default=DEFAULT_TIMEZONE,
        description="Time zone of the account: the API reads, writes and filters timestamps "
        "as local times without a zone (the tap emits ISO 8601 with the offset).",
    ),
    th.Property(
        "request_timeout",
        th.IntegerType(minimum=1),
        default=DEFAULT_REQUEST_TIMEOUT,
        description="Seconds to wait for one API response.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=DEFAULT_MAX_RETRIES,
        description="Retries of a request after 5xx, 429, connection errors or a truncated "
        "body, with exponential backoff (Retry-After is honoured).",
    ),
    th.Property(
        "retry_initial_wait_ms",
        th.IntegerType(minimum=0),
        default=DEFAULT_RETRY_INITIAL_WAIT_MS,
        description="Milliseconds before the first retry; doubles each time, up to 60 s.",
    ),
)


@dataclass(frozen=True)
class ClientSettings:
    """`CONNECTION_SETTINGS` and `REQUEST_SETTINGS` of a plugin's config, typed."""

    api_url: str
    auth_url: str
    api_token: str = field(repr=False)
    timezone_name: str
    request_timeout: float
    retry: RetryPolicy

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ClientSettings:
        """The settings as given, with the defaults above for those left out."""
        return cls(
            api_url=str(config.get("api_url") or DEFAULT_API_URL).rstrip("/"),
            auth_url=str(config.get("auth_url") or DEFAULT_AUTH_URL),
            api_token=str(config.get("api_token", "")),
            timezone_name=str(config.get("timezone") or DEFAULT_TIMEZONE),
            request_timeout=float(config.get("request_timeout") or DEFAULT_REQUEST_TIMEOUT),
            retry=RetryPolicy(
                max_tries=int(config.get("max_retries", DEFAULT_MAX_RETRIES)) + 1,
                initial_wait=int(config.get("retry_initial_wait_ms", DEFAULT_RETRY_INITIAL_WAIT_MS))
                / 1000,
            ),
        )

    def timezone(self) -> ZoneInfo:
        """The account's zone; ValueError naming `timezone` when it is unknown."""
        return zone(self.timezone_name)

    def authenticator(self, user_agent: str) -> CopernicaAuthenticator:
        """The process's one authenticator for this token (shared by every plugin object);
        the authentication service is retried as the API is (`retry`)."""
        return authenticator_from_config(
            {"api_token": self.api_token, "auth_url": self.auth_url},
            user_agent=user_agent,
            timeout=self.request_timeout,
            max_tries=self.retry.max_tries,
            initial_wait=self.retry.initial_wait,
        )

    def session(
        self,
        authenticator: CopernicaAuthenticator,
        *,
        user_agent: str,
        pool_size: int,
        on_retry: Callable[[], None] | None = None,
    ) -> CopernicaSession:
        """A session sending requests to `api_url` under the retry policy."""
        return CopernicaSession(
            api_url=self.api_url,
            authenticator=authenticator,
            policy=self.retry,
            timeout=self.request_timeout,
            user_agent=user_agent,
            on_retry=on_retry,
            pool_size=pool_size,
        )
