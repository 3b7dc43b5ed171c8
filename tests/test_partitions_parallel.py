"""Partitions read in parallel (`readahead.py`): the same records, order and STATE as a run
with one request at a time, requests overlapping but never more than allowed, and no request
the data did not need."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import requests

from copernica_api.payloads import dict_rows, payload_of
from copernica_emulator import Emulator
from copernica_emulator.mailings import add_emailing, data_of
from copernica_emulator.messages import RequestLog
from tap_copernica import prefetch, readahead
from tap_copernica.readahead import Entry, ReadAhead
from tap_copernica.streams.structure import RulesStream
from tap_copernica.streams.typed import TypedProfileStream
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for
from tests.singer import SyncResult, catalog_selecting, sync

#: Streams read per database, per collection, per view or per emailing.
PARTITIONED = [
    "databases",
    "database_fields",
    "database_interests",
    "collections",
    "collection_fields",
    "views",
    "view_rules",
    "rule_conditions",
    "miniviews",
    "minirules",
    "miniconditions",
    "database_unsubscribe",
    "collection_unsubscribe",
    "profile_ids",
    "subprofile_ids",
    *(
        f"{product}_emailing_{kind}"
        for product in ("ms", "publisher")
        for kind in ("statistics", "snapshot", "destinations")
    ),
]
#: STATE of these holds the server's time of the run (the window's end), not compared.
CLOCKED = {"ms_emailing_destinations", "publisher_emailing_destinations"}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(seed=42, profiles_per_database=1500) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def serial(emu: Emulator) -> SyncResult:
    result = sync(config_for(emu, max_parallel_requests=1, page_size=500), streams=PARTITIONED)
    assert result.exit_code == 0
    return result


def paths(emu: Emulator) -> Counter[str]:
    """Requests per API path, IDs replaced by N."""
    return Counter(re.sub(r"/\d+", "/N", r.path) for r in emu.requests)


def record_messages(result: SyncResult) -> list[tuple[str, Any]]:
    """Every RECORD in output order, without the extraction time."""
    return [(m["stream"], m["record"]) for m in result.messages if m["type"] == "RECORD"]


def states_in_order(result: SyncResult) -> list[tuple[int, dict[str, Any]]]:
    """Each STATE (without the clocked streams) with the number of records before it."""
    states: list[tuple[int, dict[str, Any]]] = []
    records = 0
    for message in result.messages:
        if message["type"] == "RECORD":
            records += 1
        elif message["type"] == "STATE":
            bookmarks = message["value"].get("bookmarks", {})
            kept = {k: v for k, v in bookmarks.items() if k not in CLOCKED}
            states.append((records, kept))
    return states


def test_parallel_run_gives_the_serial_records_order_and_state(
    emu: Emulator, serial: SyncResult
) -> None:
    result = sync(config_for(emu, max_parallel_requests=4, page_size=500), streams=PARTITIONED)
    assert result.exit_code == 0
    for stream in PARTITIONED:
        assert serial.records[stream], stream  # every stream has records to compare
        assert result.records[stream] == serial.records[stream], stream
    # Across streams too: the records leave in the same interleaving (parents, children).
    assert record_messages(result) == record_messages(serial)
    # Every STATE message too, at the same place among the records.
    assert states_in_order(result) == states_in_order(serial)
    bookmarks = result.final_state["bookmarks"]
    expected = serial.final_state["bookmarks"]
    assert set(bookmarks) == set(expected)
    for stream in set(expected) - CLOCKED:
        assert bookmarks[stream] == expected[stream], stream


@pytest.fixture
def slow_emu() -> Iterator[Emulator]:
    with Emulator(seed=42, profiles_per_database=30) as emulator:
        emulator.faults.latency_ms = 50
        yield emulator


class InFlight:
    """The emulator's requests as (received, answered) intervals, by path."""

    def __init__(self, emu: Emulator) -> None:
        self.spans: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()
        emu.on_response(self.answered)

    def answered(self, log: RequestLog) -> None:
        with self._lock:
            self.spans.append((log.at, time.time(), log.path))

    def most_at_once(self, pattern: str = "") -> int:
        """The most requests (whose path matches `pattern`) on the server at one moment."""
        events = sorted(
            (moment, step)
            for start, end, path in self.spans
            if re.search(pattern, path)
            for moment, step in ((start, 1), (end, -1))
        )
        most = current = 0
        for _, step in events:  # at a tie, an answer (-1) sorts before an arrival
            current += step
            most = max(most, current)
        return most


@pytest.mark.parametrize("workers", [4, 2])
def test_partitions_overlap_within_max_parallel_requests(slow_emu: Emulator, workers: int) -> None:
    flight = InFlight(slow_emu)
    result = sync(config_for(slow_emu, max_parallel_requests=workers), streams=PARTITIONED)
    assert result.exit_code == 0
    assert flight.most_at_once() == workers  # the bound is used, never exceeded
    if workers < 4:
        # With two slots, which family shares them at a given moment is down to timing.
        return
    # Each family of partitions overlapped: per emailing, per database, per collection.
    for pattern in (
        r"/ms/emailing/\d+/statistics$",
        r"/publisher/emailing/\d+/snapshot$",
        r"/database/\d+/(interests|views|unsubscribe|profileids)$",
        r"/collection/\d+/(miniviews|unsubscribe|subprofileids)$",
    ):
        assert flight.most_at_once(pattern) >= 2, pattern


def _slot_order(read_ahead: ReadAhead, streams: list[str]) -> list[str]:
    """The order in which requests of `streams` get the one slot, asked in this order
    while it is taken."""
    got: list[str] = []
    threads: list[threading.Thread] = []

    def request(stream: str) -> None:
        with read_ahead.slot(stream):
            got.append(stream)

    with read_ahead.slot("holder"):
        for stream in streams:
            threads.append(threading.Thread(target=request, args=(stream,)))
            threads[-1].start()
            time.sleep(0.05)  # each waits before the next asks
    for thread in threads:
        thread.join(5)
    return got


def test_the_streams_syncing_now_get_the_slots_first() -> None:
    # Requests read ahead for later streams only save time later: a request of a stream
    # the run waits for now goes before them, also when it asked last.
    read_ahead = ReadAhead()
    read_ahead.configure(1)
    with read_ahead.syncing(["views", "view_rules"]):
        order = _slot_order(read_ahead, ["ms_emailings", "templates", "view_rules"])
    assert order == ["view_rules", "ms_emailings", "templates"]
    # Without a stream syncing, first come, first served.
    assert _slot_order(read_ahead, ["ms_emailings", "templates", "view_rules"]) == [
        "ms_emailings",
        "templates",
        "view_rules",
    ]


def test_a_request_interrupted_while_waiting_for_a_slot_loses_no_slot() -> None:
    # Ctrl-C (or a signal's exit) while the main thread waits: the slot it would have got
    # goes to the next request, as a semaphore would give it.
    slots = prefetch.Slots(1)
    slots.acquire(urgent=False)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            slots.acquire(urgent=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    slots.release()
    got = threading.Event()

    def request() -> None:
        slots.acquire(urgent=False)
        got.set()

    waiter = threading.Thread(target=request, daemon=True)  # never holds the exit
    waiter.start()
    assert got.wait(5)  # the slot was not handed to the interrupted request
    waiter.join(5)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def test_one_request_at_a_time_with_max_parallel_requests_1(slow_emu: Emulator) -> None:
    flight = InFlight(slow_emu)
    result = sync(config_for(slow_emu, max_parallel_requests=1), streams=PARTITIONED)
    assert result.exit_code == 0
    assert flight.most_at_once() == 1


def test_no_request_the_data_did_not_need(emu: Emulator, serial: SyncResult) -> None:
    config = config_for(emu)
    catalog = catalog_selecting(config, PARTITIONED)  # discovery: a run of its own
    emu.requests.clear()
    result = sync(config, catalog=catalog)
    assert result.exit_code == 0
    store_views = serial.records["views"]
    databases = len(serial.records["databases"])
    collections = len(serial.records["collections"])
    counts = paths(emu)
    # Read once by the account for discovery, not again by their streams.
    assert counts["/v4/database/N/fields"] == databases
    assert counts["/v4/database/N/collections"] == databases
    assert counts["/v4/collection/N/fields"] == collections
    # A view's rules and nested views only where its record says it has some.
    with_rules = [v for v in store_views if v["has-rules"]]
    assert 0 < len(with_rules) < len(store_views)
    assert counts["/v4/view/N/rules"] == len(with_rules)
    assert counts["/v4/view/N/views"] == sum(v["has-children"] for v in store_views)
    # Nothing read ahead that nobody took: one request per emailing, database, collection.
    emailings = {p: len(serial.records[f"{p}_emailing_statistics"]) for p in ("ms", "publisher")}
    for product, count in emailings.items():
        assert counts[f"/v4/{product}/emailing/N/statistics"] == count
        assert counts[f"/v4/{product}/emailing/N/snapshot"] == count
    assert counts["/v4/database/N/unsubscribe"] == databases
    assert counts["/v4/collection/N/unsubscribe"] == collections
    assert counts["/v4/collection/N/subprofileids"] == collections
    assert counts["/v4/collection/N/miniviews"] == collections


def test_a_refused_partition_ends_only_its_stream(
    emu: Emulator, serial: SyncResult, caplog: pytest.LogCaptureFixture
) -> None:
    emailings = [r["emailing_id"] for r in serial.records["ms_emailing_statistics"]]
    refused = emailings[2]
    emu.faults.clear()
    emu.requests.clear()
    emu.faults.add("notfound404", path=rf"/ms/emailing/{refused}/statistics$")
    try:
        result = sync(config_for(emu, max_parallel_requests=4), streams=PARTITIONED)
    finally:
        emu.faults.clear()
    assert result.exit_code == 3
    # The refusal read ahead is the stream's error at its turn: not asked a second time.
    refusals = [r for r in emu.requests if r.path == f"/v4/ms/emailing/{refused}/statistics"]
    assert [r.status for r in refusals] == [404]
    # The partitions before the refused one were written, none after it; the rest finished.
    assert result.records["ms_emailing_statistics"] == serial.records["ms_emailing_statistics"][:2]
    for stream in set(PARTITIONED) - {"ms_emailing_statistics"}:
        assert result.records[stream] == serial.records[stream], stream
    assert "Stream 'ms_emailing_statistics' failed: Copernica API refused GET " in caplog.text
    assert f"/v4/ms/emailing/{refused}/statistics with HTTP 404" in caplog.text


def test_a_plan_that_fails_ends_no_stream(
    emu: Emulator, serial: SyncResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Planning a child's first request (here: each view's rules, planned from the views'
    # pages) fails: nothing of it is read ahead, and every stream reads as in a serial run.
    def broken(self: RulesStream, context: object) -> None:
        raise RuntimeError("planning broke")

    monkeypatch.setattr(RulesStream, "first_request", broken)
    result = sync(config_for(emu, max_parallel_requests=4, page_size=500), streams=PARTITIONED)
    assert result.exit_code == 0
    for stream in PARTITIONED:
        assert result.records[stream] == serial.records[stream], stream


def test_a_stream_that_stops_early_sends_no_more_of_its_plan(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every emailing's first destinations page is planned with the run's other streams; the
    # stream stops at its first emailing's second page (refused): the first pages of the
    # other emailings are not sent after that (only those already in flight).
    with Emulator(seed=42, profiles_per_database=30) as emu:
        for _ in range(100):
            add_emailing(emu.store, "ms", "2026-11-20 10:00:00", recipients=1)
        first = data_of(emu.store).emailings["ms"][0].id
        emu.faults.add("notfound404", path=rf"/ms/emailing/{first}/destinations$", after=1)
        config = config_for(emu, max_parallel_requests=2, page_size=2)
        catalog = catalog_selecting(config, ["ms_emailing_destinations", "ms_emailing_statistics"])
        emu.requests.clear()
        result = sync(config, catalog=catalog)
        counts = paths(emu)
    assert result.exit_code == 3
    assert "Stream 'ms_emailing_destinations' failed" in caplog.text
    assert len(result.records["ms_emailing_statistics"]) == 108
    # Two pages of the first emailing, and what was handed out then (a plan's window).
    assert counts["/v4/ms/emailing/N/destinations"] <= 2 + readahead.PLAN_AHEAD * 2


def test_closing_a_plan_never_leaves_a_request_waiting(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan closed early (its stream stopped) cancels what has not started. A thread that
    frees up while the pool cancels can still start a stream's second request after its
    first (which it waits for) was cancelled: that request must return, or the pool's
    shutdown waits for it forever. `in_order` is replaced by one that always loses that
    race (the timing cannot be forced through the real pool)."""
    started: list[threading.Thread] = []

    def losing_the_race(
        calls: Iterator[Callable[[], Any]], workers: int, ahead: int | None = None
    ) -> Iterator[Any]:
        todo = iter(calls)
        try:
            yield next(todo)()
        finally:
            next(todo, None)  # cancelled before a thread took it
            call = next(todo, None)  # taken by a thread before it was cancelled
            if call is not None:
                thread = threading.Thread(target=call, daemon=True)
                thread.start()
                started.append(thread)
                thread.join(timeout=5)

    monkeypatch.setattr(readahead, "in_order", losing_the_race)
    session = requests.Session()
    url = f"{emu.base_url}/v4/databases"
    ahead = ReadAhead()
    ahead.configure(2)
    entries = [
        Entry("one", "one/0", partial(session.get, url, timeout=5)),
        Entry("two", "two/0", partial(session.get, url, timeout=5)),
        Entry("two", "two/1", partial(session.get, url, timeout=5)),
    ]
    with ahead.plan(entries):
        outcome = ahead.take("one/0")
        assert outcome is not None
        assert outcome.response is not None
    assert len(started) == 1
    assert not started[0].is_alive(), "a request read ahead waits forever"


def test_a_page_is_decoded_once_its_request_gave_back_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decoding a page (a typed stream builds its records then) holds no request slot: with
    several requests in flight, the next one goes out while a page is decoded."""
    with Emulator(seed=3, profiles_per_database=40) as emu:
        tap = TapCopernica(config=config_for(emu, max_parallel_requests=2))
        stream = tap.streams["profiles_customers"]
        assert isinstance(stream, TypedProfileStream)
        events: list[str] = []
        take_slot = stream.request_slot

        @contextmanager
        def logged_slot() -> Iterator[None]:
            with take_slot():
                events.append("slot taken")
                yield
            events.append("slot given back")

        decode = stream.decode_body
        assert decode is not None

        def logged_decode(content: bytes) -> Any:
            events.append("page decoded")
            return decode(content)

        monkeypatch.setattr(stream, "request_slot", logged_slot)
        monkeypatch.setattr(stream, "decode_body", logged_decode)
        (context,) = stream.partitions or []
        rows = dict_rows(payload_of(stream.fetch(context, stream.first_request(context))))
    assert events == ["slot taken", "slot given back", "page decoded"]
    assert len(rows) == 40
    assert all(isinstance(row["ID"], int) for row in rows)  # the typed stream's records
