"""Event windows that never start before the data can exist and adapt their length to it,
while staying exact and resumable (`tap_copernica/windows.py`)."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import time
from contextlib import redirect_stdout
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from copernica_api.timeutil import parse_instant, to_api
from copernica_emulator import Emulator
from copernica_emulator.mailings import EVENT_KINDS, PRODUCTS, add_event, data_of
from copernica_emulator.structure import consumption
from tap_copernica.streams.mailings import WindowedStream
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for
from tests.singer import SyncResult, catalog_selecting, sync

TZ = ZoneInfo("Europe/Amsterdam")
HOUR = 3600
EVENT_STREAMS = [f"{p}_{k}" for p in PRODUCTS for k in EVENT_KINDS]


def store_ids(emu: Emulator, stream: str) -> set[str]:
    product, kind = stream.split("_", 1)
    return {str(e.id) for e in data_of(emu.store).events[(product, kind)]}


def emitted(result: SyncResult, stream: str) -> list[str]:
    """Record IDs in the order written; fails on a duplicate."""
    ids = [str(r["ID"]) for r in result.records.get(stream, [])]
    assert len(ids) == len(set(ids)), f"{stream}: an event was emitted twice"
    return ids


def first_emailing(emu: Emulator, product: str) -> str:
    return min(e.timestamp for e in data_of(emu.store).emailings[product])


def ms_windows(emu: Emulator, path: str) -> list[tuple[str, str, int]]:
    """(begintime, endtime, start) of each Marketing Suite event page asked for."""
    return [
        (r.query["begintime"][0], r.query["endtime"][0], int(r.query["start"][0]))
        for r in emu.requests
        if r.path == path and "begintime" in r.query
    ]


def seconds(low: str, high: str) -> float:
    return (parse_instant(high, TZ) - parse_instant(low, TZ)).total_seconds()


def test_windows_grow_over_empty_stretches_and_shrink_on_dense_ones(emulator: Emulator) -> None:
    stream = "ms_deliveries"
    # Resume from a bookmark 20 days before the first emailing, with one-hour windows:
    # nothing happens for 20 days, then each emailing's deliveries arrive within seconds.
    first = parse_instant(first_emailing(emulator, "ms"), TZ)
    bookmark = first - dt.timedelta(days=20)
    state = {
        "bookmarks": {
            stream: {
                "replication_key": "timestamp",
                "replication_key_value": bookmark.isoformat(),
                "window_seconds": HOUR,
            }
        }
    }
    config = config_for(emulator, page_size=20, event_window_days=1)
    result = sync(config, streams=[stream], state=state)
    assert result.exit_code == 0
    assert set(emitted(result, stream)) == store_ids(emulator, stream)

    pages = ms_windows(emulator, "/v4/ms/deliveries")
    windows = [(low, high) for low, high, start in pages if start == 0]
    lengths = [seconds(low, high) for low, high in windows]
    # Empty stretch: 1 h, 2 h, 4 h, ... doubling up to the cap of 64 x 1 day.
    assert lengths[:6] == [HOUR * 2**i for i in range(6)]
    assert max(lengths) == 64 * 86400 or lengths[-1] < 64 * 86400  # never beyond the cap
    assert all(length <= 64 * 86400 for length in lengths)
    # Dense: a window that needed several pages is followed by a window at most half as long.
    pages_of = {w: sum(1 for low, high, _ in pages if (low, high) == w) for w in windows}
    dense = [i for i, w in enumerate(windows[:-1]) if pages_of[w] > 1]
    assert dense, "some window needed several pages"
    for i in dense:
        assert lengths[i + 1] <= lengths[i] / 2
    # The windows tile the range: each starts where the previous ended.
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert windows[0][0] == to_api(bookmark, TZ)
    # The size to use next is in STATE, so the next run continues with it.
    assert result.final_state["bookmarks"][stream]["window_seconds"] >= HOUR


@pytest.mark.parametrize("stream", ["ms_impressions", "publisher_clicks"])
def test_a_run_cut_at_any_page_resumes_exactly(emulator: Emulator, stream: str) -> None:
    config = config_for(emulator, page_size=15, event_window_days=2)
    full = sync(config, streams=[stream])
    assert full.exit_code == 0
    order = emitted(full, stream)
    assert set(order) == store_ids(emulator, stream)
    cuts = [
        i
        for i, m in enumerate(full.messages)
        if m.get("type") == "STATE" and stream in m["value"].get("bookmarks", {})
    ]
    inside = [i for i in cuts if "window" in full.messages[i]["value"]["bookmarks"][stream]]
    between = [i for i in cuts if i not in inside]
    assert len(inside) >= 2, "cuts inside a window"
    assert len(between) >= 5, "cuts between windows"
    # About ten cuts of each kind, spread over the run (each cut is a whole run).
    cuts = sorted(inside[:: max(1, len(inside) // 10)] + between[:: max(1, len(between) // 10)])
    for i in cuts:
        before = [str(m["record"]["ID"]) for m in full.messages[:i] if m.get("type") == "RECORD"]
        rest = sync(config, streams=[stream], state=full.messages[i]["value"])
        assert rest.exit_code == 0
        # Exactly the rest of the uninterrupted run, in the same order: no loss, no repeat.
        assert before + emitted(rest, stream) == order, i


def test_a_run_killed_by_a_fault_resumes_exactly(emulator: Emulator) -> None:
    stream = "ms_clicks"
    config = config_for(emulator, page_size=10, event_window_days=3, max_retries=0)
    full = sync(config, streams=[stream])
    order = emitted(full, stream)
    pages = ms_windows(emulator, "/v4/ms/clicks")
    # The request that fails: inside windows (offset > 0) and first pages of windows.
    inside = [i for i, (_, _, start) in enumerate(pages) if start > 0]
    first_pages = [i for i, (_, _, start) in enumerate(pages) if start == 0 and i > 0]
    assert len(inside) >= 2
    assert len(first_pages) >= 2
    for after in [*inside[:3], first_pages[0], first_pages[-1]]:
        emulator.requests.clear()
        emulator.faults.clear()
        emulator.faults.add("html503", path=r"/ms/clicks$", after=after)
        crashed = sync(config, streams=[stream])
        assert crashed.exit_code == 1
        emulator.faults.clear()
        resumed = sync(config, streams=[stream], state=crashed.final_state)
        assert resumed.exit_code == 0
        assert emitted(crashed, stream) + emitted(resumed, stream) == order, after


@pytest.mark.parametrize("product", PRODUCTS)
def test_events_on_window_boundaries_are_neither_lost_nor_repeated(
    emulator: Emulator, product: str
) -> None:
    stream = f"{product}_clicks"
    bookmark = parse_instant(first_emailing(emulator, product), TZ) + dt.timedelta(days=2)
    size = dt.timedelta(hours=5)
    # With a sparse first window the second is twice as long: boundaries at +5 h and +15 h.
    boundaries = [bookmark + size, bookmark + 3 * size]
    added: set[str] = set()
    for boundary in boundaries:
        for at in [boundary] * 4 + [boundary - dt.timedelta(seconds=1)] * 2:
            added.add(str(add_event(emulator.store, product, "clicks", to_api(at, TZ)).id))
    state = {
        "bookmarks": {
            stream: {
                "replication_key": "timestamp",
                "replication_key_value": bookmark.isoformat(),
                "window_seconds": int(size.total_seconds()),
            }
        }
    }
    config = config_for(emulator, page_size=1000, event_window_days=1)
    result = sync(config, streams=[stream], state=state)
    ids = emitted(result, stream)
    floor = to_api(bookmark, TZ)
    events = data_of(emulator.store).events[(product, "clicks")]
    assert set(ids) == {str(e.id) for e in events if e.timestamp >= floor}
    assert added <= set(ids)
    queries = [r.query for r in emulator.requests if r.path == f"/v4/{product}/clicks"]
    for boundary in boundaries:
        second = to_api(boundary, TZ)
        if product == "ms":
            assert any(q.get("endtime") == [second] for q in queries)
            assert any(q.get("begintime") == [second] for q in queries)
        else:
            assert any(f"timestamp<{second}" in q.get("fields[]", []) for q in queries)
            assert any(f"timestamp>={second}" in q.get("fields[]", []) for q in queries)


def test_the_floor_holds_with_an_early_start_date(emulator: Emulator) -> None:
    config = config_for(emulator, start_date="2000-01-01T00:00:00Z")
    destinations = [f"{p}_emailing_destinations" for p in PRODUCTS]
    result = sync(config, streams=[*EVENT_STREAMS, *destinations, "consumption"])
    assert result.exit_code == 0
    for stream in EVENT_STREAMS:
        assert set(emitted(result, stream)) == store_ids(emulator, stream), stream
    for product in PRODUCTS:
        rows = result.records[f"{product}_emailing_destinations"]
        assert len(rows) == len(data_of(emulator.store).destinations[product])
    for product in PRODUCTS:
        first = first_emailing(emulator, product)
        asked = [r for r in emulator.requests if r.path.startswith(f"/v4/{product}/")]
        for kind in EVENT_KINDS:
            reads = [r for r in asked if r.path == f"/v4/{product}/{kind}"]
            # Months of events in a page or two: no window walks through 26 empty years.
            assert 1 <= len(reads) <= 3, (product, kind, len(reads))
        for r in asked:
            lows = r.query.get("begintime", []) + [
                f.split(">=", 1)[1]
                for f in r.query.get("fields[]", [])
                if f.startswith(("timestamp>=", "timestampsent>="))
            ]
            assert all(low >= first for low in lows), (r.path, lows, first)
    # Consumption starts at the account's first activity (its oldest database), not in 2000.
    months = [r["begin"] for r in result.records["consumption"]]
    created = min(db.created for db in emulator.store.databases.values())
    assert months[0] == created[:8] + "01"
    for record in result.records["consumption"][:-1]:
        begin, end = dt.date.fromisoformat(record["begin"]), dt.date.fromisoformat(record["end"])
        assert {k: record[k] for k in consumption(begin, end)} == consumption(begin, end)


def test_an_unchanged_account_costs_one_request_per_event_stream(emulator: Emulator) -> None:
    streams = [*EVENT_STREAMS, "ms_emailings", "publisher_emailings"]
    config = config_for(emulator, start_date="2000-01-01T00:00:00Z")
    first = sync(config, streams=streams)
    time.sleep(1.1)  # a later server second: a new (empty) window to read
    emulator.requests.clear()
    again = sync(config, streams=streams, state=first.final_state)
    assert again.exit_code == 0
    assert not any(again.records.get(s) for s in streams)
    paths = [r.path for r in emulator.requests if r.path.startswith(("/v4/ms", "/v4/publisher"))]
    for stream in EVENT_STREAMS:
        product, kind = stream.split("_", 1)
        assert paths.count(f"/v4/{product}/{kind}") == 1, stream
    # The emailing list is read once per product: it is the emailings stream's data, the
    # floor and the server time of every event stream of the product.
    assert paths.count("/v4/ms/emailings") == 1
    assert paths.count("/v4/publisher/emailings") == 1


def test_first_request_is_the_first_page_the_partition_asks_for(emulator: Emulator) -> None:
    names = ["ms_clicks", "publisher_clicks"]
    config = config_for(emulator, page_size=50)
    first = sync(config, streams=names)
    cut = next(
        m["value"]
        for m in first.messages
        if m.get("type") == "STATE" and "window" in m["value"]["bookmarks"].get("ms_clicks", {})
    )
    time.sleep(1.1)  # a later server second: the incremental run has a window to read
    for state in (None, cut, first.final_state):
        tap = TapCopernica(config=config, state=state, catalog=catalog_selecting(config, names))
        planned: dict[str, dict[str, Any] | None] = {}
        for name in names:
            stream = tap.streams[name]
            assert isinstance(stream, WindowedStream)
            planned[name] = stream.first_request(None)
        emulator.requests.clear()
        with redirect_stdout(io.TextIOWrapper(io.BytesIO(), encoding="utf-8")):
            tap.sync_all()
        for name, params in planned.items():
            path = "/v4/" + name.replace("_", "/")
            sent = [r.query for r in emulator.requests if r.path == path]
            assert params is not None, "each run has a window to read"
            expected = {k: v if isinstance(v, list) else [str(v)] for k, v in params.items()}
            assert sent[0] == expected, name


@pytest.mark.parametrize("page_size", [1000, 3])
def test_the_emailings_stream_reuses_the_list_read_only_when_it_was_one_page(
    emulator: Emulator, page_size: int
) -> None:
    data = data_of(emulator.store)
    config = config_for(emulator, page_size=page_size)
    result = sync(config, streams=["ms_emailings", "ms_clicks"])
    assert result.exit_code == 0
    assert [r["ID"] for r in result.records["ms_emailings"]] == [e.id for e in data.emailings["ms"]]
    reads = [r.query for r in emulator.requests if r.path == "/v4/ms/emailings"]
    windowed = [q for q in reads if "todate" in q]
    if page_size == 1000:
        assert len(reads) == 1, "one read: the list, the stream's rows, the floor and the time"
        assert not windowed
    else:
        # Three pages of a list that could shift between them: the stream reads its own
        # closed window (fromdate/todate) as well.
        assert windowed
        assert len(reads) == -(-len(data.emailings["ms"]) // page_size) + len(windowed)


def test_with_emailing_ids_windows_start_at_those_emailings(emulator: Emulator) -> None:
    data = data_of(emulator.store)
    chosen = data.emailings["ms"][4]
    config = config_for(emulator, start_date="2000-01-01T00:00:00Z", emailing_ids=["ms:5"])
    assert chosen.id == 5
    result = sync(config, streams=["ms_clicks"])
    assert result.exit_code == 0
    expected = {str(e.id) for e in data.events[("ms", "clicks")] if e.destination.emailing == 5}
    assert set(emitted(result, "ms_clicks")) == expected
    reads = [r.query for r in emulator.requests if r.path == "/v4/ms/emailing/5/clicks"]
    assert reads
    lows = [low for q in reads for low in q.get("begintime", [])]
    assert min(lows) == chosen.timestamp, "from its send time, not from 2000"


def test_consumption_start_date_wins_over_start_date_and_bookmarks_over_both(
    emulator: Emulator,
) -> None:
    today = dt.datetime.now(TZ).date().replace(day=1)
    two_back = (today - dt.timedelta(days=40)).replace(day=1)
    config = config_for(
        emulator, start_date="2000-01-01T00:00:00Z", consumption_start_date=two_back.isoformat()
    )
    first = sync(config, streams=["consumption"])
    begins = [r["begin"] for r in first.records["consumption"]]
    assert begins[0] == two_back.isoformat()
    assert begins[-1] == today.isoformat()
    emulator.requests.clear()
    again = sync(config, streams=["consumption"], state=first.final_state)
    assert [r["begin"] for r in again.records["consumption"]] == [today.isoformat()]
    asked = [r.query for r in emulator.requests if r.path == "/v4/consumption"]
    assert asked == [
        {"begin": [today.isoformat()], "end": [first.records["consumption"][-1]["end"]]}
    ]


def test_a_product_the_account_lacks_is_asked_once(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The account has no Publisher: its emailing list is refused. Each stream needing it
    # (floors, partitions, estimates, read-ahead plans) fails with that one refusal.
    emulator.faults.add("notfound404", path=r"/publisher/emailings$")
    streams = [
        "ms_clicks",
        "publisher_clicks",
        "publisher_deliveries",
        "publisher_emailing_statistics",
        "publisher_emailing_snapshot",
    ]
    config = config_for(emulator, max_parallel_requests=4)
    catalog = catalog_selecting(config, streams)
    emulator.requests.clear()
    result = sync(config, catalog=catalog)
    assert result.exit_code == 3
    assert result.records["ms_clicks"]
    assert not any(result.records.get(s) for s in streams if s.startswith("publisher"))
    lists = [r for r in emulator.requests if r.path == "/v4/publisher/emailings"]
    assert [r.status for r in lists] == [404]
    for stream in streams[1:]:
        assert f"Stream '{stream}' failed: Copernica API refused GET" in caplog.text
