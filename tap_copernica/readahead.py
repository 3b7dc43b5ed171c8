"""Reading ahead: the first request of each partition sent before the SDK's loop reaches it.

The SDK reads a stream's partitions, and a parent's children record by record, one request
at a time. Before it starts, a stream plans the first request of each partition (and of its
children's, where the account already knows the parent records): `ReadAhead.plan` sends
them through `prefetch.in_order` with `max_parallel_requests` in flight, and the stream's
own request for that page takes the answer (`ReadAhead.take`, keyed by the stream and the
request's URL: `request_key`) instead of sending it. Only responses are read ahead:
parsing, records and STATE stay on the main thread in the SDK's order, so a run reads the
same records in the same order, with the same bookmarks, as a run with one request at a
time. A request nobody planned, or one planned differently (another URL), is simply sent.

A stream's first planned request goes alone: its other partitions are read ahead only once
it answered, so a resource the API refuses is asked once, as in a serial run, and ends the
stream only (`CopernicaStream.isolate_failure`).

A plan starts sending when it is made, while the stream before it still syncs.

A planned request's call may send what its stream will ask next once its answer shows it
(`ReadAhead.follow_up`: a profile scan's highest ID and first ranges after a full first
page, a list's next page after a full one). Follow-ups go out from threads of their own,
so the answer that prompted them is handed back at once (nothing planned after it waits);
their answers wait the same way, a bounded number at a time, and a stream never waits for
one that will not come.

`ReadAhead.slot` bounds the requests in flight across the whole tap (every request holds a
slot while it is on the wire), so plans, parallel profile reads and the main thread
together never exceed `max_parallel_requests`. The streams syncing now (`ReadAhead.syncing`)
have their requests go first; requests read ahead for later streams take the slots left.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from tap_copernica.prefetch import Background, Slots, in_order

if TYPE_CHECKING:
    import requests

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a request read ahead gave: a response, the error that ended it, or nothing
    (not sent: its stream's first request failed)."""

    response: requests.Response | None = None
    error: Exception | None = None


#: Requests of a plan sent ahead of the one its streams wait for, per request in flight:
#: plans hold many small requests (a partition's first page each), and the SDK waits for
#: them in order; the answers this keeps are bounded all the same (`_Plan._held`). Reading
#: further ahead pays only because the streams syncing now get slots first (`Slots`):
#: 4 → 8 made the whole account about 5 % faster with that order, slower without it.
PLAN_AHEAD = 8

#: A request read ahead that took this long to answer has what its stream sends next asked
#: at once (`ReadAhead.follow_up`): a real API's latency, well above what a page takes to
#: process. Without such latency, reading on from a worker costs more than it saves.
FOLLOW_UP_WAIT_S = 0.1


def worth_following(response: requests.Response) -> bool:
    """Whether `response` took a real API's latency (`FOLLOW_UP_WAIT_S`): then what its
    stream sends next is asked at once."""
    return response.elapsed.total_seconds() >= FOLLOW_UP_WAIT_S


#: A request that was planned but not sent (see `Outcome`).
NOT_SENT = Outcome()


def request_key(stream: str, url: str) -> str:
    """What a request read ahead is found by: its stream and URL. Two streams may send the
    same URL (`profiles` and the typed `profiles_<database>` read the same pages): each
    takes its own answer."""
    return f"{stream} {url}"


@dataclass(frozen=True)
class Entry:
    """One request to read ahead: its stream, its key (`request_key`) and its call."""

    stream: str
    key: str
    send: Callable[[], requests.Response]


@dataclass
class _Gate:
    """A stream's first request in a plan: the others of the stream wait for its answer."""

    done: threading.Event = field(default_factory=threading.Event)


class _FollowUp:
    """A request sent by another's call (`ReadAhead.follow_up`): its answer once there."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.answered = threading.Event()
        self.outcome = NOT_SENT

    def settle(self, outcome: Outcome) -> None:
        if not self.answered.is_set():
            self.outcome = outcome
            self.answered.set()


class _Plan:
    """The requests of one plan, answered in planning order; taken in any order.

    Answers wait in `_ready` until taken, at most `held` of them (the oldest is dropped
    beyond: its stream then sends the request itself). A stream whose sync ended
    (`ReadAhead.stream_done`) has its requests not started left unsent, and its answers
    dropped instead of kept.
    """

    def __init__(self, owner: ReadAhead, ordered: list[tuple[Entry, bool]]) -> None:
        self._owner = owner
        self.streams = {entry.key: entry.stream for entry, _ in ordered}
        self._order = deque(entry.key for entry, _ in ordered)
        self._pending = set(self._order)  # planned, answer not collected yet
        self._ready: dict[str, Outcome] = {}
        self._held = max(64, 4 * owner.workers)
        self._lock = threading.Lock()
        self._gates: list[_Gate] = []
        self.closed = threading.Event()
        self._ordered = ordered
        self._results: Generator[Outcome, None, None] | None = None

    def start(self) -> None:
        """Start sending (outside `ReadAhead`'s lock: a call may follow up at once)."""
        with self._lock:
            self._started()

    def _started(self) -> Generator[Outcome, None, None]:
        """The answers in planning order, the first calls sent (under `_lock`)."""
        if self._results is None:
            workers = self._owner.workers
            self._results = in_order(self._calls(self._ordered), workers, PLAN_AHEAD * workers)
        return self._results

    def take(self, key: str) -> Outcome:
        """The outcome of `key`, collecting (and keeping) the ones planned before it."""
        with self._lock:
            while key in self._pending and not self.closed.is_set():
                collected = self._order.popleft()
                self._pending.discard(collected)
                outcome = next(self._started())
                if collected == key or self.streams[collected] not in self._owner.done:
                    self._ready[collected] = outcome
                while len(self._ready) > self._held:  # the oldest: sent again if wanted
                    del self._ready[next(iter(self._ready))]
            return self._ready.pop(key, NOT_SENT)

    def drop(self, streams: set[str]) -> None:
        """Forget the answers held for `streams` (their syncs ended)."""
        with self._lock:
            for key in [k for k in self._ready if self.streams[k] in streams]:
                del self._ready[key]

    def close(self) -> None:
        """Cancel what has not started; drop what nobody took. Every gate opens first: a
        request waiting for its stream's first (perhaps cancelled) request returns at once
        instead of holding the pool's shutdown forever."""
        self.closed.set()
        for gate in list(self._gates):
            gate.done.set()
        with self._lock:
            if self._results is not None:
                self._results.close()
            self._ready.clear()
            self._pending.clear()

    def _calls(self, ordered: list[tuple[Entry, bool]]) -> Iterator[Callable[[], Outcome]]:
        """Each entry's call; a stream not yet proven has its first entry (its leader, which
        comes earlier) go alone, the others wait for its answer."""
        gates: dict[str, _Gate] = {}
        for entry, leads in ordered:
            if leads:
                gates[entry.stream] = gate = _Gate()
                self._gates.append(gate)
                if self.closed.is_set():
                    gate.done.set()
                yield partial(self._send, entry, gate)
            elif entry.stream in gates:
                yield partial(self._follow, entry, gates[entry.stream])
            else:
                yield partial(self._send, entry, None)

    def _send(self, entry: Entry, gate: _Gate | None) -> Outcome:
        try:
            owner = self._owner
            if self.closed.is_set() or entry.stream in owner.failed or entry.stream in owner.done:
                return NOT_SENT
            try:
                response = entry.send()
            except Exception as exc:  # handed to the stream, raised at its turn
                owner.failed.add(entry.stream)
                return Outcome(error=exc)
            return Outcome(response=response)
        finally:
            if gate is not None:
                gate.done.set()

    def _follow(self, entry: Entry, gate: _Gate) -> Outcome:
        gate.done.wait()
        return self._send(entry, None)


class ReadAhead:
    """The tap's plans of requests read ahead, and its bound on requests in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned: dict[str, _Plan] = {}
        self._proven: set[str] = set()  # streams a request of which succeeded
        #: streams whose request read ahead failed
        self.failed: set[str] = set()
        #: streams whose sync ended: nothing more of theirs is read ahead
        self.done: set[str] = set()
        self._slots: Slots | None = None
        #: the streams the run syncs now (a top-level stream and its descendants)
        self._syncing: frozenset[str] = frozenset()
        self.workers = 1
        self._budgeted = False
        #: requests sent after a planned one by its call (`follow_up`), by key
        self._follow_ups: dict[str, _FollowUp] = {}
        #: how many more follow-up answers may be held (`configure` sets it)
        self._room = 0
        self._pool: Background | None = None  # follow-ups' threads, made when needed
        self._closed = False  # the run ended (`close`): nothing more is followed up

    def configure(self, workers: int, *, budgeted: bool = False) -> None:
        """Allow `workers` requests in flight (the first call decides, once per run).

        With a request budget (`max_requests`) nothing is read ahead across partitions: a
        request read ahead for a partition the run does not reach before the budget is
        spent would be lost, and with a small budget every run could lose its budget that
        way and none get further. Each budgeted run spends its requests on what it reads
        next, as a serial run does (reads within a partition still overlap).
        """
        with self._lock:
            if self._slots is None:
                self.workers = max(1, workers)
                self._budgeted = budgeted
                # Two partitions' worth of a profile scan's highest ID and first ranges.
                self._room = 2 * (self.workers + 1)
                self._slots = Slots(self.workers)

    @property
    def planning(self) -> bool:
        """Whether requests are read ahead across partitions at all."""
        return self.workers > 1 and not self._budgeted

    @contextlib.contextmanager
    def slot(self, stream: str) -> Iterator[None]:
        """Held while one request of `stream` is on the wire; a request that succeeds
        proves the stream (its partitions are then read ahead without waiting). The
        streams syncing now get a slot before requests read ahead for later ones."""
        slots = self._slots
        if slots is None:
            yield
        else:
            slots.acquire(urgent=stream in self._syncing)
            try:
                yield
            finally:
                slots.release()
        self._proven.add(stream)

    @contextlib.contextmanager
    def syncing(self, streams: Iterable[str]) -> Iterator[None]:
        """While the block runs, `streams` are the ones the run syncs now (their requests
        go first, `slot`)."""
        now = frozenset(streams)
        self._syncing = now
        try:
            yield
        finally:
            if self._syncing is now:
                self._syncing = frozenset()

    def take(self, key: str) -> Outcome | None:
        """The outcome of the planned request `key`, or None when none is planned (a
        follow-up still on its way is waited for: it is sent no sooner by its stream)."""
        with self._lock:
            follow_up = self._forget(key)
            plan = self._planned.pop(key, None) if follow_up is None else None
        if follow_up is not None:
            follow_up.answered.wait()
            return follow_up.outcome
        if plan is None:
            return None
        return plan.take(key)

    def holds(self, key: str) -> bool:
        """Whether `key` was followed up (`follow_up`) and not taken yet."""
        with self._lock:
            return key in self._follow_ups

    def follow_up(
        self, entries: list[Entry], then: Callable[[list[Outcome]], None] | None = None
    ) -> list[str]:
        """Send `entries` in the background, side by side, and keep their answers until their
        streams take them; returns at once, with the keys of the entries sent. Called by a
        planned request's call that found out what its stream sends next (a profile scan's
        highest ID, a list's next page): its own answer is not held back meanwhile, so
        nothing planned after it waits. Also called by the tap for the first profile pages
        it can guess before the account's structure is read (`read_profiles_ahead`).
        `then` gets the outcomes once all are in (from the thread of the last one), to
        follow up further.

        Left out: entries planned or followed up already, of a stream that ended or failed,
        and beyond `_room` answers held at once (bounds memory). A stream whose request was
        left out sends it itself when it gets there.
        """
        if not self.planning:
            return []
        with self._lock:
            fresh = [e for e in entries if self._unasked(e) and e.stream not in self.failed]
            fresh = fresh[: max(0, self._room)] if not self._closed else []
            self._room -= len(fresh)
            waiting = {entry.key: _FollowUp(entry.stream) for entry in fresh}
            self._follow_ups.update(waiting)
        if not fresh:
            return []
        results: dict[str, Outcome] = {}
        collected = threading.Lock()

        def send(entry: Entry) -> None:
            outcome = NOT_SENT
            try:
                outcome = self._outcome_of(entry)
                with collected:
                    results[entry.key] = outcome
                    last = len(results) == len(fresh)
                if last and then is not None:
                    then([results[e.key] for e in fresh])
            except Exception as exc:  # only saves time: the stream's own reads report it
                _log.debug("Not reading on ahead: %s", exc)
            finally:  # after `then`: what it follows up is known before the answer is used
                waiting[entry.key].settle(outcome)

        submitted: list[str] = []
        try:
            pool = self._background()
            for entry in fresh:
                if pool is None:  # the run ended meanwhile
                    break
                pool.submit(partial(send, entry))
                submitted.append(entry.key)
        finally:  # whatever went wrong, nobody waits for an answer that will not come
            unsent = [key for key in waiting if key not in submitted]
            with self._lock:
                for key in unsent:
                    self._forget(key)
            for key in unsent:
                waiting[key].settle(NOT_SENT)
        return submitted

    def _background(self) -> Background | None:
        """The threads that send follow-ups (as many as requests may be in flight; each
        request still waits for its slot); None once the run ended."""
        with self._lock:
            if self._pool is None and not self._closed:
                self._pool = Background(self.workers)
            return self._pool

    def close(self) -> None:
        """The run ended: follow-ups not sent yet are dropped, their threads let go."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            left = list(self._follow_ups.values())
            self._follow_ups.clear()
        for follow_up in left:
            follow_up.settle(NOT_SENT)
        if pool is not None:
            pool.close()

    def _outcome_of(self, entry: Entry) -> Outcome:
        if entry.stream in self.done or entry.stream in self.failed:
            return NOT_SENT  # its stream ended meanwhile
        try:
            return Outcome(response=entry.send())
        except Exception as exc:  # raised at the stream's turn, as if sent then
            self.failed.add(entry.stream)
            return Outcome(error=exc)

    def _forget(self, key: str) -> _FollowUp | None:
        """Remove a follow-up (taken, or of an ended stream): its room is free again."""
        follow_up = self._follow_ups.pop(key, None)
        if follow_up is not None:
            self._room += 1
        return follow_up

    def stream_done(self, streams: Iterable[str]) -> None:
        """The syncs of `streams` ended: what is planned for them is neither sent nor kept."""
        names = set(streams)
        with self._lock:
            self.done |= names
            for key in [k for k, f in self._follow_ups.items() if f.stream in names]:
                forgotten = self._forget(key)
                if forgotten is not None:
                    forgotten.settle(NOT_SENT)
            plans = set(self._planned.values())
            for key in [k for k, plan in self._planned.items() if plan.streams[k] in names]:
                del self._planned[key]
        for plan in plans:
            plan.drop(names)

    @contextlib.contextmanager
    def plan(self, entries: Iterable[Entry]) -> Iterator[None]:
        """Read `entries` ahead (in this order) while the block runs; what the block did not
        take is dropped at its end. Nothing is read ahead with one request in flight (or a
        budget), nor a request already planned, nor one of a stream whose sync ended."""
        if not self.planning:
            yield
            return
        with self._lock:  # one hold: two plans never both take a key
            fresh: list[Entry] = []
            seen: set[str] = set()
            for entry in entries:
                if self._unasked(entry) and entry.key not in seen:
                    seen.add(entry.key)
                    fresh.append(entry)
            plan = _Plan(self, self._leaders_early(fresh)) if len(fresh) >= 2 else None
            if plan is not None:
                for key in plan.streams:
                    self._planned[key] = plan
        if plan is None:
            yield
            return
        try:
            plan.start()  # the keys are known first: no request is sent twice
            yield
        finally:
            with self._lock:
                for key in plan.streams:
                    if self._planned.get(key) is plan:
                        del self._planned[key]
            plan.close()

    def _unasked(self, entry: Entry) -> bool:
        """Neither planned nor followed up yet, and its stream still syncing (under the lock)."""
        return (
            entry.key not in self._planned
            and entry.key not in self._follow_ups
            and entry.stream not in self.done
        )

    def _leaders_early(self, entries: list[Entry]) -> list[tuple[Entry, bool]]:
        """The entries, each with whether it leads its stream (the first of a stream not
        yet proven). A leader moves up by as many calls as `in_order` runs ahead: by the
        time its stream's other entries start, it has (mostly) answered, so they do not
        wait with a thread each while nothing else is sent."""
        ahead = PLAN_AHEAD * self.workers
        leaders: set[str] = set()
        ranked: list[tuple[int, int, Entry, bool]] = []
        for position, entry in enumerate(entries):
            leads = entry.stream not in self._proven and entry.stream not in leaders
            if leads:
                leaders.add(entry.stream)
            ranked.append((position - ahead if leads else position, position, entry, leads))
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [(entry, leads) for _, _, entry, leads in ranked]
