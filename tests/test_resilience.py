"""Scheduled runs fail at 3 a.m.: killed runs resume, outages are waited out, bad input is named."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator, RequestLog
from tests.conftest import config_for
from tests.singer import catalog_selecting, run_cli, script, sync

# The SDK writes STATE every 10,000 records; a small account needs it more often to be killed
# between two states, so this wrapper lowers that one number before running the real CLI.
KILLABLE_TAP = (
    "import sys; from tap_copernica.streams import ProfileStream; "
    "ProfileStream.STATE_MSG_FREQUENCY = 17; "
    "from tap_copernica.tap import TapCopernica; sys.argv[0] = 'tap-copernica'; "
    "TapCopernica.cli()"
)
STREAMS = ["profiles", "subprofiles", "profiles_customers", "profile_ids"]
KEYS = {"profile_ids": "profile_id"}


def run_until_killed(
    config_file: Path, catalog_file: Path, state: dict[str, Any] | None, kill_after: int
) -> tuple[list[dict[str, Any]], bool]:
    """Run the tap, SIGKILL it after `kill_after` output lines; return the lines it wrote."""
    args = [sys.executable, "-c", KILLABLE_TAP, "--config", str(config_file)]
    args += ["--catalog", str(catalog_file)]
    if state is not None:
        state_file = config_file.with_name("state.json")
        state_file.write_text(json.dumps(state))
        args += ["--state", str(state_file)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    messages = []
    for line in proc.stdout:
        messages.append(json.loads(line))
        if len(messages) >= kill_after:
            proc.kill()
            break
    proc.wait()
    finished = proc.returncode == 0
    return messages, finished


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_from_the_last_state_loses_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(8)
    with Emulator(seed=13, profiles_per_database=150) as emu:
        config = config_for(emu, page_size=15)
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        catalog_file = tmp_path / "catalog.json"
        catalog_file.write_text(json.dumps(catalog_selecting(config, STREAMS)))
        expected = {stream: set(sync(config, streams=[stream]).ids(stream)) for stream in STREAMS}
        seen: dict[str, set[int]] = defaultdict(set)
        state: dict[str, Any] | None = None
        kills = 0
        for _ in range(40):
            messages, finished = run_until_killed(
                config_file, catalog_file, state, kill_after=rng.randint(20, 400)
            )
            for message in messages:
                if message["type"] == "RECORD":
                    key = KEYS.get(message["stream"], "ID")
                    seen[message["stream"]].add(message["record"][key])
                elif message["type"] == "STATE":
                    state = message["value"]  # what a target confirms after writing
            if finished:
                break
            kills += 1
        assert finished, "the runs never completed"
        assert kills >= 5
        for stream in STREAMS:
            assert seen[stream] == expected[stream], stream


@pytest.mark.slow
def test_a_30_second_authentication_outage_mid_run_is_waited_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Emulator(seed=13, profiles_per_database=60, jwt_lifetime=2) as emu:
        # Slow, strictly serial pages: the run outlives its 2 s JWT even without the outage.
        emu.faults.latency_ms = 150
        fired = {"done": False}

        def outage(log: RequestLog) -> None:
            if not fired["done"] and log.path.endswith("/profiles"):
                fired["done"] = True
                emu.faults.auth_down_until = time.time() + 30

        emu.on_response(outage)
        started = time.monotonic()
        # Token requests follow the retry settings: 1, 2, 4, ... 32 s apart outlast 30 s.
        config = config_for(emu, page_size=5, max_parallel_requests=1, retry_initial_wait_ms=1000)
        result = sync(config, streams=["profiles"])
        assert result.exit_code == 0
        assert time.monotonic() - started >= 28
        expected = {
            int(p["ID"])
            for db in ("Customers", "Newsletter", "Legacy")
            for p in emu.store.profiles(db)
        }
        assert sorted(result.ids("profiles")) == sorted(expected)
    assert any("Authentication service unavailable" in m for m in caplog.messages)


def test_a_catalog_selecting_streams_the_account_lacks_is_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = config_for(emulator)
    catalog = catalog_selecting(config, ["profiles", "profiles_customers"])
    assert catalog is not None
    renamed = next(s for s in catalog["streams"] if s["tap_stream_id"] == "profiles_customers")
    renamed["tap_stream_id"] = renamed["stream"] = "profiles_old_crm"
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(catalog))
    result = run_cli(
        script("tap-copernica"), ["--catalog", str(catalog_file)], config=config, tmp_path=tmp_path
    )
    assert result.exit_code == 1
    assert "The catalog selects streams this account does not have: profiles_old_crm" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert result.records == {}


@pytest.mark.parametrize(
    ("partition", "complaint"),
    [
        ({"replication_key": "modified", "replication_key_value": "yesterday"}, "not an ISO"),
        (
            {
                "replication_key": "modified",
                "replication_key_value": "2024-01-01T00:00:00+00:00",
                "seen_ids": "1,2,3",
            },
            "seen_ids must be a list",
        ),
        ({"scan": {"after_id": "12"}}, "integer after_id"),
    ],
)
def test_a_hand_edited_state_is_refused_with_the_entry_named(
    emulator: Emulator, tmp_path: Path, partition: dict[str, Any], complaint: str
) -> None:
    state = {
        "bookmarks": {"profiles": {"partitions": [{"context": {"database_id": 1}, **partition}]}}
    }
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    result = run_cli(
        script("tap-copernica"),
        ["--state", str(state_file)],
        config=config_for(emulator),
        tmp_path=tmp_path,
    )
    assert result.exit_code == 1
    assert "state of stream 'profiles', partition {'database_id': 1}" in result.stderr
    assert complaint in result.stderr
    assert "meltano state clear" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("start_date", [None, "2000-01-01T00:00:00Z"], ids=["ranges", "keyset"])
def test_thousands_of_changes_while_paging_lose_and_repeat_nothing(start_date: str | None) -> None:
    rng = random.Random(21)
    with Emulator(seed=17, profiles_per_database=2000) as emu:
        customers = emu.store.database_id("Customers")
        before = {int(p["ID"]) for p in emu.store.profiles("Customers")}
        touched: set[int] = set()
        deleted: set[int] = set()
        inserted: list[int] = []
        churning = {"on": True}

        def churn(log: RequestLog) -> None:
            if not churning["on"] or log.path != f"/v4/database/{customers}/profiles":
                return
            live = sorted(before - deleted)
            for _ in range(40):
                action = rng.random()
                victim = rng.choice(live)
                if action < 0.3 and victim not in deleted:
                    emu.store.delete_profile(victim)
                    deleted.add(victim)
                elif action < 0.7 and victim not in deleted:
                    emu.store.update_profile(victim, {"city": f"moved-{rng.random()}"})
                    touched.add(victim)
                else:
                    inserted.append(emu.store.create_profile("Customers", {"city": "new"}))

        emu.on_response(churn)
        cfg = config_for(emu, page_size=50, database_ids=["Customers"])
        if start_date:
            cfg["start_date"] = start_date
        result = sync(cfg, streams=["profiles"])
        assert result.exit_code == 0
        changes = len(touched) + len(deleted) + len(inserted)
        assert changes > 1000, "thousands of changes happened while the tap paged"
        emitted: dict[int, int] = defaultdict(int)
        for profile_id in result.ids("profiles"):
            emitted[profile_id] += 1
        untouched = before - touched - deleted
        assert {i: emitted[i] for i in untouched} == dict.fromkeys(untouched, 1)
        # Whatever moved behind the read position arrives in the next run, with its last values.
        churning["on"] = False
        follow_up = sync(cfg, streams=["profiles"], state=result.final_state)
        final = {
            r["ID"]: r for r in result.records["profiles"] + follow_up.records.get("profiles", [])
        }
        for profile_id in touched - deleted:
            assert (
                final[profile_id]["fields"]["city"]
                == emu.store.get_profile(profile_id)["fields"]["city"]
            )
        assert set(inserted) <= set(final)
