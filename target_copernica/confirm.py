"""Confirming STATE: a STATE is emitted once every record before it is written, and soon.

The SDK emits STATE only when it drains every sink: at the end, or every 5 minutes (a full
batch drains alone). A crash then repeats minutes of records on the rerun, and an
append-only journal holds them all. So the latest STATE is confirmed as soon as nothing
before it is left unwritten: after a batch when no sink holds records (a one-stream load:
after every batch), or when a STATE arrives then; and once a batch was written, the next
STATE drains the other streams' partial batches to get there.

A batch's last bulk import may still be running when its batch returns (the server works on
it while the next batch is read): the STATE it completes is held until it has ended.

The confirmer also keeps the insert journal of an append-only run (`journal.py`): it decides
what an interrupted run had in flight before the first write, and retires entries once a
STATE after them is out.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from functools import cached_property

from singer_sdk import Sink

from target_copernica.journal import CountMatches, ImportProcessed, InsertJournal


class StateConfirmer:
    """Batch and import bookkeeping of a run, and when its STATE may be emitted.

    From the target it needs only: the latest STATE read (`latest_state`), whether a sink
    other than one holds records (`nothing_held`), a drain of every sink (`drain_all`, which
    ends in `state_due`) and the writing of a STATE line (`emit_state`)."""

    def __init__(
        self,
        *,
        latest_state: Callable[[], dict | None],
        nothing_held: Callable[[Sink | None], bool],
        drain_all: Callable[[], None],
        emit_state: Callable[[dict], None],
        journal_path: str | None,
        count_matches: CountMatches,
        import_processed: ImportProcessed,
    ) -> None:
        self._latest = latest_state
        self._nothing_held = nothing_held
        self._drain_every_sink = drain_all
        self._emit_state = emit_state
        self._journal_path = journal_path
        self._count_matches = count_matches
        self._import_processed = import_processed
        self._lock = threading.Lock()
        self.state_epoch = 0  # STATE messages read so far; see `journal.py`
        self._written_since_state = False
        self._state_confirmed = True  # the latest STATE read has been emitted
        self._batches_in_flight = 0
        self._running: Callable[[], None] | None = None  # ends the import still running
        self._covered: tuple[dict, int] | None = None  # STATE (and epoch) it completes

    # -- the insert journal --------------------------------------------------------------
    @cached_property
    def journal(self) -> InsertJournal | None:
        """The insert journal of an append-only run (None otherwise), opened at first use."""
        if self._journal_path is None:
            return None
        return InsertJournal(self._journal_path)

    def settle_journal(self) -> None:
        """Decide what an interrupted append-only run had in flight (once, before the
        first write: an import it started must end before keys are counted)."""
        journal = self.journal
        if journal is None or journal.settled:
            return
        journal.settle(self._count_matches, self._import_processed)

    # -- batches and imports -------------------------------------------------------------
    def batch_started(self) -> None:
        with self._lock:
            self._batches_in_flight += 1

    def batch_written(self, sink: Sink) -> None:
        """A sink wrote (or rejected) its batch, or sent its last import."""
        with self._lock:
            self._batches_in_flight -= 1
            self._written_since_state = True
            if self._batches_in_flight or not self._nothing_held(sink):
                return
        self._confirm_state()

    def finish_later(self, finish: Callable[[], None]) -> None:
        """Hold the end of a running import until the next write or STATE needs it."""
        assert self._running is None, "one import runs at a time"
        self._running = finish

    def write_everything(self) -> None:
        """Write every record read so far: drain every sink and end the running import
        (what a full table's mirror needs before it may look for absent profiles). The
        drain emits the latest STATE, which then covers everything before it."""
        self._drain_every_sink()
        self.finish_writes()

    def finish_writes(self) -> None:
        """End the running import (and write what it left), then confirm what it completes."""
        finish, self._running = self._running, None
        if finish is None:
            return
        finish()
        if self._covered is not None:
            state, epoch = self._covered
            self._covered = None
            self._emit(state, epoch)

    # -- STATE -----------------------------------------------------------------------------
    # The target's hooks (`copernica_api.sdk_compat.CompatTarget`) say when a STATE was read
    # and when the SDK would emit one; they delegate to these two.
    def state_read(self, changed: bool) -> None:
        """A new STATE counts as an epoch; confirm it at once when nothing is held."""
        if not changed:
            return
        self.state_epoch += 1
        self._state_confirmed = False
        if self._nothing_held(None):
            self._confirm_state()
        elif self._written_since_state:
            self._drain_every_sink()

    def state_due(self, state: dict) -> None:
        """The SDK's drain_all emits the latest STATE: end the running import first."""
        self.finish_writes()
        if not self._state_confirmed:  # else emitted already
            self._emit(state, self.state_epoch)

    def _confirm_state(self) -> None:
        """Emit the latest STATE: nothing before it is unwritten, but an import may still
        be running, and then it is emitted when that import has ended."""
        latest = self._latest()
        if not latest or self._state_confirmed:
            return
        if self._running is not None:
            self._covered = (copy.deepcopy(latest), self.state_epoch)
        else:
            self._emit(copy.deepcopy(latest), self.state_epoch)

    def _emit(self, state: dict, epoch: int) -> None:
        self._emit_state(state)
        self._written_since_state = False
        self._state_confirmed = epoch == self.state_epoch
        # After the line is out: until then a rerun would start from the older STATE.
        if self.journal is not None:
            self.journal.state_emitted(epoch)
