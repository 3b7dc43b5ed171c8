"""The `reconciliation` stream: what a run extracted against what Copernica reports.

Every check is `difference = found - expected`: negative when the tap has fewer than the
API counts (a lost page, a late event behind the bookmark), positive when it has more (a
profile deleted during the scan, events Copernica's retention removed after extraction).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from copernica_emulator import mailings
from copernica_emulator.emulator import Emulator
from copernica_emulator.messages import RequestLog
from tests.conftest import config_for
from tests.singer import SyncResult, catalog_selecting, sync

KINDS = mailings.EVENT_KINDS
EVENT_STREAMS = [f"{p}_{k}" for p in ("ms", "publisher") for k in KINDS]
CHECKED = ["profile_ids", "subprofile_ids", *EVENT_STREAMS]
TZ = ZoneInfo("Europe/Amsterdam")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(seed=7, profiles_per_database=120) as emulator:
        yield emulator


def control(emu: Emulator, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """The emulator's control endpoint, with a JWT as a client would send it."""
    jwt = requests.post(emu.auth_url, data={"access_token": emu.api_token}, timeout=5).text
    reply = requests.request(
        method,
        f"{emu.base_url}/_emulator/events",
        json=body,
        headers={"Authorization": f"Bearer {jwt.strip()}"},
        timeout=5,
    )
    assert reply.status_code in (200, 201), reply.text
    result: dict[str, Any] = reply.json()
    return result


def checks(result: SyncResult) -> dict[tuple[str, int], dict[str, Any]]:
    rows = result.records.get("reconciliation", [])
    keyed = {(r["check"], r["object_id"]): r for r in rows}
    assert len(keyed) == len(rows), "one check per source and object"
    return keyed


def differences(result: SyncResult) -> dict[tuple[str, int], int]:
    return {key: r["difference"] for key, r in checks(result).items() if r["difference"]}


def test_a_complete_account_reconciles_to_zero(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tap-copernica")
    config = config_for(emu)
    before = len(emu.requests)
    result = sync(config, streams=[*CHECKED, "reconciliation"])
    found = checks(result)
    store = emu.store
    data = mailings.data_of(store)
    databases = sorted(store.databases)
    collections = sorted(c for db in store.databases.values() for c in db.collection_ids)
    emailings = {p: [e.id for e in data.emailings[p]] for p in ("ms", "publisher")}
    expected_keys = (
        {("profile_ids", db) for db in databases}
        | {("subprofile_ids", c) for c in collections}
        | {(f"{p}_{k}", e) for p, ids in emailings.items() for e in ids for k in KINDS}
    )
    assert set(found) == expected_keys
    assert all(r["difference"] == 0 for r in found.values())
    assert all(r["found"] == r["expected"] for r in found.values())
    # The checks count what was really there: the ID lists' records, every event.
    assert sum(r["found"] for k, r in found.items() if k[0] == "profile_ids") == len(
        result.records["profile_ids"]
    )
    for stream in EVENT_STREAMS:
        total = sum(r["found"] for k, r in found.items() if k[0] == stream)
        assert total == len(result.records[stream]) > 0, stream
    assert "Copernica reports" not in caplog.text  # no mismatch line
    assert f"Reconciliation: {len(expected_keys)} checks, 0 with a difference." in caplog.text
    # Its cost: one request per database, per collection and per emailing.
    own = [
        r
        for r in emu.requests[before:]
        if r.path.endswith("/statistics") or r.query.get("total") == ["true"]
    ]
    assert len(own) == len(databases) + len(collections) + sum(map(len, emailings.values()))


def test_with_a_start_date_the_statistics_cover_the_same_period(emu: Emulator) -> None:
    """Events before `start_date` are not extracted; the statistics are asked from it."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    config = config_for(emu, start_date=start.strftime("%Y-%m-%dT%H:%M:%SZ"))
    result = sync(config, streams=["ms_impressions", "publisher_deliveries", "reconciliation"])
    found = checks(result)
    assert found
    assert differences(result) == {}
    data = mailings.data_of(emu.store)
    every = len(data.events[("ms", "impressions")])
    extracted = sum(r["found"] for (name, _), r in found.items() if name == "ms_impressions")
    assert 0 < extracted == len(result.records["ms_impressions"]) < every
    since = {r["since"] for r in found.values()}
    assert len(since) == 1
    assert dt.datetime.fromisoformat(since.pop()) == start.replace(microsecond=0)


def test_not_selected_by_default_and_only_checks_selected_streams(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tap-copernica")
    skipped = "Skipping deselected stream 'reconciliation'."
    config = config_for(emu)
    catalog = catalog_selecting(config, ["reconciliation"])
    assert catalog is not None
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "reconciliation")
    root = next(m["metadata"] for m in entry["metadata"] if m["breadcrumb"] == [])
    assert root["selected-by-default"] is False
    assert "reconciliation" not in sync(config).records  # everything else selected
    assert skipped in caplog.text
    caplog.clear()

    # Only the streams this run extracted are checked: here one event stream.
    result = sync(config, streams=["ms_clicks", "reconciliation"])
    assert {name for name, _ in checks(result)} == {"ms_clicks"}
    assert differences(result) == {}
    assert skipped not in caplog.text, "selected, it runs last: the SDK's skip line would mislead"


def test_events_removed_after_extraction_show_as_plus_n(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(emu)
    streams = [*EVENT_STREAMS, "reconciliation"]
    first = sync(config, streams=streams)
    assert differences(first) == {}
    # Copernica's retention (or an operator) deletes events the tap already has.
    control(emu, "DELETE", {"product": "ms", "kind": "clicks", "emailing": 2, "count": 3})
    control(emu, "DELETE", {"product": "publisher", "kind": "errors", "emailing": 1, "count": 2})
    caplog.clear()
    second = sync(config, streams=streams, state=first.final_state)
    assert differences(second) == {("ms_clicks", 2): 3, ("publisher_errors", 1): 2}
    mismatches = [m for m in caplog.messages if "Copernica reports" in m]
    assert len(mismatches) == 2
    assert "ms_clicks of emailing 2" in mismatches[0]
    assert "(difference +3)" in mismatches[0]


def test_a_late_event_behind_the_bookmark_shows_as_one_missing(emu: Emulator) -> None:
    config = config_for(emu)
    streams = ["ms_deliveries", "publisher_clicks", "reconciliation"]
    first = sync(config, streams=streams)
    assert differences(first) == {}
    # Stamped an hour ago (long before the lookback), added after the run: the tap's
    # bookmark has passed it, so no incremental run reads it. One on time, for contrast.
    late = (dt.datetime.now(TZ) - dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    control(
        emu, "POST", {"product": "publisher", "kind": "clicks", "emailing": 3, "timestamp": late}
    )
    control(emu, "POST", {"product": "ms", "kind": "deliveries", "emailing": 4})
    time.sleep(config["lookback_seconds"] + 1.1)
    second = sync(config, streams=streams, state=first.final_state)
    assert len(second.records["ms_deliveries"]) == 1
    assert "publisher_clicks" not in second.records
    assert differences(second) == {("publisher_clicks", 3): -1}


def test_incremental_runs_add_up_without_reading_history_again(emu: Emulator) -> None:
    config = config_for(emu, page_size=50)
    streams = ["ms_clicks", "publisher_impressions", "reconciliation"]
    first = sync(config, streams=streams)
    emailing = 5
    before = checks(first)[("ms_clicks", emailing)]["found"]
    control(emu, "POST", {"product": "ms", "kind": "clicks", "emailing": emailing, "count": 4})
    time.sleep(config["lookback_seconds"] + 1.1)
    start = len(emu.requests)
    second = sync(config, streams=streams, state=first.final_state)
    # The second run read only the new events ...
    assert len(second.records["ms_clicks"]) == 4
    assert "publisher_impressions" not in second.records
    bookmark = first.final_state["bookmarks"]["ms_clicks"]["replication_key_value"]
    floor = dt.datetime.fromisoformat(bookmark).astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")
    event_reads = [r for r in emu.requests[start:] if r.path.endswith("/clicks")]
    assert event_reads
    assert all(_reads_after(r, floor) for r in event_reads)
    # ... yet its checks are cumulative: every event so far against the statistics.
    found = checks(second)
    assert found[("ms_clicks", emailing)]["found"] == before + 4
    assert found[("ms_clicks", emailing)]["expected"] == before + 4
    assert differences(second) == {}
    own = second.final_state["bookmarks"]["reconciliation"]["events"]["ms"]
    assert own["counts"][str(emailing)]["clicks"] == before + 4


def test_added_to_a_running_pipeline_it_counts_from_its_first_run_on(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Event streams with bookmarks already: their earlier events were never counted, so
    the first run with `reconciliation` sets a baseline and the checks start after it."""
    caplog.set_level(logging.INFO, logger="tap-copernica")
    config = config_for(emu)
    before = sync(config, streams=["ms_clicks"])
    baseline = sync(config, streams=["ms_clicks", "reconciliation"], state=before.final_state)
    assert checks(baseline) == {}
    assert "ms event checks start with the next run" in caplog.text
    control(emu, "POST", {"product": "ms", "kind": "clicks", "emailing": 3, "count": 2})
    time.sleep(config["lookback_seconds"] + 1.1)
    after = sync(config, streams=["ms_clicks", "reconciliation"], state=baseline.final_state)
    found = checks(after)
    assert len(found) == len(mailings.data_of(emu.store).emailings["ms"])
    assert differences(after) == {}
    assert found[("ms_clicks", 3)]["found"] == found[("ms_clicks", 3)]["expected"] == 2
    assert found[("ms_clicks", 3)]["since"] is not None


def test_events_after_the_horizon_are_checked_by_the_next_run(emu: Emulator) -> None:
    """The statistics are asked up to the product's event horizon: an error stamped after
    it (arriving while the run reads) is left to the next run on both sides, so neither
    run shows a difference."""
    config = config_for(emu)
    streams = ["ms_clicks", "ms_emailing_snapshot", "ms_errors", "reconciliation"]
    added: list[int] = []

    def between(log: RequestLog) -> None:  # `ms_emailing_snapshot` runs between the two
        if log.path.endswith("/snapshot") and not added:
            now = emu.store.now()
            added.append(mailings.add_event(emu.store, "ms", "errors", now, emailing=4).id)

    emu.on_response(between)
    first = sync(config, streams=streams)
    assert added
    assert added[0] not in {int(r["ID"]) for r in first.records["ms_errors"]}
    assert differences(first) == {}
    errors = checks(first)[("ms_errors", 4)]["found"]
    time.sleep(config["lookback_seconds"] + 1.1)
    second = sync(config, streams=streams, state=first.final_state)
    assert [int(r["ID"]) for r in second.records["ms_errors"]] == added
    assert differences(second) == {}
    assert checks(second)[("ms_errors", 4)]["found"] == errors + 1
    assert second.final_state["bookmarks"]["reconciliation"]["events"]["ms"]["pending"] == {}


def test_a_run_without_it_in_between_restarts_the_event_counts(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Counts only add up over runs that all counted: after a run that read events without
    `reconciliation`, the next one sets a baseline instead of reporting those as missing."""
    caplog.set_level(logging.INFO, logger="tap-copernica")
    config = config_for(emu)
    with_it = ["publisher_clicks", "reconciliation"]
    first = sync(config, streams=with_it)
    control(emu, "POST", {"product": "publisher", "kind": "clicks", "emailing": 2, "count": 3})
    time.sleep(config["lookback_seconds"] + 1.1)
    without = sync(config, streams=["publisher_clicks"], state=first.final_state)
    assert len(without.records["publisher_clicks"]) == 3
    caplog.clear()
    baseline = sync(config, streams=with_it, state=without.final_state)
    assert checks(baseline) == {}
    assert "publisher event checks start with the next run" in caplog.text
    after = sync(config, streams=with_it, state=baseline.final_state)
    assert checks(after)
    assert differences(after) == {}


def test_a_run_stopped_by_max_requests_checks_nothing(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Part of the streams was read: no check would mean anything, and none costs a
    request more than the budget."""
    caplog.set_level(logging.INFO, logger="tap-copernica")
    config = config_for(emu, page_size=20, max_requests=12)
    start = len(emu.requests)
    result = sync(config, streams=["profile_ids", "ms_clicks", "reconciliation"])
    assert result.exit_code == 0
    assert "reconciliation" not in result.records
    own = [
        r
        for r in emu.requests[start:]
        if r.path.endswith("/statistics") or r.query.get("total") == ["true"]
    ]
    assert own == []
    assert "Reconciliation: no checks in a run split by max_requests." in caplog.text


def _reads_after(log: RequestLog, floor: str) -> bool:
    """Whether an event list request can only return rows stamped at or after `floor`
    (or none at all: the horizon probe asks for a range that ended long ago)."""
    begin = log.query.get("begintime", [None])[0]
    end = log.query.get("endtime", [None])[0]
    return (begin is not None and begin >= floor) or (end is not None and end < floor)


@pytest.mark.parametrize(
    ("victim", "when", "difference"),
    [("first", "during", 1), ("last", "during", 0), ("first", "after", 0)],
)
def test_a_profile_deleted_during_the_scan_counts_but_not_one_deleted_after(
    emu: Emulator, victim: str, when: str, difference: int
) -> None:
    """The total is asked when the scan ends. A profile deleted while the scan runs, after
    its page was read, is one more extracted than live (+1); one deleted before its page
    was read is in neither; one deleted after the scan (once its total was asked) is not
    in this run's check at all."""
    config = config_for(emu, page_size=50)
    live = emu.store.databases[1].live_ids
    doomed = min(live) if victim == "first" else max(live)
    pages: list[RequestLog] = []

    def delete(log: RequestLog) -> None:
        if log.path == "/v4/database/1/profileids":
            pages.append(log)
        # "after": once the scan ended, i.e. its total was asked (a later stream's first
        # request may be read ahead while the scan still runs).
        ended = log.path == "/v4/database/1/profiles" and log.query.get("total") == ["true"]
        trigger = len(pages) == 2 if when == "during" else ended
        if trigger and doomed in emu.store.databases[1].live_ids:
            emu.store.delete_profile(doomed)

    emu.on_response(delete)
    result = sync(config, streams=["profile_ids", "publisher_clicks", "reconciliation"])
    assert doomed not in emu.store.databases[1].live_ids
    assert (doomed in result.ids("profile_ids")) == (victim == "first")
    check = checks(result)[("profile_ids", 1)]
    emitted = [r for r in result.records["profile_ids"] if r["database_id"] == 1]
    assert check["found"] == len(emitted)
    # Asked when the scan ended: a profile deleted later is still in that total.
    live_now = len(emu.store.databases[1].live_ids)
    assert check["expected"] == live_now + (1 if when == "after" else 0)
    assert differences(result) == ({("profile_ids", 1): difference} if difference else {})


def test_a_total_that_fails_for_good_leaves_the_id_list_activated(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The check's request is sent when profile_ids sends its ACTIVATE_VERSION; its retries
    # running out must leave the check out, not the ACTIVATE_VERSION (nor end the run).
    emu.faults.add("html503", path=r"/database/\d+/profiles$", times=10_000)
    result = sync(config_for(emu, max_retries=0), streams=["profile_ids", "reconciliation"])
    assert result.exit_code == 0
    activations = [
        m
        for m in result.messages
        if m["type"] == "ACTIVATE_VERSION" and m["stream"] == "profile_ids"
    ]
    assert len(activations) == 1
    assert result.records["profile_ids"]
    assert not any(r["check"] == "profile_ids" for r in result.records.get("reconciliation", []))
    assert "Reconciliation: check left out: Gave up on GET /v4/database/" in caplog.text
