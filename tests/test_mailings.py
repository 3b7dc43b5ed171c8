"""Mailings, destinations, statistics and events against the emulator, over real HTTP."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import ConfigValidationError

from copernica_api.timeutil import parse_instant, to_api
from copernica_emulator import Emulator
from copernica_emulator.clock import format_local
from copernica_emulator.mailings import add_emailing, add_event, data_of, statistics_json
from tap_copernica.streams.mailings import EVENT_KINDS, MAILING_SPECS, PRODUCTS
from tap_copernica.windows import WindowBookmark
from tests.conftest import config_for
from tests.singer import SyncResult, sync

TZ = ZoneInfo("Europe/Amsterdam")
EVENT_STREAMS = [f"{p}_{k}" for p in PRODUCTS for k in EVENT_KINDS]


def store_events(emu: Emulator, stream: str) -> dict[str, str]:
    """Event ID -> local timestamp, as the emulator holds them."""
    product, kind = stream.split("_", 1)
    return {str(e.id): e.timestamp for e in data_of(emu.store).events[(product, kind)]}


def local(iso: str) -> str:
    return to_api(parse_instant(iso, TZ), TZ)


def event_records(result: SyncResult, stream: str) -> dict[str, dict[str, Any]]:
    records = result.records.get(stream, [])
    ids = [r["ID"] for r in records]
    assert len(ids) == len(set(ids)), f"{stream}: an event was emitted twice"
    return {r["ID"]: r for r in records}


def test_every_mailing_stream_syncs_exactly(emulator: Emulator) -> None:
    data = data_of(emulator.store)
    result = sync(
        config_for(emulator, page_size=100, event_window_days=10),
        streams=[s.name for s in MAILING_SPECS],
    )
    assert result.exit_code == 0
    for product in PRODUCTS:
        emailings = {e.id: e for e in data.emailings[product]}
        rows = result.records[f"{product}_emailings"]
        assert Counter(r["ID"] for r in rows) == Counter(list(emailings))
        assert {r["ID"]: local(r["timestamp"]) for r in rows} == {
            i: e.timestamp for i, e in emailings.items()
        }
        stats = {r["emailing_id"]: r for r in result.records[f"{product}_emailing_statistics"]}
        assert set(stats) == set(emailings)
        for emailing_id, row in stats.items():
            expected = statistics_json(data, emailings[emailing_id])
            assert row["clicks"] == expected["clicks"]
            assert row["destinations"] == expected["destinations"]
        snapshots = result.records[f"{product}_emailing_snapshot"]
        assert sorted(r["emailing_id"] for r in snapshots) == sorted(emailings)
        destinations = result.records[f"{product}_emailing_destinations"]
        expected_ids = [d.id if product == "ms" else d.hash for d in data.destinations[product]]
        assert Counter(r["ID"] for r in destinations) == Counter(expected_ids)
        assert all(r["emailing"] == r["emailing_id"] for r in destinations)
        assert len(result.records[f"{product}_scheduled_emailings"]) == 3
        assert len(result.records[f"{product}_templates"]) == 5
    documents = result.records["publisher_documents"]
    assert len(documents) == 9
    assert all("source" not in d for d in documents)

    profiles = set(emulator.store.profile_rows)
    for stream in EVENT_STREAMS:
        records = event_records(result, stream)
        expected = store_events(emulator, stream)
        assert set(records) == set(expected), stream
        assert {i: local(r["timestamp"]) for i, r in records.items()} == expected
        for record in records.values():
            assert isinstance(record["emailing"], int)
            assert record["destination"] not in (None, "")
            if stream.startswith("publisher_"):
                # Publisher events link the profile; MS account-wide events only the
                # destination (documented), joined via ms_emailing_destinations.
                assert record["profile"] in profiles
    ms_destinations = {r["ID"]: r for r in result.records["ms_emailing_destinations"]}
    assert all(r["destination"] in ms_destinations for r in result.records["ms_clicks"])


def window_batches(result: SyncResult, stream: str) -> list[tuple[str, str, set[str]]]:
    """(start, end, record IDs) per completed window, from the order of the messages."""
    batches: list[tuple[str, str, set[str]]] = []
    pending: set[str] = set()
    bookmark: str | None = None
    for message in result.messages:
        if message.get("type") == "RECORD" and message["stream"] == stream:
            pending.add(message["record"]["ID"])
        elif message.get("type") == "STATE":
            entry = message["value"]["bookmarks"].get(stream, {})
            value = entry.get("replication_key_value")
            if value and value != bookmark and "window" not in entry:
                batches.append((bookmark or "", value, pending))
                bookmark, pending = value, set()
    return batches


def test_each_window_emits_exactly_its_events(emulator: Emulator) -> None:
    first = min(e.timestamp for e in data_of(emulator.store).emailings["ms"])
    start = parse_instant(first.replace(" ", "T"), TZ) - dt.timedelta(hours=1)
    config = config_for(emulator, page_size=40, event_window_days=5, start_date=start.isoformat())
    result = sync(config, streams=["ms_impressions", "publisher_clicks"])
    assert result.exit_code == 0
    for stream in ("ms_impressions", "publisher_clicks"):
        events = store_events(emulator, stream)
        batches = window_batches(result, stream)
        # Windows adapt to the data (tests/test_windows_adaptive.py): still many of them.
        assert len(batches) > 5, "months of events read in windows of about a page"
        low = to_api(start, TZ)
        for _, end, ids in batches:
            high = local(end)
            assert ids == {i for i, ts in events.items() if low <= ts < high}, (low, high)
            low = high
        assert set().union(*(ids for _, _, ids in batches)) == set(events)


def test_a_window_boundary_inside_a_busy_second_loses_nothing(emulator: Emulator) -> None:
    boundary = parse_instant("2026-10-01T12:00:00", TZ)
    second = to_api(boundary, TZ)
    before = to_api(boundary - dt.timedelta(seconds=1), TZ)
    added = {
        product: [add_event(emulator.store, product, "clicks", ts).id for ts in [second] * 6]
        + [add_event(emulator.store, product, "clicks", before).id for _ in range(3)]
        for product in PRODUCTS
    }
    start = boundary - dt.timedelta(days=7)
    config = config_for(emulator, event_window_days=7, start_date=start.isoformat())
    # The first window is 7 days long (STATE names its size), so it ends on that second.
    week = {"window_seconds": 7 * 86400}
    sized = {"bookmarks": {"ms_clicks": dict(week), "publisher_clicks": dict(week)}}
    result = sync(config, streams=["ms_clicks", "publisher_clicks"], state=sized)
    assert result.exit_code == 0
    for product in PRODUCTS:
        stream = f"{product}_clicks"
        records = event_records(result, stream)
        floor = to_api(start, TZ)
        expected = {i for i, ts in store_events(emulator, stream).items() if ts >= floor}
        assert set(records) == expected
        assert {str(i) for i in added[product]} <= set(records)
        on_second = [r for r in records.values() if local(r["timestamp"]) == second]
        assert len(on_second) >= 6
    # The boundary really fell on that second: one window ended there, the next began there.
    ms = [r.query for r in emulator.requests if r.path.endswith("/ms/clicks")]
    assert any(q.get("endtime") == [second] for q in ms)
    assert any(q.get("begintime") == [second] for q in ms)
    publisher = [r.query for r in emulator.requests if r.path.endswith("/publisher/clicks")]
    assert any(f"timestamp<{second}" in q.get("fields[]", []) for q in publisher)
    assert any(f"timestamp>={second}" in q.get("fields[]", []) for q in publisher)


def test_incremental_runs_read_only_what_is_new(emulator: Emulator) -> None:
    streams = [
        "ms_emailings",
        "publisher_emailings",
        "ms_clicks",
        "publisher_clicks",
        "ms_deliveries",
        "ms_emailing_statistics",
    ]
    config = config_for(emulator)
    first = sync(config, streams=streams)
    assert first.exit_code == 0
    assert len(first.records["ms_clicks"]) == len(store_events(emulator, "ms_clicks"))

    now = format_local(time.time(), TZ)
    new_clicks = {p: {str(add_event(emulator.store, p, "clicks", now).id)} for p in PRODUCTS}
    new_emailing = add_emailing(emulator.store, "ms", now)
    time.sleep(2.2)  # past the 1 s lookback of the test config
    emulator.requests.clear()
    second = sync(config, streams=streams, state=first.final_state)
    assert second.exit_code == 0
    for product in PRODUCTS:
        assert set(event_records(second, f"{product}_clicks")) == new_clicks[product]
    assert "ms_deliveries" not in second.records
    assert [r["ID"] for r in second.records["ms_emailings"]] == [new_emailing.id]
    assert "publisher_emailings" not in second.records
    # Statistics are counters that keep changing: every emailing, every run.
    stats = second.records["ms_emailing_statistics"]
    assert len(stats) == len(data_of(emulator.store).emailings["ms"])
    # One page per event stream: the server's time comes from the emailing list's read.
    assert sum(r.path.endswith("/ms/clicks") for r in emulator.requests) == 1

    third = sync(config, streams=streams, state=second.final_state)
    assert not any(third.records.get(s) for s in streams if "statistics" not in s)


@pytest.mark.parametrize("where", ["between windows", "inside a window"])
def test_a_crash_after_window_k_resumes_at_window_k(emulator: Emulator, where: str) -> None:
    first_emailing = min(e.timestamp for e in data_of(emulator.store).emailings["ms"])
    start = parse_instant(first_emailing.replace(" ", "T"), TZ)
    config = config_for(
        emulator,
        page_size=30,
        event_window_days=7,
        start_date=start.isoformat(),
        max_retries=0,
    )
    # The first window's size comes from STATE, not from an estimate over the time since
    # the first emailing (which moves with the clock): both runs plan the same windows.
    sized = {"bookmarks": {"ms_impressions": {"window_seconds": 7 * 86400}}}
    # A dry run shows the requests: (begintime, start) per page.
    sync(config, streams=["ms_impressions"], state=sized)
    pages = [
        (r.query["begintime"][0], int(r.query["start"][0]))
        for r in emulator.requests
        if r.path.endswith("/ms/impressions") and "begintime" in r.query
    ]
    mid = [i for i, (_, offset) in enumerate(pages) if offset > 0 and i > 3]
    fail_at = mid[0] if where == "inside a window" else mid[0] + 1
    assert (pages[fail_at][1] > 0) == (where == "inside a window")
    emulator.requests.clear()
    emulator.faults.add("html503", path=r"/ms/impressions$", after=fail_at)
    crashed = sync(config, streams=["ms_impressions"], state=sized)
    assert crashed.exit_code == 1
    entry = crashed.final_state["bookmarks"]["ms_impressions"]
    emitted = event_records(crashed, "ms_impressions")
    window = entry.get("window")
    assert (window is not None) == (where == "inside a window")
    assert local(entry["replication_key_value"]) == pages[fail_at][0]  # windows 1..k done

    emulator.faults.clear()
    emulator.requests.clear()
    resumed = sync(config, streams=["ms_impressions"], state=crashed.final_state)
    assert resumed.exit_code == 0
    again = event_records(resumed, "ms_impressions")
    assert not set(again) & set(emitted), "nothing emitted before the crash is repeated"
    assert set(again) | set(emitted) == set(store_events(emulator, "ms_impressions"))
    # The first data request continues window k+1 exactly where the crash stopped it.
    reads = [r.query for r in emulator.requests if r.path.endswith("/ms/impressions")]
    assert (reads[0]["begintime"][0], int(reads[0]["start"][0])) == pages[fail_at]


def test_kill_between_pages_resumes_from_the_last_state_message(emulator: Emulator) -> None:
    config = config_for(emulator, page_size=25, event_window_days=30)
    full = sync(config, streams=["publisher_impressions"])
    states = [s for s in full.states if "publisher_impressions" in s.get("bookmarks", {})]
    # A STATE message per page: pick one taken in the middle of a window, halfway through.
    inside = [s for s in states if "window" in s["bookmarks"]["publisher_impressions"]]
    assert len(inside) > 1, "windows adapt to about a page, a few still need more"
    middle = inside[len(inside) // 2]
    before = {
        m["record"]["ID"]
        for m in full.messages[: full.messages.index({"type": "STATE", "value": middle})]
        if m.get("type") == "RECORD"
    }
    assert before
    rest = sync(config, streams=["publisher_impressions"], state=middle)
    after = event_records(rest, "publisher_impressions")
    assert not before & set(after)
    assert before | set(after) == set(store_events(emulator, "publisher_impressions"))


def test_emailing_ids_read_the_per_emailing_endpoints(emulator: Emulator) -> None:
    data = data_of(emulator.store)
    config = config_for(emulator, emailing_ids=["ms:2", "publisher:1", "ms:4"])
    streams = ["ms_clicks", "publisher_deliveries", "ms_emailing_statistics"]
    result = sync(config, streams=streams)
    assert result.exit_code == 0
    for stream, wanted in (("ms_clicks", {2, 4}), ("publisher_deliveries", {1})):
        product, kind = stream.split("_", 1)
        expected = {
            str(e.id) for e in data.events[(product, kind)] if e.destination.emailing in wanted
        }
        records = event_records(result, stream)
        assert set(records) == expected
        assert {r["emailing_id"] for r in records.values()} == wanted
        partitions = result.final_state["bookmarks"][stream]["partitions"]
        assert sorted(p["context"]["emailing_id"] for p in partitions) == sorted(wanted)
    assert sorted(r["emailing_id"] for r in result.records["ms_emailing_statistics"]) == [2, 4]
    paths = {r.path for r in emulator.requests}
    assert "/v4/ms/emailing/2/clicks" in paths
    assert "/v4/ms/clicks" not in paths


def test_destination_ids_read_the_per_destination_endpoints(emulator: Emulator) -> None:
    data = data_of(emulator.store)
    busy = {
        product: [
            d
            for d in data.destinations[product]
            if any(e.destination is d for kind in EVENT_KINDS for e in data.events[(product, kind)])
        ][:2]
        for product in PRODUCTS
    }
    chosen = [f"{product}:{d.key}" for product, dests in busy.items() for d in dests]
    config = config_for(emulator, destination_ids=chosen, emailing_ids=["ms:1"])
    streams = [f"{product}_{kind}" for product in PRODUCTS for kind in ("deliveries", "clicks")]
    result = sync(config, streams=streams)
    assert result.exit_code == 0
    total = 0
    for stream in streams:
        product, kind = stream.split("_", 1)
        wanted = {str(d.key) for d in busy[product]}
        expected = {
            str(e.id) for e in data.events[(product, kind)] if str(e.destination.key) in wanted
        }
        records = event_records(result, stream)
        assert set(records) == expected, stream
        assert {r["destination_id"] for r in records.values()} <= wanted
        total += len(records)
        partitions = result.final_state["bookmarks"][stream]["partitions"]
        assert {p["context"]["destination_id"] for p in partitions} == wanted
    assert total > 0
    paths = {r.path for r in emulator.requests}
    assert f"/v4/ms/destination/{busy['ms'][0].key}/clicks" in paths
    assert not any(p.startswith("/v4/ms/emailing/1/") for p in paths), "destinations win"
    assert "/v4/publisher/clicks" not in paths


@pytest.mark.parametrize("entry", ["123", "sms:4", "ms:abc"])
def test_a_malformed_emailing_id_is_refused_clearly(emulator: Emulator, entry: str) -> None:
    config = config_for(emulator, emailing_ids=[entry])
    with pytest.raises(ConfigValidationError, match="emailing_ids"):
        sync(config, streams=["ms_clicks"])


def test_windows_tile_local_time_across_a_clock_change() -> None:
    """Across the autumn clock change the windows still meet exactly, in the local strings
    the API filters on, and a bookmark written to STATE reads back to the same string."""
    state: dict[str, Any] = {}
    bookmark = WindowBookmark(state, TZ, "timestamp")
    floor = parse_instant("2026-10-20T05:30:00", TZ)
    horizon = parse_instant("2026-11-12T00:00:00+00:00", TZ)
    windows = list(bookmark.windows(floor, horizon, 3))
    bounds = [w.local(TZ) for w in windows]
    assert bounds[0][0] == "2026-10-20 05:30:00"
    assert bounds[-1][1] == to_api(horizon, TZ)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds)), "no gap, no overlap"
    assert all(low is not None and low < high for low, high in bounds)
    for window in windows:
        bookmark.completed(window)
        assert local(state["replication_key_value"]) == window.local(TZ)[1]
    assert list(bookmark.windows(floor, horizon, 3)) == []
