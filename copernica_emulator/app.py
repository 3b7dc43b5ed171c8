"""Request handling independent of HTTP plumbing: faults, authentication, dispatch."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from dataclasses import dataclass

from . import control
from .auth import AuthService
from .context import ApiContext, ApiRequest
from .faults import SLOW_SECONDS, FaultPlan, canned_response, truncated
from .jwt import TokenSigner
from .messages import INVALID_METHOD, INVALID_TOKEN, Response, error_response
from .routes import dispatch
from .store import Store

_BEARER = re.compile(r"Bearer\s+(\S+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Incoming:
    method: str
    path: str  # percent-decoded, without the query string
    query: list[tuple[str, str]]
    content_type: str
    authorization: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    response: Response | None  # None: drop the connection without an answer
    authorized: bool


class App:
    def __init__(
        self,
        *,
        store: Store,
        auth: AuthService,
        signer: TokenSigner,
        faults: FaultPlan,
        expired_status: int,
        shuffle_ties: bool,
        seed: int,
    ) -> None:
        self.store = store
        self.auth = auth
        self.signer = signer
        self.faults = faults
        self.expired_status = expired_status
        self.shuffle_ties = shuffle_ties
        self.seed = seed
        self.api_url = ""  # known once the server is bound
        self._counter = itertools.count(1)
        self._counter_lock = threading.Lock()

    def _request_rng(self) -> random.Random:
        with self._counter_lock:
            number = next(self._counter)
        return random.Random(f"{self.seed}:{number}")

    def handle(self, incoming: Incoming) -> Outcome:
        segments = [segment for segment in incoming.path.split("/") if segment]
        if segments and segments[0] == control.PREFIX:
            # The emulator's own controls: never faulted, never slowed down.
            authorized = self._bearer_valid(incoming.authorization)
            answer = control.handle(
                incoming.method, segments, incoming.body, self.store, authorized=authorized
            )
            return Outcome(answer, authorized)
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000)
        is_auth = segments == ["authenticate"]
        if is_auth and time.time() < self.faults.auth_down_until:
            return Outcome(canned_response("html503"), False)
        fault = self.faults.pick(incoming.path)
        if fault is not None:
            canned = canned_response(fault)
            if canned is not None:
                return Outcome(canned, False)
            if fault == "reset":
                return Outcome(None, False)
            if fault == "slow":
                time.sleep(SLOW_SECONDS)
        response, authorized = self._answer(incoming, segments, expire=fault == "expire_jwt")
        if fault == "truncate":
            response = truncated(response)
        if fault == "drop_after":
            return Outcome(None, authorized)
        return Outcome(response, authorized)

    def _answer(
        self, incoming: Incoming, segments: list[str], *, expire: bool
    ) -> tuple[Response, bool]:
        if segments == ["authenticate"]:
            if expire or incoming.method not in ("GET", "POST"):
                return error_response(INVALID_TOKEN), False
            return self.auth.exchange(incoming.query, incoming.content_type, incoming.body)
        if not segments or segments[0] != "v4":
            return error_response(INVALID_METHOD), False
        if expire or not self._bearer_valid(incoming.authorization):
            return error_response(INVALID_TOKEN, self.expired_status), False
        request = ApiRequest(
            incoming.method, segments[1:], incoming.query, incoming.content_type, incoming.body
        )
        context = ApiContext(self.store, self.api_url, self._request_rng(), self.shuffle_ties)
        return dispatch(request, context), True

    def _bearer_valid(self, header: str) -> bool:
        match = _BEARER.fullmatch(header)
        return match is not None and self.signer.verify(match.group(1))
