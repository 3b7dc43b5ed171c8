"""The BATCH route: `batch_config` writes gzip JSONL files and BATCH messages instead of
RECORD lines, for targets that bulk-load files (target-snowflake, target-postgres, ...)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from copernica_emulator import Emulator
from tests.singer import SyncResult, sync

#: Profiles (typed and generic: their own RECORD writer), an event stream (windows, STATE
#: after every page), a structure list and the per-emailing statistics.
STREAMS = ["profiles", "profiles_customers", "subprofiles_customers_orders", "ms_clicks"]
STREAMS += ["databases", "ms_emailing_statistics"]


def batch_config(root: Path, size: int) -> dict[str, Any]:
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": root.as_uri(), "prefix": "copernica-"},
        "batch_size": size,
    }


def batch_records(message: dict[str, Any]) -> list[dict[str, Any]]:
    records = []
    for url in message["manifest"]:
        with gzip.open(urlparse(url).path, "rt", encoding="utf-8") as lines:
            records += [json.loads(line) for line in lines]
    return records


def test_batch_files_hold_exactly_the_records_of_a_normal_run(
    emulator: Emulator, config: dict[str, Any], tmp_path: Path
) -> None:
    normal = sync(config, streams=STREAMS)
    batched = sync({**config, "batch_config": batch_config(tmp_path, 50)}, streams=STREAMS)
    assert normal.exit_code == batched.exit_code == 0
    assert not [m for m in batched.messages if m["type"] == "RECORD"]
    messages = [m for m in batched.messages if m["type"] == "BATCH"]
    assert {m["encoding"]["format"] for m in messages} == {"jsonl"}
    assert {m["encoding"]["compression"] for m in messages} == {"gzip"}
    files: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        files.setdefault(message["stream"], []).extend(batch_records(message))
    assert set(files) == set(normal.records) == set(STREAMS)
    for stream in STREAMS:
        assert files[stream] == normal.records[stream], stream
    assert len(files["profiles_customers"]) == 120  # three files of at most 50
    assert len([m for m in messages if m["stream"] == "profiles_customers"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(urlparse(url).path).name for m in messages for url in m["manifest"]
    )
    # The same bookmarks as a normal run: a later run, either way, goes on from here.
    for stream in ("profiles_customers", "ms_clicks"):
        assert final(batched, stream) == final(normal, stream)


def final(result: SyncResult, stream: str) -> Any:
    bookmark = result.final_state["bookmarks"][stream]
    partitions = bookmark.get("partitions") or [bookmark]
    return [(p.get("replication_key"), bool(p.get("replication_key_value"))) for p in partitions]


def test_every_state_follows_the_batches_that_hold_what_it_covers(
    emulator: Emulator, config: dict[str, Any], tmp_path: Path
) -> None:
    """A target stores a STATE once it has loaded what came before it: a bookmark must never
    run ahead of the records already sent in BATCH files (or a failed run would skip rows)."""
    streams = ["profiles_customers", "ms_clicks"]
    normal = sync(config, streams=streams)
    settings = {**config, "page_size": 25, "batch_config": batch_config(tmp_path, 40)}
    batched = sync(settings, streams=streams)
    assert batched.exit_code == 0
    sent: dict[str, set[Any]] = {s: set() for s in streams}
    checked = 0
    for message in batched.messages:
        if message["type"] == "BATCH":
            sent[message["stream"]] |= {r["ID"] for r in batch_records(message)}
        elif message["type"] == "STATE":
            bookmarks = message["value"].get("bookmarks", {})
            clicks = bookmarks.get("ms_clicks", {}).get("replication_key_value")
            if clicks:  # the end of the last window read in full
                end = dt.datetime.fromisoformat(clicks)
                covered = {
                    r["ID"]
                    for r in normal.records["ms_clicks"]
                    if dt.datetime.fromisoformat(r["timestamp"]) < end
                }
                assert covered <= sent["ms_clicks"], clicks
                checked += 1
            for partition in bookmarks.get("profiles_customers", {}).get("partitions", []):
                scan = partition.get("scan")
                if scan:  # a full load: every profile up to `after_id` is loaded
                    covered = {
                        r["ID"]
                        for r in normal.records["profiles_customers"]
                        if r["ID"] <= scan["after_id"]
                    }
                    assert covered <= sent["profiles_customers"], scan
                    checked += 1
    assert checked >= 5
    assert sent["ms_clicks"] == {r["ID"] for r in normal.records["ms_clicks"]}
