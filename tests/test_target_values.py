"""The target never changes a value silently: too long text and unknown select choices are
rejected (or cut, when the user asks for it, and counted), and several records with one key
in a batch are written once, as the last one leaves them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.target_helpers import (
    add_warehouse,
    profiles_by_email,
    records,
    run_target,
    schema,
    state,
    target_config,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "firstname": {"type": ["string", "null"]},
        "segment": {"type": ["string", "null"]},
        "score": {"type": ["integer", "null"]},
        "interests": {"type": ["array", "object", "null"]},
    },
}
LONG = "x" * 300


@pytest.fixture
def emu() -> Any:
    with Emulator(seed=3, profiles_per_database=2) as emulator:
        db = add_warehouse(emulator)
        emulator.store.add_field("database", db, "segment", "select", "gold\nsilver\nbronze")
        yield emulator


def messages(rows: list[dict[str, Any]], bookmark: int = 1) -> list[dict[str, Any]]:
    return [
        schema("customers", SCHEMA, ["email"]),
        *records("customers", rows),
        state({"bookmarks": {"customers": bookmark}}),
    ]


def summary(run: Any) -> dict[str, int]:
    """What happened to the records (not by which path they went)."""
    return {k: v for k, v in run.summary("customers").items() if k != "imports"}


def test_emulator_cuts_long_text_and_empties_unknown_choices_as_copernica_does(
    emu: Emulator,
) -> None:
    profile_id = emu.store.create_profile(
        "Warehouse", {"email": "a@example.nl", "firstname": LONG, "segment": "platinum"}, ()
    )
    fields = emu.store.get_profile(profile_id)["fields"]
    assert fields["firstname"] == "x" * 255
    assert fields["segment"] == ""


@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_too_long_text_is_rejected_naming_the_field_and_its_length(
    emu: Emulator, tmp_path: Path, write_path: str
) -> None:
    rows = [
        {"email": "long@example.nl", "firstname": LONG},
        {"email": "fine@example.nl", "firstname": "Fine"},
    ]
    result = run_target(target_config(emu, tmp_path, write_path=write_path), messages(rows))
    assert result.exit_code == 0
    assert set(profiles_by_email(emu)) == {"fine@example.nl"}
    assert summary(result)["rejected"] == 1
    (rejected,) = result.rejected
    assert rejected["record"]["email"] == "long@example.nl"
    assert "'firstname'" in rejected["reason"]
    assert "300 characters" in rejected["reason"]
    assert "at most 255" in rejected["reason"]
    assert "truncate_long_values" in rejected["reason"]
    assert result.states == [{"bookmarks": {"customers": 1}}]


def test_unknown_select_choice_is_rejected_and_the_stored_choice_kept(
    emu: Emulator, tmp_path: Path
) -> None:
    config = target_config(emu, tmp_path, write_path="api")
    first = run_target(config, messages([{"email": "a@example.nl", "segment": "gold"}]))
    assert summary(first) == {"inserted": 1}
    second = run_target(config, messages([{"email": "a@example.nl", "segment": "platinum"}], 2))
    assert profiles_by_email(emu)["a@example.nl"]["fields"]["segment"] == "gold"
    assert summary(second) == {"rejected": 1}
    (rejected,) = second.rejected
    assert "'segment'" in rejected["reason"]
    assert "'platinum'" in rejected["reason"]
    assert "['gold', 'silver', 'bronze']" in rejected["reason"]
    # An empty value clears a select field: that is asked for, not a silent change.
    third = run_target(config, messages([{"email": "a@example.nl", "segment": None}], 3))
    assert summary(third) == {"updated": 1}
    assert profiles_by_email(emu)["a@example.nl"]["fields"]["segment"] == ""


@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_truncate_long_values_cuts_and_counts_in_the_summary_line(
    emu: Emulator, tmp_path: Path, write_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = target_config(emu, tmp_path, write_path=write_path, truncate_long_values=True)
    rows = [
        {"email": "long@example.nl", "firstname": LONG},
        {"email": "fine@example.nl", "firstname": "Fine"},
    ]
    with caplog.at_level("INFO"):
        result = run_target(config, messages(rows))
    assert result.exit_code == 0
    assert not result.rejected
    found = profiles_by_email(emu)
    assert found["long@example.nl"]["fields"]["firstname"] == "x" * 255
    assert found["fine@example.nl"]["fields"]["firstname"] == "Fine"
    assert summary(result) == {"inserted": 2, "truncated": 1}
    assert "truncated=1" in caplog.text
    # A select value is never "cut": it is still rejected.
    bad = run_target(config, messages([{"email": "x@example.nl", "segment": "platinum"}], 2))
    assert summary(bad) == {"rejected": 1}


@pytest.mark.parametrize("load_method", ["upsert", "update-only"])
@pytest.mark.parametrize("write_path", ["api", "bulk"])
def test_records_with_one_key_in_a_batch_write_once_and_reruns_change_nothing(
    emu: Emulator,
    tmp_path: Path,
    load_method: str,
    write_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = target_config(emu, tmp_path, write_path=write_path, load_method=load_method)
    if load_method == "update-only":
        run_target(
            target_config(emu, tmp_path / "seed"),
            messages([{"email": "a@example.nl"}, {"email": "b@example.nl"}]),
        )
    rows: list[dict[str, Any]] = [
        {"email": "a@example.nl", "firstname": "First", "score": 1},
        {"email": "b@example.nl", "firstname": "Bea"},
        {"email": "A@example.nl", "firstname": "Second"},  # the same key, other case
        {"email": "a@example.nl", "firstname": "Last"},
    ]
    with caplog.at_level("INFO"):
        first = run_target(config, messages(rows))
    assert first.exit_code == 0
    counts = summary(first)
    assert counts["superseded"] == 2
    assert counts.get("inserted", 0) + counts.get("updated", 0) == 2
    assert "superseded=2" in caplog.text
    found = profiles_by_email(emu)
    a = next(p for email, p in found.items() if email.lower() == "a@example.nl")
    # The last record wins; what it leaves out keeps the earlier records' values.
    assert a["fields"]["firstname"] == "Last"
    assert a["fields"]["score"] == "1"
    before = profiles_by_email(emu)
    emu.store.advance(60)
    second = run_target(config, messages(rows, 2))
    assert summary(second) == {"updated": 2, "superseded": 2}
    assert profiles_by_email(emu) == before, "a rerun changes nothing, not even `modified`"


def test_append_only_keeps_every_record_with_one_key(emu: Emulator, tmp_path: Path) -> None:
    config = target_config(emu, tmp_path, write_path="api", load_method="append-only")
    rows = [{"email": "a@example.nl", "firstname": "One"}, {"email": "a@example.nl"}]
    result = run_target(config, messages(rows))
    assert summary(result) == {"inserted": 2}
    assert len(emu.store.profiles("Warehouse")) == 2


def test_interests_of_superseded_records_are_kept_as_written_in_a_row(
    emu: Emulator, tmp_path: Path
) -> None:
    config = target_config(emu, tmp_path, write_path="api")
    rows: list[dict[str, Any]] = [
        {"email": "a@example.nl", "interests": ["news"]},
        {"email": "a@example.nl", "interests": {"offers": True}},
    ]
    result = run_target(config, messages(rows))
    assert summary(result) == {"inserted": 1, "superseded": 1}
    assert sorted(profiles_by_email(emu)["a@example.nl"]["interests"]) == ["news", "offers"]
