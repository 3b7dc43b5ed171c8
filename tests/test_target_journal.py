"""Append-only loads across a crash and a rerun: the insert journal (target_copernica/journal.py).

Each test lets a run die the way production runs die (retries exhausted while a write is in
flight, or while an import runs), then reruns from the last STATE the dead run emitted, as
Meltano does, and checks what the user would check: every record is a profile exactly once.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Target

from copernica_emulator import Emulator
from copernica_emulator.imports import registry
from target_copernica.bulk_import import ImportStillRunning
from target_copernica.journal import InsertJournal
from tests.singer import SyncResult, run_cli, script
from tests.target_helpers import (
    add_warehouse,
    records,
    run_target,
    singer_lines,
    state,
    target_config,
)
from tests.test_target import customer_messages, customers


def written(emu: Emulator) -> Counter[tuple[str, str]]:
    return Counter(
        (p["fields"]["email"], p["fields"]["score"]) for p in emu.store.profiles("Warehouse")
    )


def expected(rows: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((r["email"], str(r["score"])) for r in rows)


def after_last_state(messages: list[dict[str, Any]], states: list[dict[str, Any]]) -> list[Any]:
    """What a rerun from the last emitted STATE receives: the SCHEMA, then what followed."""
    if not states:
        return messages
    last = max(i for i, m in enumerate(messages) if m.get("value") == states[-1])
    return [messages[0], *messages[last + 1 :]]


def test_a_rerun_after_a_crash_mid_batch_inserts_each_record_once(tmp_path: Path) -> None:
    """The run dies while one insert is in flight (its answer lost, no retry left) after a
    STATE was emitted and after records that followed it were written: the rerun skips what
    was written, decides the lost insert by counting its key, and writes the rest."""
    rows = customers(12)
    rows[7] = {**rows[3], "score": 7}  # the same key twice: append-only creates both
    rows[9] = dict(rows[8])  # an identical record twice: both are profiles
    messages = [
        *customer_messages(rows[:4])[:-1],
        state({"position": 4}),
        *records("customers", rows[4:]),
        state({"position": 12}),
    ]
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        # The 9th insert (after the key index's GET) is handled, then its connection drops;
        # no retries: the run dies with rows[8] in flight and rows[9:] unsent.
        emu.faults.add("drop_after", path=r"/database/\d+/profiles$", after=9, times=1)
        config = target_config(
            emu,
            tmp_path,
            load_method="append-only",
            batch_size_rows=4,
            max_retries=0,
            max_parallel_requests=1,
        )
        first = run_target(config, messages, catch=True)
        assert first.error is not None, "the run died"
        assert first.states == [{"position": 4}]
        assert len(emu.faults.injected) == 1
        journal = Path(config["insert_journal_path"])
        assert journal.exists(), "the dead run left its journal"
        second = run_target(config, after_last_state(messages, first.states))
        assert second.exit_code == 0
        assert written(emu) == expected(rows), "each record exactly once"
        # rows[4:8] were written after the STATE, rows[8] landed though its answer was lost.
        assert second.summary("customers") == {"already_written": 5, "inserted": 3}
        assert not journal.exists()


def test_a_rerun_waits_for_the_import_the_dead_run_started(tmp_path: Path) -> None:
    """The run dies while polling its import (the import goes on server-side): the rerun
    polls that import to its end and inserts none of its rows again."""
    rows = customers(30)
    messages = customer_messages(rows)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        emu.faults.add("html503", path=r"/import/\d+$", times=1)
        config = target_config(
            emu, tmp_path, load_method="append-only", write_path="bulk", max_retries=0
        )
        first = run_target(config, messages, catch=True)
        assert first.error is not None
        assert first.states == []
        second = run_target(config, after_last_state(messages, first.states))
        assert second.exit_code == 0
        assert written(emu) == expected(rows)
        assert second.summary("customers") == {"already_written": 30}
        imports = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/imports")]
        assert len(imports) == 1, "the rows were imported once"


def test_a_clean_run_leaves_no_journal_and_does_not_touch_the_next_one(tmp_path: Path) -> None:
    """Append-only means append: the same records sent again by a later run are new rows."""
    rows = customers(3)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        config = target_config(emu, tmp_path, load_method="append-only")
        run_target(config, customer_messages(rows))
        assert not Path(config["insert_journal_path"]).exists()
        run_target(config, customer_messages(rows))
        assert written(emu) == expected(rows + rows)


def test_journal_entries_answer_once_each(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = InsertJournal(path)
    lookup = ("database/1/profiles", (("fields[]", "email==a"),))
    ids = journal.begin([("fp-a", 0, lookup, 0), ("fp-a", 0, lookup, 1), ("fp-b", 0, lookup, 2)])
    journal.done(ids)
    reopened = InsertJournal(path)  # the process died; a rerun reads the file
    assert [reopened.already_written("fp-a", 0) for _ in range(3)] == [True, True, False]
    assert reopened.already_written("fp-b", 0)
    assert not reopened.already_written("fp-c", 0)


def test_a_cut_off_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = InsertJournal(path)
    journal.done(journal.begin([("fp-a", 0, ("database/1/profiles", ()), 0)]))
    with path.open("a") as handle:
        handle.write('{"done": [')  # the kill hit mid-line
    assert InsertJournal(path).already_written("fp-a", 0)


def test_an_emitted_state_retires_the_entries_before_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = InsertJournal(path)
    lookup = ("database/1/profiles", ())
    journal.done(journal.begin([("before-state", 0, lookup, 0)]))
    journal.done(journal.begin([("after-state", 1, lookup, 0)]))
    journal.state_emitted(1)
    reopened = InsertJournal(path)
    assert not reopened.already_written("before-state", 0), "a rerun starts after that STATE"
    assert reopened.already_written("after-state", 0)


def test_a_skip_after_a_state_not_yet_emitted_survives_that_state(tmp_path: Path) -> None:
    """A rerun skips what the killed run wrote. A skipped record that arrived after a STATE
    (a batch holds what came before it drained) is sent again by the next rerun if this one
    dies after emitting that STATE: it must still be skipped then, not inserted twice."""
    path = tmp_path / "journal.jsonl"
    killed = InsertJournal(path)
    lookup = ("database/1/profiles", ())
    killed.done(killed.begin([("fp-a", 0, lookup, 0), ("fp-b", 0, lookup, 1)]))
    rerun = InsertJournal(path)  # replays fp-a, reads a STATE, replays fp-b, one batch
    assert rerun.already_written("fp-a", 0)
    assert rerun.already_written("fp-b", 1)
    rerun.state_emitted(1)  # then killed: the next run replays from that STATE
    again = InsertJournal(path)
    assert again.already_written("fp-b", 0), "written once already: not inserted again"
    assert not again.already_written("fp-a", 0), "before the STATE: not replayed"
    assert not again.already_written("fp-b", 0)


def test_sdk_state_hooks(tmp_path: Path) -> None:
    """The journal relies on two private SDK methods (see TargetCopernica): fail loudly if
    the SDK stops calling them the way the journal expects."""
    assert "self._write_state_message(" in inspect.getsource(Target.drain_all)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        config = target_config(emu, tmp_path, load_method="append-only")
        run = run_target(config, [state({"a": 1}), state({"a": 1}), state({"a": 2})])
    assert run.target.confirmer.state_epoch == 2, "a new STATE opens an epoch; a repeat does not"
    assert run.states == [{"a": 1}, {"a": 2}], "with nothing to write, each is confirmed at once"


def test_state_is_confirmed_as_soon_as_everything_before_it_is_written(tmp_path: Path) -> None:
    """Not only at the end of the run: a rerun after a crash repeats about one batch."""
    rows = customers(10)
    messages = [customer_messages([])[0]]
    for n in range(0, 10, 2):
        messages += [*records("customers", rows[n : n + 2]), state({"n": n + 2})]
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        run = run_target(target_config(emu, tmp_path, batch_size_rows=4), messages)
        assert run.states == [{"n": n} for n in (2, 4, 6, 8, 10)]
        assert written(emu) == expected(rows)


def stopped_with_one_line(
    config: dict[str, Any], tmp_path: Path, messages: list[dict[str, Any]], words: str
) -> tuple[SyncResult, str]:
    """Run the console script; it must stop (exit 1, no traceback) with one line holding
    `words` that tells the user to rerun. Returns the run and that line."""
    result = run_cli(
        script("target-copernica"),
        [],
        config=config,
        tmp_path=tmp_path,
        stdin=singer_lines(messages),
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if words in x]
    assert "rerun it from its last STATE" in line
    return result, line


def imports_posted(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path.endswith("/imports"))


def test_an_append_only_import_still_running_at_the_timeout_stops_the_run_cleanly(
    tmp_path: Path,
) -> None:
    """Upserts fall back to the API path when an import outlasts `import_timeout_seconds`;
    an append-only load must not (the server goes on adding those rows). The run stops with
    one line naming the fix, and a rerun once the import is done adds nothing twice."""
    rows = customers(200)
    messages = customer_messages(rows)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        registry(emu.store).step_seconds = 0.25  # 200 rows in 2 s: past the 1 s timeout
        config = target_config(
            emu, tmp_path, load_method="append-only", write_path="bulk", import_timeout_seconds=1
        )
        first, line = stopped_with_one_line(config, tmp_path, messages, "still running after 1 s")
        assert "`import_timeout_seconds`" in line
        registry(emu.store).wait()
        assert written(emu) == expected(rows), "the import added each row; nothing else did"
        assert first.messages == [], "no STATE: the import covers every record"
        second = run_target(config, messages)  # the rerun from the state the run began with
        assert second.exit_code == 0
        assert written(emu) == expected(rows), "each record exactly once"
        assert second.summary("customers") == {"already_written": 200}
        assert imports_posted(emu) == 1


def test_a_rerun_stops_while_the_dead_runs_import_still_runs_then_finishes_it(
    tmp_path: Path,
) -> None:
    """The rerun must not guess how much of a running import landed: it stops until the
    import is done, and the rerun after that inserts none of its rows again."""
    rows = customers(200)
    messages = customer_messages(rows)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        imports = registry(emu.store)
        imports.step_seconds = 0.25
        emu.faults.add("html503", path=r"/import/\d+$", times=1)  # the run dies polling
        config = target_config(
            emu,
            tmp_path,
            load_method="append-only",
            write_path="bulk",
            max_retries=0,
            import_timeout_seconds=1,
        )
        first = run_target(config, messages, catch=True)
        assert first.error is not None
        second = run_target(config, messages, catch=True)
        assert isinstance(second.error, ImportStillRunning), second.error
        assert "The interrupted run's import" in str(second.error)
        imports.wait()
        third = run_target(config, messages)
        assert third.exit_code == 0
        assert written(emu) == expected(rows), "each record exactly once"
        assert third.summary("customers") == {"already_written": 200}
        assert imports_posted(emu) == 1


@pytest.mark.parametrize(("fault", "landed"), [("drop_after", True), ("reset", False)])
def test_an_import_whose_answer_was_lost_stops_the_run_and_the_rerun_counts_its_keys(
    tmp_path: Path, fault: str, landed: bool
) -> None:
    """An append-only import whose answer is lost is neither sent again nor given up: the
    run stops before anything else writes those keys, with one line naming the fix, and the
    rerun counts the keys, skipping the rows the import added and inserting the others."""
    rows = customers(60)
    messages = customer_messages(rows)
    with Emulator(seed=3, profiles_per_database=0) as emu:
        add_warehouse(emu)
        # `drop_after`: the import is made, then the answer is lost; `reset`: it never was.
        emu.faults.add(fault, path=r"/imports$", after=1, times=1)  # the second import
        config = target_config(
            emu,
            tmp_path,
            load_method="append-only",
            write_path="bulk",
            batch_size_rows=30,
            max_retries=1,
        )
        _, line = stopped_with_one_line(config, tmp_path, messages, "may have reached Copernica")
        assert "the import request for 30 rows failed" in line
        assert not Path(config["rejected_records_path"]).exists(), "nothing given up"
        registry(emu.store).wait()
        second = run_target(config, messages)
        assert second.exit_code == 0
        assert written(emu) == expected(rows), "each record exactly once"
        if landed:
            assert second.summary("customers") == {"already_written": 60}
        else:
            assert second.summary("customers") == {
                "already_written": 30,
                "inserted": 30,
                "imports": 1,
            }
