"""TLS for every connection of both plugins: always verified, trusting what the user's
environment trusts, and a failed check reported once, clearly, instead of retried.

No code path switches verification off (tests/test_tls.py checks the sources too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

import requests

from copernica_api.errors import TLSVerificationError

_P = ParamSpec("_P")
_R = TypeVar("_R")


def trust_environment(session: requests.Session) -> requests.Session:
    """Let `session.send` trust REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE as `requests.get` does.

    requests reads those variables only in `Session.request`; prepared requests go through
    `Session.send` (the SDK's loop and ours), which would ignore a proxy's CA bundle."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.trust_env and session.verify is True:
        session.verify = bundle
    return session


def fail_fast_on_tls(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """`func`, with a failed certificate check turned into a final, clear error.

    requests reports it as a ConnectionError, which every retry loop here would otherwise
    retry (for minutes, at the authentication service) and then blame on the network."""

    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except requests.exceptions.SSLError as exc:
            request = exc.request
            host = urlsplit(str(request.url if request is not None else "")).netloc or "?"
            reason = str(exc.args[0] if exc.args else exc)
            reason = reason.rsplit("(Caused by ", maxsplit=1)[-1].rstrip(")")[:300]
            msg = (
                f"The TLS certificate of {host} did not verify ({reason}). Connections are "
                f"always verified. If your network re-signs HTTPS (a proxy), point "
                f"REQUESTS_CA_BUNDLE at a file with its CA certificate; otherwise check "
                f"`api_url` and `auth_url`."
            )
            raise TLSVerificationError(msg) from None

    return call
