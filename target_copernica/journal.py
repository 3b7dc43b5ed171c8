"""The insert journal: append-only loads written exactly once across a crash and a rerun.

An upsert repeated after a rerun is harmless; an insert is not. The Singer contract makes a
rerun resend every record after the last STATE the target emitted, and the SDK writes the
records that arrived after that STATE too (a batch holds whatever arrived before it
drained). So, in append-only mode, the target notes each insert in a local JSONL file:
*pending* before the request, *done* after it. A STATE the target emits makes the entries of
the records before it obsolete; they are compacted away. A run that ends normally deletes
the file.

A run that finds the file resumes an interrupted one:
- a *done* entry means the record was written: the first identical record of the replay
  (same stream, same values) is skipped, one skip per entry (two identical records written
  are two entries);
- a *pending* entry's request may or may not have landed: an import with a known ID is
  polled to its end (its first `processedlines` rows landed, as the bulk path assumes); any
  other is decided by counting the profiles with its key now against the count before the
  request (key groups are written one request at a time, so nothing else moved that count,
  unless someone else writes the same key meanwhile).

Entries are flushed line by line: they survive a killed process, not a lost disk.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("target_copernica.journal")

# How to count the profiles (or subprofiles) with one key: a list path and its selector.
Lookup = tuple[str, tuple[tuple[str, str], ...]]
CountMatches = Callable[[Lookup], int]
ImportProcessed = Callable[[str], int]


@dataclass
class Entry:
    """One insert: pending until its request is known to have landed."""

    fp: str  # the write's fingerprint (`records.fingerprint_of`)
    epoch: int
    lookup: Lookup
    before: int
    done: bool = False
    batch: str = ""  # the entries of one import share a batch
    import_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "fp": self.fp,
            "epoch": self.epoch,
            "lookup": [self.lookup[0], [list(p) for p in self.lookup[1]]],
            "before": self.before,
            "done": self.done,
            "batch": self.batch,
            "import_id": self.import_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        path, params = data["lookup"]
        return cls(
            fp=str(data["fp"]),
            epoch=int(data.get("epoch", 0)),
            lookup=(str(path), tuple((str(k), str(v)) for k, v in params)),
            before=int(data.get("before", 0)),
            done=bool(data.get("done")),
            batch=str(data.get("batch", "")),
            import_id=str(data.get("import_id", "")),
        )


@dataclass
class _Carried:
    """What an interrupted run left: writes to skip, and pending ones to decide."""

    done: Counter[str] = field(default_factory=Counter)
    pending: list[Entry] = field(default_factory=list)


class InsertJournal:
    """The journal of one target run (append-only mode only)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[int, Entry] = {}
        self._next_id = 0
        self._carried = self._read_previous()
        self._settled = not self._carried.pending
        self.skipped = 0
        self._file: IO[str] | None = None
        self._rewrite()

    # -- the previous run ----------------------------------------------------------------
    def _read_previous(self) -> _Carried:
        carried = _Carried()
        if not self.path.exists():
            return carried
        entries: dict[str, Entry] = {}
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    event = json.loads(line)
                    if "entry" in event:
                        entries[str(event["id"])] = Entry.from_json(event["entry"])
                    elif "done" in event:
                        for key in event["done"]:
                            entries[str(key)].done = True
                    elif "drop" in event:
                        for key in event["drop"]:
                            entries.pop(str(key), None)
                    elif "import" in event:
                        for key in event["ids"]:
                            entries[str(key)].import_id = str(event["import"])
                except (ValueError, KeyError, TypeError):
                    # The last line of a killed run may be cut off; nothing after it exists.
                    logger.warning("%s line %d is incomplete; ignoring it.", self.path, number)
        for entry in entries.values():
            if entry.done:
                carried.done[entry.fp] += 1
            else:
                carried.pending.append(entry)
        if entries:
            logger.warning(
                "Found %s from an interrupted append-only run: %d record(s) it wrote will "
                "not be written again, %d write(s) it had in flight will be checked.",
                self.path,
                sum(carried.done.values()),
                len(carried.pending),
            )
        return carried

    def settle(self, count_matches: CountMatches, import_processed: ImportProcessed) -> None:
        """Decide the interrupted run's pending writes (once, before the first insert)."""
        with self._lock:
            if self._settled:
                return
            pending = self._carried.pending
            batches: dict[str, list[Entry]] = {}
            for entry in pending:
                batches.setdefault(entry.batch or f"single-{id(entry)}", []).append(entry)
            landed: list[Entry] = []
            for entries in batches.values():  # may raise: then nothing here has changed
                import_id = next((e.import_id for e in entries if e.import_id), "")
                if import_id:
                    landed += entries[: max(0, import_processed(import_id))]
                else:
                    landed += self._by_counts(entries, count_matches)
            self._carried.pending = []
            for entry in landed:
                self._carried.done[entry.fp] += 1
            logger.info(
                "Of %d write(s) in flight when the last run stopped, %d had landed.",
                len(pending),
                len(landed),
            )
            self._settled = True
            self._rewrite()

    @staticmethod
    def _by_counts(entries: Sequence[Entry], count_matches: CountMatches) -> list[Entry]:
        by_lookup: dict[Lookup, list[Entry]] = {}
        for entry in entries:
            by_lookup.setdefault(entry.lookup, []).append(entry)
        done: list[Entry] = []
        for lookup, group in by_lookup.items():
            grown = count_matches(lookup) - min(e.before for e in group)
            done.extend(group[: max(0, min(grown, len(group)))])
        return done

    @property
    def settled(self) -> bool:
        return self._settled

    def already_written(self, fp: str, epoch: int) -> bool:
        """Whether the interrupted run wrote this record (each entry answers yes once).

        A record skipped here may have arrived after a STATE this run has read but not yet
        emitted (a batch holds what arrived before it drained). A rerun from that STATE
        sends it again, so the skip becomes a *done* entry of this run with the record's
        epoch, kept by `state_emitted` like any write after the STATE. It is not appended:
        until the next rewrite the file still holds the interrupted run's entry for it.
        """
        with self._lock:
            if self._carried.done[fp] > 0:
                self._carried.done[fp] -= 1
                self.skipped += 1
                self._next_id += 1
                self._entries[self._next_id] = Entry(fp, epoch, ("", ()), 0, done=True)
                return True
            return False

    # -- this run ------------------------------------------------------------------------
    def begin(
        self,
        writes: Sequence[tuple[str, int, Lookup, int]],
        *,
        batch: str = "",
    ) -> list[int]:
        """Note writes about to be sent (fingerprint, epoch, lookup, count before)."""
        with self._lock:
            ids: list[int] = []
            lines: list[str] = []
            for fp, epoch, lookup, before in writes:
                self._next_id += 1
                entry = Entry(fp, epoch, lookup, before, batch=batch)
                self._entries[self._next_id] = entry
                ids.append(self._next_id)
                lines.append(json.dumps({"id": self._next_id, "entry": entry.to_json()}))
            self._append(lines)
            return ids

    def imported_as(self, ids: Sequence[int], import_id: str) -> None:
        with self._lock:
            for key in ids:
                self._entries[key].import_id = import_id
            self._append([json.dumps({"import": import_id, "ids": list(ids)})])

    def done(self, ids: Sequence[int]) -> None:
        with self._lock:
            for key in ids:
                self._entries[key].done = True
            self._append([json.dumps({"done": list(ids)})])

    def drop(self, ids: Sequence[int]) -> None:
        """Forget writes that surely did not land (they are sent again another way)."""
        with self._lock:
            for key in ids:
                self._entries.pop(key, None)
            self._append([json.dumps({"drop": list(ids)})])

    def state_emitted(self, epoch: int) -> None:
        """The target emitted the STATE that opened `epoch`: a rerun starts after it, so
        the entries of records that arrived before it are no longer needed."""
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items() if e.epoch >= epoch}
            self._rewrite()

    def finish(self) -> None:
        """The run ended normally: nothing is left to resume."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self.skipped:
                logger.info(
                    "Skipped %d record(s) the interrupted run had already written.", self.skipped
                )
            unused = sum(self._carried.done.values())
            if unused:
                logger.warning(
                    "%d record(s) noted by the interrupted run did not come again in this run "
                    "(was it started from another state?).",
                    unused,
                )
            self.path.unlink(missing_ok=True)

    # -- the file ------------------------------------------------------------------------
    def _append(self, lines: Sequence[str]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write("".join(f"{line}\n" for line in lines))
        self._file.flush()

    def _rewrite(self) -> None:
        """Write what is still needed to a new file and swap it in (never half a file)."""
        lines: list[str] = []
        number = 0
        carried = [
            *(Entry(fp, -1, ("", ()), 0, done=True) for fp in self._carried.done.elements()),
            *self._carried.pending,
        ]
        for entry in carried:
            number -= 1
            lines.append(json.dumps({"id": number, "entry": entry.to_json()}))
        for key, entry in self._entries.items():
            lines.append(json.dumps({"id": key, "entry": entry.to_json()}))
        if self._file is not None:
            self._file.close()
            self._file = None
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        os.replace(temporary, self.path)
