"""The bulk write path: `POST /imports` with a JSON source, polled on `GET /import/{id}`.

One import carries many profiles: action by load method (`update or add`, `update`,
`add`), `keyFields` from the key fields, rows whose keys are all in the same order (the API
refuses rows with another order). Imports run server-side and asynchronously; the target
polls until `processedlines` reaches `totallines`, then checks that every row was
processed. A failed import's rows go back to the API path (upserts and updates are
idempotent; for appends only the rows the import did not process), so nothing is lost and
nothing doubled. Appends are noted in the insert journal (`journal.py`) before the import
is sent, with the import's ID once known, so a rerun after a crash neither repeats nor
loses them. Only profiles with plain field values go this way: interests, deletes and
subprofiles always use the API path.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from copernica_api.errors import TransientAPIError
from copernica_api.http import CopernicaSession, RetryStopped
from copernica_api.payloads import payload_of
from target_copernica.destination import selector
from target_copernica.records import Item, fingerprint_of
from target_copernica.settings import INSERT, UPDATE_ONLY, UPSERT
from target_copernica.stream_write import StreamWrite, created_id

logger = logging.getLogger("target_copernica.bulk_import")
ACTIONS = {UPSERT: "update or add", UPDATE_ONLY: "update", INSERT: "add"}
ROWS_PER_IMPORT = 10_000  # one default batch (about 1-2 MB of JSON); the body limit is unknown
RUNNING = frozenset(
    {"ready for start", "queued", "scheduled", "running", "busy", "started", "processing"}
)
FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 5.0


def _int(value: Any) -> int:
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Running:
    """An import sent and not yet seen to end."""

    import_id: str
    items: list[Item]
    noted: list[int]  # its journal entries (append-only)


class ImportUndecided(Exception):  # noqa: N818 (a state of the server, named as such)
    """An append-only import whose rows may or may not be in: they can neither be sent
    again nor given up, so the run stops, and a rerun from its last STATE decides them
    from the insert journal (it waits for the import, or counts the rows' keys, before
    anything else writes those keys). The message: what happened, then what to do."""

    def __init__(self, what: str, rerun: str, journal: str, fix: str = "") -> None:
        super().__init__(
            f"{what}. An append-only load sends no row twice and gives none up, so the run "
            f"stops here: rerun it from its last STATE{rerun} (the insert journal {journal} "
            f"holds these rows, so each record is written once){fix}."
        )


class ImportStillRunning(ImportUndecided):
    """Still running when `import_timeout_seconds` ran out: the rerun waits for it."""

    def __init__(self, subject: str, timeout: float, journal: str) -> None:
        super().__init__(
            f"{subject} was still running after {timeout:.0f} s (`import_timeout_seconds`)",
            " once the import is done",
            journal,
            ", and raise `import_timeout_seconds` if imports of this size take longer",
        )


class ImportAnswerLost(ImportUndecided):
    """The import request failed in a way that may have reached Copernica: the rerun
    counts the profiles with the rows' keys."""

    def __init__(self, stream: str, rows: int, problem: str, journal: str) -> None:
        super().__init__(
            f"Stream '{stream}': the import request for {rows} rows failed ({problem}) in a "
            f"way that may have reached Copernica",
            "; the rerun counts the profiles with these keys",
            journal,
        )


@dataclass(frozen=True)
class ImportResult:
    """How an import ended."""

    import_id: str
    processed: int
    total: int
    error: str  # "" when it succeeded
    timed_out: bool = False  # still running when the client stopped waiting

    @property
    def ok(self) -> bool:
        return not self.error


class BulkImporter:
    """Writes items of one profile stream through imports."""

    def __init__(self, write: StreamWrite, *, timeout_seconds: float) -> None:
        self.job = write  # what to write where, and where to report it
        self.timeout_seconds = timeout_seconds

    @staticmethod
    def eligible(item: Item) -> bool:
        """Whether an item can go through an import (plain fields of a profile)."""
        return not item.delete and item.interests is None

    def write(self, items: list[Item]) -> tuple[list[Item], Running | None]:
        """Import the items. Returns the items to write through the API path instead, and
        the last import, still running: `finish` it before anything else is written (so
        the server works on it while the next batch is read, and order is kept)."""
        retry: list[Item] = []
        chunks: list[tuple[list[str], list[Item]]] = []
        by_order: dict[tuple[str, ...], list[Item]] = {}
        for item in items:
            by_order.setdefault(tuple(item.fields), []).append(item)
        # Rows with the same columns in another order go in the same import.
        by_columns: dict[tuple[str, ...], list[Item]] = {}
        for order, group in by_order.items():
            by_columns.setdefault(tuple(sorted(order)), []).extend(group)
        for columns, group in by_columns.items():
            for start in range(0, len(group), ROWS_PER_IMPORT):
                chunks.append((list(columns), group[start : start + ROWS_PER_IMPORT]))
        running: Running | None = None
        for names, chunk in chunks:
            if running is not None:
                retry += self.finish(running)
            running = self._submit(names, chunk)
        return retry, running

    def _submit(self, columns: list[str], items: list[Item]) -> Running:
        """Send one import (`ImportAnswerLost` when an append may or may not have reached it)."""
        # Key fields first, then the rest, identically in every row (the API requires it).
        # The rest in the first row's order: rows already in it (usually all, as records of
        # a stream share their property order) are sent as they are, without a copy.
        keys = self.job.destination.key_fields
        ordered = (*keys, *(c for c in items[0].fields if c not in keys))  # every row: `columns`
        source = [
            fields if tuple(fields) == ordered else {c: fields.get(c, "") for c in ordered}
            for fields in (item.fields for item in items)
        ]
        body = {
            "database": self.job.destination.structure.id,
            "name": f"target-copernica {self.job.summary.stream}",
            "action": ACTIONS[self.job.load_method],
            "keyFields": list(self.job.destination.key_fields),
            "source": source,
            "autostart": True,
            "rebuild": False,
            "followups": False,
        }
        self.job.summary.add("imports")
        noted = self._note(items)
        try:
            response = self.job.session.request(
                "POST", "imports", body=body, before_retry=self._may_resend
            )
        except RetryStopped as exc:
            # Only appends stop retrying (`_may_resend`). Its journal entries stay pending,
            # and the run stops before anything else writes these keys: the rerun's count
            # of each key then tells whether the import added its row.
            raise ImportAnswerLost(
                self.job.summary.stream, len(items), str(exc), self._journal_path
            ) from None
        _, import_id = created_id(response, "import")
        if self.job.journal is not None and noted and import_id:
            self.job.journal.imported_as(noted, str(import_id))
        return Running(str(import_id), items, noted)

    def finish(self, running: Running) -> list[Item]:
        """Wait for an import to end; returns the rows to write through the API path."""
        import_id, items, noted = running.import_id, running.items, running.noted
        result = self._wait(import_id)
        if result.ok and result.total == len(items) and result.processed >= len(items):
            self._settle(noted, len(items))
            self._count(items)
            logger.info(
                "Stream '%s': import %s loaded %d rows.",
                self.job.summary.stream,
                import_id,
                len(items),
            )
            return []
        if result.timed_out and self.job.load_method == INSERT:
            raise ImportStillRunning(
                f"Stream '{self.job.summary.stream}': import {import_id}",
                self.timeout_seconds,
                self._journal_path,
            )
        reason = result.error or f"it processed {result.processed} of {len(items)} rows"
        # An append-only import added the rows it processed; the others go the API way.
        done = result.processed if self.job.load_method == INSERT else 0
        logger.warning(
            "Stream '%s': import %s failed (%s); writing its %d remaining rows through the API.",
            self.job.summary.stream,
            import_id,
            reason,
            len(items) - done,
        )
        self._settle(noted, done)
        self._count(items[:done])
        self.job.summary.add("import_fallbacks", len(items) - done)
        return items[done:]

    @property
    def _journal_path(self) -> str:
        """Where the insert journal is, for a message (append-only runs have one)."""
        journal = self.job.journal
        return str(journal.path) if journal is not None else "(none)"

    def _note(self, items: list[Item]) -> list[int]:
        """Note an append import's rows in the journal before it is sent."""
        if self.job.journal is None or self.job.load_method != INSERT:
            return []
        path = f"database/{self.job.destination.structure.id}/profiles"
        index = self.job.destination.index
        return self.job.journal.begin(
            [
                (
                    fingerprint_of(self.job.summary.stream, item),
                    item.epoch,
                    (path, tuple(selector(self.job.destination.key_fields, item.key_values))),
                    index.count(item.key),
                )
                for item in items
            ],
            batch=uuid.uuid4().hex,
        )

    def _settle(self, noted: list[int], landed: int) -> None:
        """The first `landed` rows are in; the others are sent again another way."""
        if self.job.journal is not None and noted:
            self.job.journal.done(noted[:landed])
            self.job.journal.drop(noted[landed:])

    def _may_resend(self, exc: BaseException) -> bool:
        """Upserts and updates may be imported twice; an append only when the server
        surely did not take the first one (it answered 429 or an overload 5xx)."""
        if self.job.load_method != INSERT:
            return True
        return (
            isinstance(exc, TransientAPIError)
            and exc.response is not None
            and exc.response.status_code in (429, 502, 503, 504)
        )

    def _wait(self, import_id: str) -> ImportResult:
        return wait_for_import(self.job.session, import_id, self.timeout_seconds)

    def _count(self, items: list[Item]) -> None:
        inserts = self.job.load_method == INSERT
        before = self.job.destination.index.note_written(
            [item.key for item in items], inserts=inserts
        )
        inserted = len(items) if inserts else before.count(0)
        if inserted:
            self.job.summary.add("inserted", inserted)
        if len(items) > inserted:
            self.job.summary.add("updated", len(items) - inserted)
            multiple = sum(1 for count in before if count > 1)
            if multiple:
                self.job.summary.add("multiple_matches", multiple)


def wait_for_import(session: CopernicaSession, import_id: str, timeout: float) -> ImportResult:
    """Poll an import until it ends, fails or `timeout` seconds pass."""
    if not import_id or import_id == "0":
        return ImportResult(import_id, 0, 0, "the API did not say which import it created")
    deadline = time.monotonic() + timeout
    wait = 0.0  # the first look at once: a small import is often done by then
    while True:
        time.sleep(wait)
        info = payload_of(session.request("GET", f"import/{import_id}"))
        info = (
            info.get("data", info)
            if isinstance(info, dict) and isinstance(info.get("data"), dict)
            else info
        )
        status = str(info.get("status", "")).strip().lower()
        total = _int(info.get("totallines"))
        processed = _int(info.get("processedlines", info.get("processedLines")))
        error = info.get("lasterror")
        if error not in (None, False, "", "false"):
            return ImportResult(import_id, processed, total, str(error))
        if total and processed >= total and status not in RUNNING:
            return ImportResult(import_id, processed, total, "")
        if time.monotonic() >= deadline:
            late = f"not finished after {timeout:.0f} s"
            # Still running (or saying nothing): its rows may yet come. An import that has
            # stopped short without an error is an ended one that processed fewer rows.
            running = status in RUNNING or not status
            return ImportResult(import_id, processed, total, late, timed_out=running)
        wait = min(MAX_POLL_SECONDS, max(FIRST_POLL_SECONDS, wait * 1.5))
