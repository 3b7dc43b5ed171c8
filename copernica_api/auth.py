"""JWT authentication for the Copernica REST API v4, shared by the tap and the target.

The long-lived API token only opens the authentication service, which trades it for a JWT
valid for about 24 hours. One authenticator holds one JWT for the whole process: every stream
(and every sink) uses it, it is renewed shortly before it expires, and once more when the API
says it is no longer valid. Neither the API token nor the JWT is ever logged or put in an error.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import backoff
import requests
from singer_sdk.authenticators import APIAuthenticatorBase
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.errors import api_error_message, describe_error
from copernica_api.tls import fail_fast_on_tls, trust_environment

DEFAULT_AUTH_URL = "https://authenticate.copernica.com"
TOKEN_HELP_URL = "https://ms.copernica.com/#/admin/account/access-tokens"  # noqa: S105
# The docs give JWTs a 24 h lifetime; used when the token carries no readable `exp`.
DEFAULT_LIFETIME_SECONDS = 24 * 3600
# Tries and first wait when no retry settings are given (the plugins' defaults, as in
# `copernica_api.settings`); the wait doubles after each failure up to MAX_WAIT_SECONDS.
DEFAULT_MAX_TRIES = 9
DEFAULT_INITIAL_WAIT_SECONDS = 2.0
MAX_WAIT_SECONDS = 60.0
# Renew this long before `exp` so that no request leaves with a JWT about to expire.
MAX_RENEW_MARGIN_SECONDS = 300.0

logger = logging.getLogger("copernica.auth")


class AuthenticationRefusedError(ConfigValidationError):
    """The authentication service refused the API token: a config problem, not a glitch."""

    def __init__(self, status: int, api_message: str) -> None:
        detail = f"HTTP {status}" + (f": {api_message}" if api_message else "")
        message = (
            f"The Copernica authentication service refused the API token ({detail}). "
            f"Check the `api_token` setting: create or copy a REST API token in Copernica "
            f"under Admin > Account > Access tokens ({TOKEN_HELP_URL}) and make sure it "
            f"may be used with REST API v4."
        )
        super().__init__(message, errors=[message])


class AuthenticationUnavailableError(RuntimeError):
    """The authentication service could not be reached or kept failing."""


class _TransientAuthError(Exception):
    """A 5xx/429 answer from the authentication service; worth another try."""


@dataclass(frozen=True)
class _Jwt:
    value: str
    expires_at: float

    def __repr__(self) -> str:  # never show the token, even in a debugger dump or traceback
        return f"_Jwt(expires_at={self.expires_at:.0f})"


def jwt_expiry(token: str) -> float | None:
    """Return the `exp` claim (unix seconds) of a JWT, read without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def _looks_like_jwt(text: str) -> bool:
    return text.count(".") == 2 and all(text.split("."))


def extract_jwt(body: bytes, content_type: str) -> str | None:
    """Find the JWT in the authentication service's answer.

    The docs only say the response "contains a JWT": accept a bare token (optionally quoted)
    and a JSON object that carries it under any key.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in content_type or text.startswith(("{", '"')):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        candidates: list[Any] = []
        if isinstance(parsed, str):
            candidates = [parsed]
        elif isinstance(parsed, dict):
            preferred = [parsed.get(k) for k in ("access_token", "token", "jwt")]
            candidates = preferred + list(parsed.values())
        for candidate in candidates:
            if isinstance(candidate, str) and _looks_like_jwt(candidate.strip()):
                return candidate.strip()
    text = text.strip("\"'")
    return text if _looks_like_jwt(text) else None


def bearer_of(request: requests.PreparedRequest | None) -> str | None:
    """The JWT that a request was sent with (to renew only if it is still the current one)."""
    if request is None:
        return None
    header = request.headers.get("Authorization", "")
    return header[len("Bearer ") :] if header.startswith("Bearer ") else None


class CopernicaAuthenticator(APIAuthenticatorBase):
    """Trades the API token for a JWT, caches it and renews it; thread-safe."""

    def __init__(
        self,
        *,
        api_token: str,
        auth_url: str = DEFAULT_AUTH_URL,
        timeout: float = 60.0,
        max_tries: int = DEFAULT_MAX_TRIES,
        initial_wait: float = DEFAULT_INITIAL_WAIT_SECONDS,
        user_agent: str = "tap-copernica",
    ) -> None:
        super().__init__()
        self._api_token = api_token
        self._auth_url = auth_url
        self._timeout = timeout
        # The plugins' retry settings (`max_retries` + 1, `retry_initial_wait_ms`), as for
        # API requests: the wait doubles after each failure, up to MAX_WAIT_SECONDS.
        self._max_tries = max(1, max_tries)
        self._initial_wait = max(0.0, initial_wait)
        self._user_agent = user_agent
        self._jwt: _Jwt | None = None
        self._lock = threading.Lock()
        self._session = trust_environment(requests.Session())
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        return f"CopernicaAuthenticator(auth_url={self._auth_url!r})"

    # -- SDK hook -----------------------------------------------------------------------
    def authenticate_request(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Put the current JWT on a request; called again on every retry of that request."""
        request.headers["Authorization"] = f"Bearer {self.current_jwt()}"
        return request

    # -- public API -----------------------------------------------------------------------
    def current_jwt(self) -> str:
        """A JWT that stays valid for at least the renewal margin."""
        with self._lock:
            if self._jwt is None or time.time() >= self._renew_at(self._jwt):
                self._jwt = self._fetch()
            return self._jwt.value

    def invalidate(self, rejected: str | None) -> None:
        """Forget the JWT the API just rejected, unless another thread already replaced it."""
        with self._lock:
            if self._jwt is not None and (rejected is None or self._jwt.value == rejected):
                self._jwt = None

    def redact(self, text: str) -> str:
        """`text` with the API token and the current JWT replaced by `***`."""
        jwt = self._jwt.value if self._jwt else None
        for secret in (self._api_token, jwt):
            if secret:
                text = text.replace(secret, "***")
        return text

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _renew_at(jwt: _Jwt) -> float:
        # A long-lived token is renewed 5 minutes early; a short-lived one (tests, or a
        # service that hands out short tokens) at 80 % of its remaining life.
        now = time.time()
        margin = min(MAX_RENEW_MARGIN_SECONDS, max(0.0, (jwt.expires_at - now) * 0.2))
        return jwt.expires_at - margin

    def _fetch(self) -> _Jwt:
        fetch = backoff.on_exception(
            backoff.expo,
            (_TransientAuthError, requests.ConnectionError, requests.Timeout),
            max_tries=self._max_tries,
            factor=self._initial_wait,
            max_value=MAX_WAIT_SECONDS,
            jitter=None,
            on_backoff=self._log_retry,
            logger=None,
        )(fail_fast_on_tls(self._post_token))
        started = time.monotonic()
        try:
            jwt = fetch()
        except (_TransientAuthError, requests.RequestException) as exc:
            tries = self._max_tries
            msg = (
                f"The Copernica authentication service at {self._auth_url} did not answer "
                f"usefully in {tries} tr{'y' if tries == 1 else 'ies'} over "
                f"{time.monotonic() - started:.0f} s ({type(exc).__name__}: "
                f"{describe_error(exc)}). Check `auth_url` and the network (`max_retries` and "
                f"`retry_initial_wait_ms` set how long to keep trying), then rerun: the run "
                f"resumes from its last bookmark."
            )
            raise AuthenticationUnavailableError(msg) from None
        self.tokens_fetched += 1
        logger.info("Obtained a new Copernica JWT (valid until %s).", _utc(jwt.expires_at))
        return jwt

    def _post_token(self) -> _Jwt:
        response = self._session.post(
            self._auth_url,
            data={"access_token": self._api_token},
            headers={"Accept": "application/json, text/plain", "User-Agent": self._user_agent},
            timeout=self._timeout,
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientAuthError(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AuthenticationRefusedError(response.status_code, api_error_message(response))
        token = extract_jwt(response.content, response.headers.get("Content-Type", ""))
        if token is None:
            msg = (
                f"The Copernica authentication service at {self._auth_url} answered HTTP "
                f"{response.status_code} without a JWT in its body. Check `auth_url`: it "
                f"should point at the authentication service (default {DEFAULT_AUTH_URL})."
            )
            raise AuthenticationUnavailableError(msg)
        expires_at = jwt_expiry(token) or time.time() + DEFAULT_LIFETIME_SECONDS
        return _Jwt(token, expires_at)

    def _log_retry(self, details: Any) -> None:
        exc = details.get("exception")
        logger.warning(
            "Authentication service unavailable (%s); retry %d in %.1f s.",
            describe_error(exc),
            details.get("tries", 0),
            details.get("wait", 0.0),
        )


_SHARED: dict[tuple[str, str, int, float], CopernicaAuthenticator] = {}
_SHARED_LOCK = threading.Lock()


def authenticator_from_config(
    config: Any,
    *,
    user_agent: str,
    timeout: float = 60.0,
    max_tries: int = DEFAULT_MAX_TRIES,
    initial_wait: float = DEFAULT_INITIAL_WAIT_SECONDS,
) -> CopernicaAuthenticator:
    """The process's authenticator for `api_token` / `auth_url`: one JWT per process.

    A plugin may build several tap or target objects in one process (discovery, then the
    sync); they share one authenticator, so the authentication service is asked once.
    `max_tries` and `initial_wait` are the plugin's retry settings (`ClientSettings.retry`).
    """
    api_token = str(config.get("api_token", ""))
    auth_url = str(config.get("auth_url") or DEFAULT_AUTH_URL)
    with _SHARED_LOCK:
        key = (auth_url, api_token, max_tries, initial_wait)
        if key not in _SHARED:
            _SHARED[key] = CopernicaAuthenticator(
                api_token=api_token,
                auth_url=auth_url,
                timeout=timeout,
                max_tries=max_tries,
                initial_wait=initial_wait,
                user_agent=user_agent,
            )
        return _SHARED[key]


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
