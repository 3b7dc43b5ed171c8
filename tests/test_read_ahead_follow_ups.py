"""What is read ahead beyond each partition's first request: two streams with the same URL
each get their own answer, a profile scan's highest-ID request follows a full first page
under latency (and only then, without holding that page back), a full list page has the
next one read ahead, plans go out before anything is taken, and the emailing lists (and
the first profile page of a database named by ID) come with the account's structure."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.payloads import rows_of
from copernica_emulator import Emulator
from tap_copernica import prefetch, readahead
from tap_copernica.paging import ids_of
from tap_copernica.readahead import Entry, Outcome, ReadAhead, request_key
from tap_copernica.streams.base import run_ahead
from tap_copernica.streams.profiles import ProfileStream
from tap_copernica.streams.typed import TypedProfileStream
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for
from tests.singer import catalog_selecting, sync


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(seed=42, profiles_per_database=1500) as emulator:
        yield emulator


def test_two_streams_planning_one_url_each_take_their_own_answer(emu: Emulator) -> None:
    """`profiles` and `profiles_<database>` ask the same first page: when plans were keyed
    by URL alone, the second stream's entry was dropped as a duplicate and that stream sent
    the request itself, a round trip late."""
    tap = TapCopernica(config=config_for(emu, page_size=1000))
    typed = next(s for s in tap.streams.values() if isinstance(s, TypedProfileStream))
    generic = tap.streams["profiles"]
    assert isinstance(generic, ProfileStream)
    (context,) = typed.partitions or []
    ahead = tap.services.read_ahead
    ahead.configure(2)
    pages = {s.name: s.prepare_page(context, s.first_request(context)) for s in (generic, typed)}
    assert pages[generic.name].url == pages[typed.name].url
    entries = [s.ahead(context, s.first_request(context)) for s in (generic, typed)]
    since = len(emu.requests)
    with ahead.plan(entries):
        for stream in (generic, typed):
            response = stream.serve_prefetched(pages[stream.name])
            assert response is not None, stream.name
            assert response.status_code == 200
    # One each, both read ahead (a first page sent again by its stream would be a third);
    # a slow answer may bring the scans' follow-ups (the highest ID), not counted here.
    first_page = urlsplit(str(pages[generic.name].url)).path
    sent = [
        r.path
        for r in emu.requests[since:]
        if "order" not in r.query and r.query.get("fields[]") == ["id>0"]
    ]
    assert sent == [first_page, first_page]


def typed_stream(emu: Emulator, **config: Any) -> tuple[TapCopernica, Any, dict[str, Any]]:
    """A tap, its typed stream of the first database and that stream's partition."""
    # Pages of 200 profiles: answered well within `readahead.FOLLOW_UP_WAIT_S` without latency.
    # No page helpers: the tests take the records from `get_records`, and pages a helper
    # encodes go straight to the output instead (tests/test_page_helpers.py).
    tap = TapCopernica(config=config_for(emu, page_size=200, helper_processes=0, **config))
    stream = next(s for s in tap.streams.values() if s.name.startswith("profiles_"))
    tap.services.read_ahead.configure(4)
    (context,) = stream.partitions or []
    return tap, stream, context


def highest_id_requests(emu: Emulator, since: int) -> list[Any]:
    return [
        r
        for r in emu.requests[since:]
        if r.path.endswith("/profiles") and r.query.get("order") == ["desc"]
    ]


def test_a_full_first_page_under_latency_has_its_highest_id_read_ahead(emu: Emulator) -> None:
    """The highest ID is asked in the background: the first page is handed back at once
    (whatever was planned after it does not wait for the follow-up), and the stream's own
    request for the highest ID takes the answer instead of sending it."""
    tap, stream, context = typed_stream(emu)
    first = stream.first_request(context)
    entry = stream.ahead(context, first)
    prepared = stream.prepare_page(context, stream._highest(first["fields[]"]))
    emu.faults.latency_ms = 150
    since = len(emu.requests)
    try:
        response = entry.send()
        assert highest_id_requests(emu, since) == [], "the first page waited for its follow-up"
        outcome = tap.services.read_ahead.take(request_key(stream.name, str(prepared.url)))
    finally:
        emu.faults.latency_ms = 0
    assert response.status_code == 200
    (probe,) = highest_id_requests(emu, since)
    assert probe.query["limit"] == ["1"]
    assert outcome is not None
    assert outcome.response is not None
    assert outcome.response.json()["data"][0]["ID"]


def test_a_first_page_its_stream_asked_itself_has_its_highest_id_asked_at_once() -> None:
    """A first page not read ahead (a stream synced on its own) has the highest ID asked
    as soon as it is in, while its records are handed on: by the first record the request
    is on its way, and the scan takes its answer instead of asking again. (An emulator of
    its own: no other test's requests read ahead arrive while this one counts.)"""
    with Emulator(seed=42, profiles_per_database=1500) as emu:
        _asked_at_once(emu)


def _asked_at_once(emu: Emulator) -> None:
    tap, stream, context = typed_stream(emu)
    first = stream.first_request(context)
    key = request_key(
        stream.name, str(stream.prepare_page(context, stream._highest(first["fields[]"])).url)
    )
    emu.faults.latency_ms = 150
    since = len(emu.requests)
    try:
        records = iter(stream.get_records(context))
        head = next(records)
        assert tap.services.read_ahead.holds(key), "the highest ID waited for the page's records"
        rest = list(records)
    finally:
        emu.faults.latency_ms = 0
    assert len(highest_id_requests(emu, since)) == 1
    assert len({head["ID"], *(r["ID"] for r in rest)}) == 1 + len(rest) == 1500
    # Nothing asked twice: the ranges read ahead are the scan's own requests.
    asked = [(r.path, sorted(r.query.items())) for r in emu.requests[since:]]
    assert len(asked) == len({repr(a) for a in asked})


def test_a_fast_api_gets_no_highest_id_request_ahead(emu: Emulator) -> None:
    """Without latency the scan reads page by page and never asks the highest ID."""
    _, stream, context = typed_stream(emu)
    entry = stream.ahead(context, stream.first_request(context))
    since = len(emu.requests)
    assert entry.send().status_code == 200
    assert highest_id_requests(emu, since) == []


def test_a_page_that_is_not_full_gets_no_highest_id_request_ahead(emu: Emulator) -> None:
    _, stream, context = typed_stream(emu, start_date="2999-01-01T00:00:00Z")
    entry = stream.ahead(context, stream.first_request(context))
    emu.faults.latency_ms = 150
    since = len(emu.requests)
    try:
        assert entry.send().status_code == 200
    finally:
        emu.faults.latency_ms = 0
    assert highest_id_requests(emu, since) == []


def test_a_run_under_latency_reads_the_same_profiles_with_the_same_requests(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follow-up takes the place of the scan's own request: under latency the typed and
    generic streams give the records of a run with one request at a time, with as many
    requests as a run that reads no highest ID ahead, each highest ID asked once per stream."""
    config = config_for(emu, page_size=1000)
    typed = [s for s in catalog_names(config) if s.startswith("profiles_")]
    names = ["profiles", *typed, "profile_ids"]  # ID lists: pages of 1,000 follow ahead too
    serial = sync({**config, "max_parallel_requests": 1}, streams=names)
    assert serial.exit_code == 0
    runs = {}
    for follow_ups in (False, True):
        with monkeypatch.context() as patch:
            if not follow_ups:
                patch.setattr(readahead, "FOLLOW_UP_WAIT_S", float("inf"))
            emu.faults.latency_ms = 150
            since = len(emu.requests)
            try:
                result = sync({**config, "max_parallel_requests": 4}, streams=names)
            finally:
                emu.faults.latency_ms = 0
        assert result.exit_code == 0
        for name in names:
            assert serial.records[name], name
            assert result.records[name] == serial.records[name], name
        highest = highest_id_requests(emu, since)
        runs[follow_ups] = (len(emu.requests) - since, len(highest))
        # `profiles` and the typed stream each ask a multi-page database's highest ID once.
        keys = [(r.path, tuple(r.query.get("fields[]", []))) for r in highest]
        assert keys, "no database fills more than a page"
        assert set(Counter(keys).values()) == {2}
    assert runs[True] == runs[False]


def catalog_names(config: dict[str, Any]) -> list[str]:
    catalog = catalog_selecting(config, [])
    assert catalog is not None
    return [entry["tap_stream_id"] for entry in catalog["streams"]]


def test_the_emailing_lists_come_with_the_structure_only_when_a_stream_needs_them(
    emu: Emulator,
) -> None:
    config = config_for(emu)
    chosen = {"emailing_ids": ["ms:1", "ms:2"]}
    budget = {"max_requests": 500}
    for streams, extra, products in (
        (["ms_emailing_statistics"], {}, ["ms"]),
        (["ms_emailing_statistics"], chosen, []),  # its partitions come from the setting
        (["ms_clicks"], chosen, ["ms"]),  # its windows start at the emailing's send time
        (["publisher_clicks", "ms_templates"], {}, ["publisher"]),
        (["ms_templates", "profiles"], {}, []),
        (["consumption"], {}, ["ms", "publisher"]),
        (["consumption"], budget, []),  # a budget reads nothing before it is needed
    ):
        catalog = catalog_selecting(config, streams)
        tap = TapCopernica(config={**config, **extra}, catalog=catalog)
        assert tap.emailing_lists_wanted() == products, (streams, extra)
    assert TapCopernica(config=config).emailing_lists_wanted() == []


def test_follow_ups_that_cannot_be_sent_never_keep_a_stream_waiting(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever stops follow-ups from going out (here: no thread can be started), their
    stream's own request finds nothing held and sends it itself, at once: it never waits
    for an answer that will not come."""

    class NoThreads:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def submit(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("can't start new thread")

        def close(self) -> None:
            pass

    ahead = ReadAhead()
    ahead.configure(2)
    session = requests.Session()
    url = f"{emu.base_url}/v4/databases"
    entries = [Entry("s", f"s {n}", partial(session.get, url, timeout=5)) for n in range(2)]
    monkeypatch.setattr(readahead, "Background", NoThreads)
    with pytest.raises(RuntimeError):
        ahead.follow_up(entries)
    done = threading.Event()
    outcomes: list[Outcome | None] = []

    def stream_takes() -> None:
        outcomes.append(ahead.take("s 0"))
        done.set()

    threading.Thread(target=stream_takes, daemon=True).start()
    assert done.wait(5), "a stream waits forever for a follow-up"
    assert outcomes == [None]  # nothing held: the stream sends the request itself
    assert not ahead.holds("s 1")


def test_follow_ups_hold_a_bounded_number_of_answers(emu: Emulator) -> None:
    """Beyond its room, a follow-up is not sent (its stream sends it when it gets there);
    taking an answer frees room for the next."""
    ahead = ReadAhead()
    ahead.configure(1 + 1)  # room for 6 answers
    session = requests.Session()
    url = f"{emu.base_url}/v4/databases"
    since = len(emu.requests)
    entries = [Entry("s", f"s {n}", partial(session.get, url, timeout=5)) for n in range(8)]
    keys = [entry.key for entry in entries]
    assert ahead.follow_up(entries) == keys[:6]
    assert ahead.holds("s 5")
    assert not ahead.holds("s 6")
    first = ahead.take("s 0")
    assert first is not None
    assert first.response is not None
    assert ahead.follow_up(entries[6:7]) == ["s 6"]  # taking an answer made room
    answers = [ahead.take(key) for key in keys[1:7]]
    assert all(a is not None and a.response is not None for a in answers)
    assert ahead.take("s 7") is None  # never sent: its stream sends it itself
    assert len(emu.requests) - since == 7
    ahead.close()


def id_list_stream(emu: Emulator) -> tuple[TapCopernica, Any, dict[str, Any]]:
    """A tap reading ahead, its `profile_ids` stream and the first database's partition
    (1,500 IDs: two pages of 1,000 that overlap by one)."""
    tap = TapCopernica(config=config_for(emu, page_size=1000))
    stream = tap.streams["profile_ids"]
    tap.services.read_ahead.configure(4)
    context = (stream.partitions or [])[0]
    return tap, stream, context


def test_a_full_list_page_under_latency_has_the_next_page_read_ahead(emu: Emulator) -> None:
    """The page the stream asks next (here the ID list's overlapping offset) is sent as
    soon as a full page read ahead is in, and the stream's own request takes it; a short
    page has nothing after it."""
    tap, stream, context = id_list_stream(emu)
    entry = stream.ahead(context, stream.first_request(context))
    second = request_key(stream.name, str(stream.prepare_page(context, {"start": 999}).url))
    third = request_key(stream.name, str(stream.prepare_page(context, {"start": 1998}).url))
    emu.faults.latency_ms = 150
    since = len(emu.requests)
    try:
        first = entry.send()
        assert tap.services.read_ahead.holds(second)
        outcome = tap.services.read_ahead.take(second)
    finally:
        emu.faults.latency_ms = 0
    assert outcome is not None
    assert outcome.response is not None
    ids = ids_of(rows_of(first.json()))
    following = ids_of(rows_of(outcome.response.json()))
    assert len(ids) == 1000
    assert following[0] == ids[-1]  # the pages overlap by one ID
    assert len(following) == 501
    assert not tap.services.read_ahead.holds(third)
    assert [r.query["start"] for r in emu.requests[since:]] == [["0"], ["999"]]
    tap.services.read_ahead.close()


def test_a_fast_api_gets_no_next_page_read_ahead(emu: Emulator) -> None:
    tap, stream, context = id_list_stream(emu)
    entry = stream.ahead(context, stream.first_request(context))
    since = len(emu.requests)
    assert entry.send().status_code == 200
    second = request_key(stream.name, str(stream.prepare_page(context, {"start": 999}).url))
    assert not tap.services.read_ahead.holds(second)
    assert len(emu.requests) - since == 1


def test_a_plan_is_on_the_wire_before_anything_is_taken(emu: Emulator) -> None:
    """The requests of a plan go out when it is made (the stream before it still syncing),
    not when its first answer is asked for."""
    ahead = ReadAhead()
    ahead.configure(2)
    session = requests.Session()
    url = f"{emu.base_url}/v4/databases"
    entries = [Entry("s", f"s {n}", partial(session.get, url, timeout=5)) for n in range(3)]
    since = len(emu.requests)
    with ahead.plan(entries):
        deadline = time.monotonic() + 5
        while len(emu.requests) - since < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(emu.requests) - since >= 2, "nothing read ahead until an answer was taken"


def test_the_one_object_streams_are_read_ahead(emu: Emulator) -> None:
    """`identity` (one object, no parameters) is planned like the other streams' first
    requests, instead of costing a round trip when its turn comes."""
    tap = TapCopernica(config=config_for(emu))
    tap.services.read_ahead.configure(4)
    planned = {entry.stream for entry in run_ahead(tap.streams.values())}
    assert {"identity", "database_unsubscribe", "ms_emailing_statistics"} <= planned


def test_a_plan_that_cannot_start_all_its_calls_does_not_hang(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan whose second thread cannot start raises to its stream. Before, it was started
    under the read-ahead's lock: its first call, a full page under latency, then waited
    for that lock to follow up, while the failing plan waited for that call."""

    class SecondThreadFails(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            SecondThreadFails.submitted += 1
            if SecondThreadFails.submitted == 2:
                raise RuntimeError("can't start new thread")
            return super().submit(*args, **kwargs)

    tap, stream, _ = id_list_stream(emu)
    ahead = tap.services.read_ahead
    entries = [stream.ahead(c, stream.first_request(c)) for c in (stream.partitions or [])[:2]]
    monkeypatch.setattr(prefetch, "ThreadPoolExecutor", SecondThreadFails)
    outcome: list[str] = []

    def make_plan() -> None:
        try:
            with ahead.plan(entries):
                outcome.append("planned")
        except RuntimeError as exc:
            outcome.append(str(exc))

    emu.faults.latency_ms = 150
    try:
        planner = threading.Thread(target=make_plan, daemon=True)
        planner.start()
        planner.join(10)
    finally:
        emu.faults.latency_ms = 0
    assert not planner.is_alive(), "the plan hangs"
    assert outcome == ["can't start new thread"]
    ahead.close()


def test_after_the_run_nothing_is_followed_up_and_nothing_holds_the_exit(emu: Emulator) -> None:
    """Follow-ups run on daemon threads (a run that ends, also by a fatal error, does not
    wait at exit for requests of streams it never reached); after `close` none is sent."""
    ahead = ReadAhead()
    ahead.configure(2)
    with ahead.slot("s"):  # a stream the API answered
        pass
    session = requests.Session()
    url = f"{emu.base_url}/v4/databases"
    entries = [Entry("s", f"s {n}", partial(session.get, url, timeout=5)) for n in range(3)]
    emu.faults.latency_ms = 150
    try:
        assert ahead.follow_up(entries[:1]) == ["s 0"]
        followers = [t for t in threading.enumerate() if t.name.startswith("copernica-ahead")]
        assert followers
        assert all(t.daemon for t in followers)
        ahead.close()
        since = len(emu.requests)
        assert ahead.follow_up(entries[1:]) == []
        assert ahead.take("s 0") is None  # nothing held after `close`: sent by its stream
    finally:
        emu.faults.latency_ms = 0
    time.sleep(0.3)
    assert [r for r in emu.requests[since:] if r.path == "/v4/databases"] == []


def test_profiles_of_a_database_named_by_id_are_read_beside_the_structure(
    emu: Emulator,
) -> None:
    """With `database_ids` by ID the first `profiles` page goes out with the account's
    structure (one round trip sooner) and is not asked again; by name, the database list
    has to resolve it first."""
    spans: list[tuple[float, float, str]] = []
    emu.on_response(lambda log: spans.append((log.at, time.time(), log.path)))
    config = config_for(emu, page_size=1000, database_ids=["1"])
    serial = sync({**config, "max_parallel_requests": 1}, streams=["profiles"])
    assert serial.exit_code == 0
    assert len(serial.records["profiles"]) > 1000  # a scan that plans ranges

    def read(database: str) -> tuple[bool, int]:
        """(whether the first profile page arrived before the database list was answered,
        requests for the database's profiles)"""
        spans.clear()
        emu.faults.latency_ms = 150
        try:
            result = sync(
                {**config, "max_parallel_requests": 4, "database_ids": [database]},
                streams=["profiles"],
            )
        finally:
            emu.faults.latency_ms = 0
        assert result.exit_code == 0
        assert result.records["profiles"] == serial.records["profiles"]
        listed = max(end for _, end, path in spans if path == "/v4/databases")
        pages = [start for start, _, path in spans if path == "/v4/database/1/profiles"]
        return min(pages) < listed, len(pages)

    by_id, by_name = read("1"), read("Customers")
    assert by_id[0]
    assert not by_name[0]
    assert by_id[1] == by_name[1]  # the page read beside is the one the stream takes


def test_input_a_run_refuses_stops_it_before_a_profile_page_is_read_beside(
    emu: Emulator,
) -> None:
    """Reading a page beside the structure must not cost a request that a bad setting or
    STATE would have stopped in a serial run: a misspelt database name next to an ID, or a
    STATE entry the tap refuses."""
    config = config_for(emu, page_size=1000, max_parallel_requests=8)
    catalog = catalog_selecting(config, ["profiles"])
    broken = {
        "bookmarks": {
            "profiles": {
                "partitions": [
                    {"context": {"database_id": 1}, "replication_key_value": "yesterday"}
                ]
            }
        }
    }
    # Another profile stream's entry is refused as well, also one of the wrong shape.
    elsewhere = {"bookmarks": {"subprofiles": broken["bookmarks"]["profiles"]}}
    shapeless = {"bookmarks": {"subprofiles": {"partitions": None}}}
    since = len(emu.requests)
    with pytest.raises(ConfigValidationError, match="Custmers"):
        sync({**config, "database_ids": ["1", "Custmers"]}, catalog=catalog)
    for state in (broken, elsewhere, shapeless):
        result = sync({**config, "database_ids": ["1"]}, catalog=catalog, state=state)
        assert result.exit_code == 1, state
    sent = [r.path for r in emu.requests[since:]]
    assert "/v4/database/1/profiles" not in sent, sent
