"""The tap's only concurrency: up to N requests in flight, results handed back in order
(`in_order`), or calls handed to threads that nobody waits for (`Background`: requests
read ahead on the strength of an answer). Every request still holds one of the tap's
`max_parallel_requests` slots while on the wire (`Slots`, through `ReadAhead.slot`)."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")


def in_order(
    calls: Iterable[Callable[[], T]], workers: int, ahead: int | None = None
) -> Generator[T, None, None]:
    """Run `calls` with at most `workers` at once; yield their results in submission order.

    The first calls start before this returns, not at the first result asked for: a plan
    read ahead (`readahead.py`) is on the wire while the stream before it still syncs.

    Calls are handed to the threads ahead of the result being handed back (up to three times
    `workers` in all, at most `workers` + 8): a thread that finishes a call starts the next
    one at once instead of waiting for the consumer to take an earlier result, so `workers`
    requests stay in flight while the consumer works, also when results arrive in bursts
    (measured under 100 ms latency: fewer ahead left threads idle). The bound also bounds
    the finished results held in memory. `calls` is consumed lazily, so a producer may plan
    the next call from the results seen so far. An error in any call is raised at its turn;
    calls not yet started are cancelled. `ahead` overrides how many calls are handed out
    beyond the one the consumer waits for (a plan of many small requests reads further).
    """
    results = _in_order(calls, workers, ahead)
    next(results)  # the first calls are submitted
    return cast("Generator[T, None, None]", results)


def _in_order(
    calls: Iterable[Callable[[], T]], workers: int, ahead: int | None
) -> Generator[T | None, None, None]:
    workers = max(1, workers)
    pending: deque[Future[T]] = deque()
    todo = iter(calls)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copernica") as pool:
        try:
            for call in itertools.islice(todo, ahead or min(3 * workers, workers + 8)):
                pending.append(pool.submit(call))
            yield None  # started (`in_order`)
            while pending:
                result = pending.popleft().result()
                following = next(todo, None)
                if following is not None:
                    pending.append(pool.submit(following))
                yield result
        finally:
            for future in pending:
                future.cancel()


_log = logging.getLogger(__name__)


class Slots:
    """At most `count` holders at once; a slot given back goes to the longest waiting
    `urgent` holder, else to the longest waiting other one.

    The tap's requests in flight: the requests of the streams the run syncs now are urgent,
    requests read ahead for later streams are not. Those only save time later, so they take
    the slots nobody needs now; without the order, a chain of round trips the run waits
    for (a view tree, a profile scan's ranges) queued behind them (measured: the whole
    account 5 to 7 % slower, reading further ahead slower still).
    """

    def __init__(self, count: int) -> None:
        self._free = max(1, count)
        self._lock = threading.Lock()
        self._urgent: deque[threading.Event] = deque()
        self._others: deque[threading.Event] = deque()

    def acquire(self, *, urgent: bool) -> None:
        """Take a slot: at once when one is free, else when `release` hands one over."""
        with self._lock:
            if self._free > 0:  # none is free while anyone waits: slots are handed over
                self._free -= 1
                return
            turn = threading.Event()
            queue = self._urgent if urgent else self._others
            queue.append(turn)
        try:
            turn.wait()
        except BaseException:  # interrupted (Ctrl-C, a signal's exit): no slot is lost
            with self._lock:
                handed = turn.is_set()
                if not handed:
                    queue.remove(turn)
            if handed:  # handed over meanwhile: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the next waiting holder, if any."""
        with self._lock:
            waiting = self._urgent or self._others
            if waiting:
                waiting.popleft().set()
            else:
                self._free += 1


class Background:
    """Calls run by up to `workers` threads, in the order handed over, never waited for.

    The threads are daemons and `close` drops the calls not started: a run that ends (also
    by a fatal error) never waits at exit for requests of streams it did not reach. A call
    reports its own outcome; an exception it lets out is only logged.
    """

    def __init__(self, workers: int) -> None:
        self._workers = max(1, workers)
        self._calls: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, call: Callable[[], object]) -> None:
        """Run `call` soon; raises RuntimeError once closed or when no thread can start."""
        with self._lock:
            if self._closed:
                msg = "background calls are closed"
                raise RuntimeError(msg)
            if self._idle <= 0 and len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=self._run, name=f"copernica-ahead_{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
                self._idle += 1
            self._idle -= 1
            self._calls.put(call)

    def close(self) -> None:
        """Drop the calls not started; each thread ends after the call it runs."""
        with self._lock:
            self._closed = True
            while True:
                try:
                    self._calls.get_nowait()
                except queue.Empty:
                    break
            for _ in self._threads:
                self._calls.put(None)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call()
            except Exception as exc:  # the call settles its own outcome
                _log.debug("A call read ahead failed: %s", exc)
            with self._lock:
                self._idle += 1
