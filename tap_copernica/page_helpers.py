"""Profile pages turned into RECORD lines by helper processes, on the machine's other cores.

With several requests in flight under latency, a profile stream waits on the interpreter,
not on the API: decoding a page, building its records and encoding their RECORD lines take
most of one core (100,000 profiles at 100 ms per request and 8 in flight: 3.5 s of CPU in a
3.8 s run), and the GIL keeps every thread of the tap on that one core. So a page read by
ID range goes, as the bytes the API sent, to a helper process, which sends back its RECORD
lines ready to write and what the stream's bookmark needs (rows, first and last ID). The
stream writes the lines in page order and moves its scan position per page: the records and
STATE are those the stream writes itself (`tests/test_page_helpers.py`); `time_extracted` is
when the page arrived.

A helper is a plain child interpreter (`main`, run by `python -c`) that imports no SDK,
talking over a socket pair; it serves one page at a time and ends when the
tap closes its socket (or dies). A helper that does not start, or stops, leaves its pages
to the tap, decoded there as without helpers: the run loses nothing, only the speed.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import msgspec

from tap_copernica.profile_records import UNFIT, ProfileRecords, RecordLayout, row_keeper

if TYPE_CHECKING:
    from tap_copernica.settings import TapSettings

log = logging.getLogger(__name__)

#: Seconds a helper may take to end once its socket is closed.
STOP_WAIT_S = 5.0
#: Seconds a helper may take over one page (it takes milliseconds) before it is given up.
ANSWER_WAIT_S = 60.0
#: What a helper runs: the working directory (`-c` puts it first on `sys.path`) is left
#: out, so that a project's own `signal.py` or `queue.py` cannot shadow the real modules.
_HELPER_MAIN = (
    "import sys; del sys.path[0]; "
    "from tap_copernica.page_helpers import main; sys.exit(main(sys.argv[1:]))"
)
#: Helpers by default at most (8 requests in flight under 100 ms keep two busy).
MAX_DEFAULT_HELPERS = 2


@dataclass(frozen=True)
class LineRecipe:
    """What a helper needs to turn one stream partition's pages into RECORD lines."""

    layout: RecordLayout
    tz: ZoneInfo  # the account's zone (pickled by its key)
    utc: bool
    # The scan's row filter (`row_keeper`).
    since: str | None
    skip: frozenset[int]
    seen: frozenset[int]
    # The partition's keys, added to a record that lacks them (as the SDK does).
    context: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class EncodedPage:
    """One page as RECORD lines, and what its rows were."""

    lines: bytes
    rows: int  # rows the API sent
    kept: int  # RECORD lines in `lines`
    first_id: int | None
    last_id: int | None
    last_kept_id: int | None
    unfit: tuple[tuple[str, Any], ...]  # typed values that did not fit, to count when emitted

    def __len__(self) -> int:
        return self.rows


# -- the helper's side ----------------------------------------------------------------------
def _enc_hook(value: Any) -> Any:
    # As the SDK's msgspec writer encodes what JSON has no type for.
    return value.isoformat(sep="T") if hasattr(value, "isoformat") else str(value)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook, decimal_format="number")


class PageEncoder:
    """A helper's work for one recipe: a page's bytes in, its RECORD lines out."""

    def __init__(self, recipe: LineRecipe) -> None:
        self.records = ProfileRecords(recipe.layout, recipe.tz, utc=recipe.utc)
        self.keep = row_keeper(recipe.since, recipe.skip, recipe.seen)
        self.context = recipe.context

    def encode(self, head: bytes, tail: bytes, content: bytes) -> EncodedPage | str:
        """The page's RECORD lines, each `head` + record + `tail`; or why the tap should
        decode the page itself (it then raises what it always raised for such a page)."""
        try:
            rows = self.records.decode(content)["data"]
        except msgspec.DecodeError:
            return "not complete JSON"
        ids = [row.get("ID") for row in rows]
        if any(row_id.__class__ is not int for row_id in ids):
            return "an ID that is not a number"
        if any(b <= a for a, b in itertools.pairwise(ids)):
            return "rows not strictly ascending by ID"
        keep = self.keep
        kept = rows if keep is None else [row for row in rows if keep(row)]
        finish, context, unfit = self.records.finish, self.context, []
        lines = bytearray()
        for record in kept:
            values = record.pop(UNFIT, None)
            if values:
                unfit += values
            finish(record)
            for key, value in context:
                if key not in record:
                    record[key] = value
            lines += head
            _encoder.encode_into(record, lines, -1)
            lines += tail
        return EncodedPage(
            bytes(lines),
            len(rows),
            len(kept),
            ids[0] if ids else None,
            ids[-1] if ids else None,
            kept[-1]["ID"] if kept else None,
            tuple(unfit),
        )


def serve(connection: Connection) -> None:
    """Answer the tap's messages until it closes the socket: ("recipe", id, LineRecipe)
    registers a recipe; ("page", id, head, tail, content) is answered with an EncodedPage,
    or the text of why the tap should decode the page itself."""
    encoders: dict[int, PageEncoder] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message[0] == "recipe":
            encoders[message[1]] = PageEncoder(message[2])
            continue
        _, recipe_id, head, tail, content = message
        try:
            answer: Any = encoders[recipe_id].encode(head, tail, content)
        except Exception as exc:  # told to the tap, which decodes the page itself
            answer = f"{type(exc).__name__}: {exc}"
        connection.send(answer)


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group: the tap decides, the helper ends with its socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(Connection(int(argv[0])))
    return 0


# -- the tap's side -------------------------------------------------------------------------
class _Helper:
    """One helper process and its end of the socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(  # noqa: S603 (this interpreter, our module)
                [sys.executable, "-c", _HELPER_MAIN, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the tap's stdout is the Singer stream
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.recipes: set[int] = set()

    def encode(
        self, recipe_id: int, recipe: LineRecipe, head: bytes, tail: bytes, content: bytes
    ) -> Any:
        if recipe_id not in self.recipes:
            self.connection.send(("recipe", recipe_id, recipe))
            self.recipes.add(recipe_id)
        self.connection.send(("page", recipe_id, head, tail, content))
        if not self.connection.poll(ANSWER_WAIT_S):
            raise EOFError("no answer")  # a helper stopped (SIGSTOP) or stuck: given up
        return self.connection.recv()

    def stop(self) -> None:
        self.connection.close()
        try:
            self.process.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class PageHelpers:
    """The tap's helper processes (started at first use), shared by its streams."""

    def __init__(self, count: int, logger: logging.Logger = log) -> None:
        self.count = count
        self.logger = logger
        self._idle: queue.Queue[_Helper] = queue.Queue()
        self._started: list[_Helper] = []
        self._lock = threading.Lock()
        self._recipes = 0
        self.pages = 0  # pages the helpers turned into lines
        self.broken: str | None = None  # why the helpers are no longer used

    @classmethod
    def for_run(cls, settings: TapSettings, logger: logging.Logger = log) -> PageHelpers | None:
        """The run's helpers: `helper_processes`, or by default one per core beyond the
        tap's own, at most two (what 8 requests in flight keep busy); none with one
        request at a time (no pages arrive side by side)."""
        count = settings.helper_processes
        if count is None:
            count = min(MAX_DEFAULT_HELPERS, _cores() - 1)
        if count < 1 or settings.max_parallel_requests == 1:
            return None
        return cls(count, logger)

    def new_recipe_id(self) -> int:
        """An ID for a new recipe (sent to each helper with its first page)."""
        with self._lock:
            self._recipes += 1
            return self._recipes

    def encode(
        self, recipe_id: int, recipe: LineRecipe, head: bytes, tail: bytes, content: bytes
    ) -> EncodedPage | None:
        """The page's lines from a free helper (waiting for one); None when the caller is to
        decode the page itself (no helper in use, or the page is not one for the quick
        path: not JSON, IDs that are no numbers or out of order)."""
        helper = self._take()
        if helper is None:
            return None
        try:
            answer = helper.encode(recipe_id, recipe, head, tail, content)
        except BaseException as exc:
            # The helper is in an unknown state (a message half sent or unread): none of
            # them is used again, and threads waiting for one are woken.
            self._give_up(f"a page helper stopped ({type(exc).__name__}: {exc})")
            if not isinstance(exc, Exception):  # Ctrl-C, exit: not ours to swallow
                raise
            return None
        self._idle.put(helper)
        if isinstance(answer, EncodedPage):
            with self._lock:
                self.pages += 1
            return answer
        log.debug("A page helper left a page to the tap: %s.", answer)
        return None

    def _take(self) -> _Helper | None:
        if self.broken is not None:
            return None
        with self._lock:
            if self.broken is None and len(self._started) < self.count and self._idle.empty():
                try:
                    helper = _Helper()
                except Exception as exc:
                    self.broken = f"page helpers could not start ({exc})"
                    self.logger.warning("Decoding pages in the tap: %s.", self.broken)
                    return None
                self._started.append(helper)
                return helper
        return self._idle.get()

    def _give_up(self, why: str) -> None:
        with self._lock:
            if self.broken is None:
                self.broken = why
                self.logger.warning("Decoding pages in the tap from here on: %s.", why)
        # Threads waiting for a helper take this one's place and see `broken`.
        for _ in range(self.count):
            self._idle.put(_Stopped())  # type: ignore[arg-type]

    def close(self) -> None:
        """End the helpers (each ends once its socket is closed); threads still waiting
        for one decode their pages themselves."""
        with self._lock:
            started, self._started = self._started, []
            self.broken = self.broken or "closed"
        for _ in range(self.count):
            self._idle.put(_Stopped())  # type: ignore[arg-type]
        for helper in started:
            helper.stop()
        if started:
            self.logger.info(
                "%d page helper process(es) turned %d pages into RECORD lines.",
                len(started),
                self.pages,
            )


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _Stopped:
    """Put in the idle queue when helpers are given up: whoever takes it sees EOF."""

    def encode(self, *_: Any) -> Any:
        raise EOFError
