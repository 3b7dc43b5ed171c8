"""Fault injection plan: overload pages, rate limits, dropped and truncated responses."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

from .messages import INVALID_METHOD, Response, error_response, text_response

#: Permanent refusals, as an API host or account that lacks a resource answers it: the
#: status and the API's message (e.g. `add("invalid_method", path=r"/minirules$")`).
REFUSALS = {
    "invalid_method": (400, INVALID_METHOD),
    "forbidden403": (403, "Access to this resource is not allowed"),
    "notfound404": (404, "Not found"),
}
FAULT_KINDS = frozenset(
    {"html503", "gateway504", "ratelimit429", "reset", "truncate", "expire_jwt", "slow"}
    | {"drop_after"}  # the request is handled, then the connection drops: the answer is lost
    | set(REFUSALS)
)
SLOW_SECONDS = 2.0

LOADBALANCER_PAGE = (
    "<html><head><title>Loadbalancer Error</title></head><body>"
    "<h1>Loadbalancer Error</h1>"
    "<p>The server has too many requests to handle. Please try again later.</p>"
    "</body></html>"
)


def is_api_path(path: str) -> bool:
    """True for paths under /v4 (doubled slashes are ignored like the API does)."""
    segments = [segment for segment in path.split("/") if segment]
    return bool(segments) and segments[0] == "v4"


@dataclass
class FaultRule:
    kind: str
    pattern: re.Pattern[str] | None  # None: every /v4 path
    rate: float
    times: int | None
    after: int
    rng: random.Random
    seen: int = 0
    injected: int = 0

    def applies_to(self, path: str) -> bool:
        if self.pattern is None:
            return is_api_path(path)
        return self.pattern.search(path) is not None


@dataclass
class FaultPlan:
    """Rules are tried in the order added; the first one that fires wins."""

    latency_ms: float = 0
    auth_down_until: float = 0.0
    injected: list[tuple[str, str]] = field(default_factory=list)
    _rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        kind: str,
        *,
        path: str | None = None,
        rate: float = 1.0,
        times: int | None = None,
        seed: int = 0,
        after: int = 0,
    ) -> FaultRule:
        """Inject ``kind`` on matching requests (``path`` is a regex searched in the path)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        pattern = re.compile(path) if path is not None else None
        rule = FaultRule(kind, pattern, rate, times, after, random.Random(seed))
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule, forget injections, and reset latency and the auth outage."""
        with self._lock:
            self._rules.clear()
            self.injected.clear()
        self.latency_ms = 0
        self.auth_down_until = 0.0

    def pick(self, path: str) -> str | None:
        """Decide (and record) the fault for one request, if any."""
        with self._lock:
            for rule in self._rules:
                if not rule.applies_to(path):
                    continue
                rule.seen += 1
                if rule.seen <= rule.after:
                    continue
                if rule.times is not None and rule.injected >= rule.times:
                    continue
                if rule.rng.random() >= rule.rate:
                    continue
                rule.injected += 1
                self.injected.append((rule.kind, path))
                return rule.kind
        return None


def canned_response(kind: str) -> Response | None:
    """The response a load balancer fault sends instead of the real one."""
    if kind == "html503":
        return text_response(LOADBALANCER_PAGE, 503, "text/html")
    if kind == "gateway504":
        return text_response(LOADBALANCER_PAGE, 504, "text/html")
    if kind in REFUSALS:
        status, message = REFUSALS[kind]
        return error_response(message, status)
    if kind == "ratelimit429":
        limited = error_response("Too many requests", 429)
        return Response(limited.status, limited.body, limited.content_type, (("Retry-After", "1"),))
    return None


def truncated(response: Response) -> Response:
    """The real body cut in half, served as a complete 200 JSON response."""
    return Response(200, response.body[: len(response.body) // 2], "application/json")
