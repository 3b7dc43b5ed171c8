"""Issue and verify HS256 JWTs like the authentication service, which trades an API token for a
JWT with an `exp` claim that the REST API then accepts as a bearer token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from typing import Any


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Signs tokens with a per-instance random key.

    The ``exp`` claim is whole seconds rounded down, so a client that trusts it renews early;
    the server accepts a token until the exact issue time plus ``lifetime``.
    """

    def __init__(self, lifetime: float, key: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._key = key if key is not None else os.urandom(32)
        self._lock = threading.Lock()
        self._issued = 0
        self._expiry: dict[int, float] = {}

    @property
    def issued(self) -> int:
        with self._lock:
            return self._issued

    def _sign(self, signing_input: str) -> str:
        digest = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return b64url_encode(digest)

    def issue(self) -> str:
        now = time.time()
        with self._lock:
            self._issued += 1
            jti = self._issued
            self._expiry[jti] = now + self.lifetime
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {"iat": int(now), "exp": int(now + self.lifetime), "jti": jti}
        signing_input = ".".join(
            b64url_encode(json.dumps(part, separators=(",", ":")).encode())
            for part in (header, payload)
        )
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str) -> bool:
        """True for a well-formed token with a valid signature that has not expired."""
        parts = token.split(".")
        if len(parts) != 3:
            return False
        expected = self._sign(f"{parts[0]}.{parts[1]}")
        if not hmac.compare_digest(expected, parts[2]):
            return False
        try:
            payload: Any = json.loads(b64url_decode(parts[1]))
        except ValueError:
            return False
        if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
            return False
        with self._lock:
            expiry = self._expiry.get(payload.get("jti", -1), float(payload["exp"]))
        return time.time() < expiry
