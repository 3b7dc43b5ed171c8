"""Per-request inputs for the REST v4 route handlers."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .params import QueryPairs
from .store import Store


@dataclass(frozen=True)
class ApiRequest:
    method: str
    segments: list[str]  # path segments after "v4", empty ones dropped
    query: QueryPairs
    content_type: str
    body: bytes


@dataclass(frozen=True)
class ApiContext:
    store: Store
    api_url: str
    rng: random.Random  # per-request randomness (tie order, orderby=random)
    shuffle_ties: bool
