"""The tap's only concurrency: up to N requests in flight, results handed back in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_order(calls: Iterable[Callable[[], T]], workers: int) -> Iterator[T]:
    """Run `calls` with at most `workers` at once; yield their results in submission order.

    `calls` is consumed lazily, one call ahead of each result handed back, so a producer may
    plan the next call from the results seen so far. An error in any call is raised at its
    turn; calls not yet started are cancelled.
    """
    pending: deque[Future[T]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copernica") as pool:
        try:
            for call in calls:
                pending.append(pool.submit(call))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
