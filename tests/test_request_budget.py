"""`max_requests`: a run stops within its request budget, and the runs after it continue.

Each run is the tap's command line against the emulator, which counts the requests it
answered. A chain of budgeted runs, each started from the STATE of the one before, must
emit the records of one unbudgeted run: the same keys in every stream, none twice in the
profile and event streams; each run stays within its budget, exits 0 and says what it left.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, catalog_selecting, run_cli, script

TAP = script("tap-copernica")

#: Profiles (generic: a child of `databases`; typed), a windowed event stream, per-emailing
#: streams (an object per emailing, and windowed destinations), a child full table, and an
#: ID list that sends ACTIVATE_VERSION.
STREAMS = [
    "profiles",
    "profiles_customers",
    "ms_clicks",
    "ms_emailing_statistics",
    "ms_emailing_destinations",
    "database_fields",
    "profile_ids",
]
#: Streams whose records a resumed run must never send twice.
EXACT = ["profiles", "profiles_customers", "ms_clicks", "ms_emailing_destinations"]
#: Pages of 50 rows and one event window for the whole history: several pages per profile
#: partition, per event window and per emailing, so a budget can end inside each.
SETTINGS: dict[str, Any] = {"page_size": 50, "event_window_days": 3650}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One account for the module: every run here only reads."""
    with Emulator(seed=7, profiles_per_database=120) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def catalog(emu: Emulator) -> dict[str, Any]:
    return catalog_selecting(config_for(emu), STREAMS) or {}


def api_paths(emu: Emulator, since: int) -> list[str]:
    """The REST API requests answered since `since` (not the authentication service), with
    the offset of a page (`?start=50`)."""
    return [
        r.path + "".join(f"?start={v}" for v in r.query.get("start", [])[:1])
        for r in emu.requests[since:]
        if r.path.startswith("/v4/")
    ]


def run_tap(
    emu: Emulator,
    tmp_path: Path,
    catalog: dict[str, Any],
    state: dict[str, Any] | None,
    **settings: Any,
) -> tuple[SyncResult, list[str]]:
    """One CLI run; its output and the API requests it made."""
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    args = ["--catalog", str(catalog_file)]
    if state is not None:
        state_file = tmp_path / "state.json"
        state_file.write_text(json.dumps(state))
        args += ["--state", str(state_file)]
    before = len(emu.requests)
    result = run_cli(TAP, args, config=config_for(emu, **settings), tmp_path=tmp_path)
    return result, api_paths(emu, before)


@pytest.fixture(scope="module")
def reference(
    emu: Emulator, catalog: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SyncResult, list[str]]:
    """One unbudgeted run, one request at a time: its records and its requests in order."""
    result, paths = run_tap(
        emu,
        tmp_path_factory.mktemp("reference"),
        catalog,
        None,
        **SETTINGS,
        max_parallel_requests=1,
    )
    assert result.exit_code == 0, result.stderr
    return result, paths


def keys_of(result: SyncResult, stream: str, catalog: dict[str, Any]) -> list[str]:
    """The key of each record of `stream`, from its key properties in the catalog."""
    entry = next(e for e in catalog["streams"] if e["tap_stream_id"] == stream)
    props = entry["key_properties"]
    return [json.dumps([r.get(k) for k in props]) for r in result.records.get(stream, [])]


def chain(
    emu: Emulator,
    tmp_path: Path,
    catalog: dict[str, Any],
    budget: int,
    **settings: Any,
) -> list[SyncResult]:
    """Budgeted runs, each from the STATE of the one before, until one finishes."""
    results: list[SyncResult] = []
    state: dict[str, Any] | None = None
    for _ in range(30):
        result, paths = run_tap(emu, tmp_path, catalog, state, max_requests=budget, **settings)
        assert result.exit_code == 0, result.stderr
        assert len(paths) <= budget
        results.append(result)
        state = result.final_state
        warnings = [line for line in result.stderr.splitlines() if "Request budget spent" in line]
        if "run_in_parts" not in state:  # this run reached the end
            assert warnings == []
            return results
        assert len(warnings) == 1
        assert "WARNING" in warnings[0]
        assert f"{len(paths)} of max_requests {budget} requests used" in warnings[0]
        assert "Not read to the end: " in warnings[0]
    pytest.fail(f"max_requests {budget}: 30 runs did not finish")


def assert_same_records(
    reference: SyncResult, runs: list[SyncResult], catalog: dict[str, Any]
) -> None:
    for stream in STREAMS:
        expected = keys_of(reference, stream, catalog)
        got = [key for run in runs for key in keys_of(run, stream, catalog)]
        assert expected, stream
        assert set(got) == set(expected), stream
        if stream in EXACT:
            assert sorted(got) == sorted(expected), f"{stream}: a record sent twice"


def assert_versions_cover_the_stream(runs: list[SyncResult]) -> None:
    """`profile_ids` sends ACTIVATE_VERSION (a target then deletes the rows of older
    versions): the parts send its records under one version, activated once, after them."""
    versions = {
        m["version"]
        for run in runs
        for m in run.messages
        if m["type"] == "RECORD" and m["stream"] == "profile_ids"
    }
    activations = [
        (i, m["version"])
        for i, run in enumerate(runs)
        for m in run.messages
        if m["type"] == "ACTIVATE_VERSION" and m["stream"] == "profile_ids"
    ]
    assert len(versions) == 1
    assert [version for _, version in activations] == [versions.pop()]
    last_run_with_ids = max(i for i, run in enumerate(runs) if run.records.get("profile_ids"))
    assert activations[0][0] == last_run_with_ids


def budget_before(paths: list[str], pattern: str) -> int:
    """A budget that ends the first run just before the last request matching `pattern`, in
    the order of a serial run: it stops inside that stream, partition or window."""
    hits = [i for i, path in enumerate(paths) if re.search(pattern, path)]
    assert hits, pattern
    return hits[-1]


@pytest.mark.parametrize(
    ("pattern", "stream"),
    [
        (r"/database/1/profiles\?start=0$", "profiles_customers"),
        (r"/ms/clicks\?start=[1-9]", "ms_clicks"),
        (r"/ms/emailing/\d+/statistics", "ms_emailing_statistics"),
        (r"/ms/emailing/\d+/destinations\?start=[1-9]", "ms_emailing_destinations"),
    ],
    ids=["mid-profiles", "mid-event-window", "per-emailing", "mid-emailing-window"],
)
def test_runs_within_a_budget_continue_until_they_hold_every_record(
    emu: Emulator,
    catalog: dict[str, Any],
    reference: tuple[SyncResult, list[str]],
    tmp_path: Path,
    pattern: str,
    stream: str,
) -> None:
    full, paths = reference
    budget = budget_before(paths, pattern)
    runs = chain(emu, tmp_path, catalog, budget, **SETTINGS, max_parallel_requests=1)
    first = runs[0]
    assert 0 < len(first.records[stream]) < len(full.records[stream]), "stops inside"
    assert stream in first.stderr.split("Not read to the end: ")[1]
    if stream == "ms_clicks":
        # Cut inside a window: the next run starts at the offset reached in it.
        window = first.final_state["bookmarks"]["ms_clicks"]["window"]
        assert window["offset"] > 0
    assert_same_records(full, runs, catalog)
    assert_versions_cover_the_stream(runs)


def test_a_small_budget_with_requests_in_parallel(
    emu: Emulator,
    catalog: dict[str, Any],
    reference: tuple[SyncResult, list[str]],
    tmp_path: Path,
) -> None:
    """Several requests in flight when the budget ends: none beyond it is sent, and the
    pages already answered are emitted or read again, never skipped."""
    full, paths = reference
    structure = paths.index(next(p for p in paths if re.search(r"/profiles\?", p)))
    runs = chain(emu, tmp_path, catalog, structure + 12, **SETTINGS)
    assert len(runs) >= 3
    assert_same_records(full, runs, catalog)
    assert_versions_cover_the_stream(runs)


def test_the_summary_gives_requests_per_stream_and_in_total(
    emu: Emulator, catalog: dict[str, Any], tmp_path: Path
) -> None:
    result, paths = run_tap(emu, tmp_path, catalog, None, **SETTINGS)
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    per_stream = {
        m.group(1): int(m.group(2).replace(",", ""))
        for m in (
            re.search(r"  (\w+): [\d,]+ records, [\d,]+ pages, ([\d,]+) requests", line)
            for line in lines
        )
        if m
    }
    total = next(
        int(m.group(1).replace(",", ""))
        for m in (
            re.search(r"Run summary: [\d,]+ records, ([\d,]+) requests", line) for line in lines
        )
        if m
    )
    assert total == len(paths)
    assert sum(per_stream.values()) == total
    for stream, pattern in [
        ("ms_clicks", r"/v4/ms/clicks(\?.*)?"),
        ("ms_emailing_statistics", r"/v4/ms/emailing/\d+/statistics(\?.*)?"),
    ]:
        assert per_stream[stream] == len([p for p in paths if re.fullmatch(pattern, p)])
    assert "Request budget spent" not in result.stderr


def test_a_run_without_the_budget_finishes_what_a_budgeted_run_left(
    emu: Emulator,
    catalog: dict[str, Any],
    reference: tuple[SyncResult, list[str]],
    tmp_path: Path,
) -> None:
    full, paths = reference
    budget = budget_before(paths, r"/ms/emailing/\d+/statistics")
    cut, _ = run_tap(emu, tmp_path, catalog, None, **SETTINGS, max_requests=budget)
    assert "run_in_parts" in cut.final_state
    rest, _ = run_tap(emu, tmp_path, catalog, cut.final_state, **SETTINGS)
    assert rest.exit_code == 0
    assert "run_in_parts" not in rest.final_state
    assert "Continuing a run that spent its max_requests" in rest.stderr
    assert_same_records(full, [cut, rest], catalog)


def test_a_budget_below_what_the_account_structure_needs_is_an_error(
    emu: Emulator, catalog: dict[str, Any], tmp_path: Path
) -> None:
    result, paths = run_tap(emu, tmp_path, catalog, None, max_requests=2)
    assert result.exit_code == 1
    assert "raise `max_requests`" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(paths) == 2
    assert result.records == {}


#: Four streams of one request per emailing, all planned ahead in one run.
PER_EMAILING = [
    f"{product}_emailing_{kind}"
    for product in ("ms", "publisher")
    for kind in ("statistics", "snapshot")
]


def test_a_budget_barely_above_a_partition_still_finishes_with_requests_in_parallel(
    emu: Emulator, tmp_path: Path
) -> None:
    """Requests read ahead for partitions the run never reaches would spend the budget of
    every run (it stops before them): each run must read what it can with its budget."""
    catalog = catalog_selecting(config_for(emu), PER_EMAILING) or {}
    full, paths = run_tap(emu, tmp_path, catalog, None, max_parallel_requests=1)
    assert full.exit_code == 0, full.stderr
    structure = paths.index(next(p for p in paths if re.search(r"/emailing/\d+/", p)))
    partitions = sum(len(full.records[s]) for s in PER_EMAILING)
    runs = chain(emu, tmp_path, catalog, structure + 2, max_parallel_requests=8)
    # Each run reads as many partitions as its budget pays for (two), as a serial run
    # would: none of it goes to partitions it does not reach (28 partitions: 14 runs).
    assert len(runs) <= -(-partitions // 2) + 1
    for stream in PER_EMAILING:
        got = [r["emailing_id"] for run in runs for r in run.records.get(stream, [])]
        assert sorted(got) == sorted(r["emailing_id"] for r in full.records[stream]), stream
