"""The target killed at random points and rerun from the last STATE it confirmed: every record
lands exactly once (upsert makes repeats harmless; append-only relies on the insert journal),
the last value of a key wins."""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.singer import script
from tests.target_helpers import add_warehouse, profiles_by_email, target_config

pytestmark = pytest.mark.slow

SCHEMA = {
    "type": "SCHEMA",
    "stream": "customers",
    "schema": {"properties": {"email": {"type": "string"}, "score": {"type": "integer"}}},
    "key_properties": ["email"],
}


def source(count: int) -> list[dict[str, Any]]:
    """What a tap would send: records with a STATE after every 20, later rows updating earlier
    keys (the last value must win)."""
    rng = random.Random(5)
    messages: list[dict[str, Any]] = []
    for position in range(count):
        email = f"c{rng.randrange(count // 2)}@example.org"
        row = {"email": email, "score": position}
        messages.append({"type": "RECORD", "stream": "customers", "record": row})
        if position % 20 == 19:
            messages.append({"type": "STATE", "value": {"position": position + 1}})
    return messages


def run_until_killed(
    config_file: Path, messages: list[dict[str, Any]], kill_after: float
) -> tuple[list[dict[str, Any]], bool]:
    """Run target-copernica on `messages`; SIGKILL it after `kill_after` s unless it ends."""
    proc = subprocess.Popen(
        [script("target-copernica"), "--config", str(config_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    timer = threading.Timer(kill_after, proc.kill)
    timer.start()
    try:
        out, _ = proc.communicate("\n".join(json.dumps(m) for m in [SCHEMA, *messages]) + "\n")
    finally:
        timer.cancel()
    states = [json.loads(line) for line in out.splitlines() if line.strip()]
    return states, proc.returncode == 0


def load_with_kills(
    emu: Emulator, tmp_path: Path, messages: list[dict[str, Any]], **settings: Any
) -> int:
    """Run the target on `messages`, SIGKILLing it at random points and rerunning it from
    the last STATE it emitted, until one run ends; returns how many runs were killed."""
    rng = random.Random(11)
    config = target_config(emu, tmp_path, batch_size_rows=30, **settings)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    position, kills, finished = 0, 0, False
    for attempt in range(30):
        index = next(
            (i for i, m in enumerate(messages) if m.get("value", {}).get("position") == position),
            -1,
        )
        states, finished = run_until_killed(
            config_file,
            messages[index + 1 :],
            kill_after=rng.uniform(1.0, 2.2) if attempt < 6 else 600.0,
        )
        if states:
            position = int(states[-1]["position"])  # what the target confirmed
        if finished:
            break
        kills += 1
    assert finished
    return kills


def test_killed_target_reruns_from_its_last_state_and_writes_each_key_once(
    tmp_path: Path,
) -> None:
    messages = source(600)
    with Emulator(seed=4, profiles_per_database=5) as emu:
        add_warehouse(emu)
        emu.faults.latency_ms = 40
        kills = load_with_kills(emu, tmp_path, messages, write_path="api")
        assert kills >= 3, "the target was really killed mid-load"
        last_score: dict[str, int] = {}
        for message in messages:
            if message["type"] == "RECORD":
                last_score[message["record"]["email"]] = message["record"]["score"]
        profiles = emu.store.profiles("Warehouse")
        emails = [p["fields"]["email"] for p in profiles]
        assert len(emails) == len(set(emails)) == len(last_score), "each key exactly once"
        written = profiles_by_email(emu)
        assert {e: int(written[e]["fields"]["score"]) for e in last_score} == last_score


@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_killed_append_only_target_inserts_every_record_exactly_once(
    tmp_path: Path, write_path: str
) -> None:
    """Append-only creates a profile per record, keys repeating: a rerun must not insert
    again what the killed run wrote after its last STATE (the insert journal)."""
    messages = source(600)
    with Emulator(seed=4, profiles_per_database=5) as emu:
        add_warehouse(emu)
        emu.faults.latency_ms = 40 if write_path == "api" else 60
        journal = tmp_path / "journal" / "inserts.jsonl"
        kills = load_with_kills(
            emu,
            tmp_path,
            messages,
            write_path=write_path,
            load_method="append-only",
            insert_journal_path=str(journal),
        )
        sent = Counter(
            (m["record"]["email"], m["record"]["score"]) for m in messages if m["type"] == "RECORD"
        )
        written = Counter(
            (p["fields"]["email"], int(p["fields"]["score"]))
            for p in emu.store.profiles("Warehouse")
        )
        assert written == sent, "every record once: none lost, none doubled"
        assert kills >= 3, "the target was really killed mid-load"
        assert not journal.exists(), "a finished run leaves no journal"
