"""A run within `max_requests`: the signal that the budget is spent, and a run in parts.

When the budget is spent, each stream stops at the page in hand (`RequestBudgetSpent` ends it
like an isolated failure: no bookmark past what it emitted, no ACTIVATE_VERSION). A run that
resumes must not read again what the run before it already finished, or a small budget would
be spent on the same streams every time: while a run is split this way, its STATE holds
`run_in_parts.finished`, the streams (`null`: all of it) and partitions or parent contexts
read to their end, and `run_in_parts.versions`, the version of each full table sending
ACTIVATE_VERSION (every part sends its records under that version; the run that reads the
table's end activates it). The next run skips what is finished and continues with the rest;
the run that reaches the end removes the entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

#: The top-level STATE key of a run split by `max_requests`.
STATE_KEY = "run_in_parts"


class RequestBudgetSpent(Exception):  # noqa: N818 (a signal, not a failure)
    """`max_requests` requests have been sent: this one is not."""

    def __init__(self, stream: str, context: Mapping[str, Any] | None, limit: int) -> None:
        super().__init__(f"max_requests ({limit:,}) reached")
        self.stream = stream
        self.context = dict(context) if context else None


def _key(context: Mapping[str, Any] | None) -> str:
    return json.dumps(None if context is None else dict(context), sort_keys=True, default=str)


class RunInParts:
    """The streams and contexts read to their end since the first run of an unfinished part
    sequence (kept in the STATE under `STATE_KEY`)."""

    def __init__(self) -> None:
        #: whether this run records what it finishes (it has a budget, or continues)
        self.active = False
        #: whether this run continues one that spent its budget (skips what that finished)
        self.resumed = False
        self._state: dict[str, Any] = {}
        self._finished: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}

    def begin(self, state: dict[str, Any], *, budgeted: bool) -> None:
        """Take over the entry of `state` (the tap's STATE, written as the run goes); keep
        track when this run has a budget or continues a run in parts."""
        entry = state.get(STATE_KEY)
        finished = entry.get("finished") if isinstance(entry, dict) else None
        self.active = budgeted or isinstance(finished, dict)
        self._state = state
        self._finished = {}
        for stream, contexts in (finished or {}).items():
            if isinstance(contexts, list):
                self._finished[str(stream)] = {_key(c): c for c in contexts}
        versions = entry.get("versions") if isinstance(entry, dict) else None
        self._versions = {
            str(stream): version
            for stream, version in (versions or {}).items()
            if isinstance(version, int)
        }
        self.resumed = bool(self._finished)
        if self.active:
            self._write()

    def finished_before(self, stream: str, context: Mapping[str, Any] | None) -> bool:
        """Whether the stream (context None) or this context of it was read to its end."""
        done = self._finished.get(stream)
        if not done:
            return False
        return _key(None) in done or _key(context) in done

    def finished(
        self, stream: str, context: Mapping[str, Any] | None, descendants: Iterable[str] = ()
    ) -> None:
        """`stream` (context None: all of it, with its child streams) was read to its end."""
        if not self.active:
            return
        if context is None:
            self._finished[stream] = {_key(None): None}
            for name in descendants:  # covered by the whole stream from now on
                self._finished.pop(name, None)
        else:
            self._finished.setdefault(stream, {})[_key(context)] = dict(context)
        self._write()

    def version(self, stream: str, version: int) -> int:
        """The full-table version of `stream`: the one of an earlier part, else `version`."""
        if not self.active:
            return version
        if stream not in self._versions:
            self._versions[stream] = version
            self._write()
        return self._versions[stream]

    def end(self) -> bool:
        """The run reached the end: drop the entry. Whether the STATE changed."""
        self.active, self._finished, self._versions = False, {}, {}
        return self._state.pop(STATE_KEY, None) is not None

    def _write(self) -> None:
        self._state[STATE_KEY] = {
            "finished": {name: list(done.values()) for name, done in self._finished.items()},
            "versions": dict(self._versions),
        }
