"""How Singer messages leave the tap: msgspec-encoded lines, written in blocks."""

from __future__ import annotations

import atexit
import copy
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.singerlib import ActivateVersionMessage, Message, RecordMessage, StateMessage

BLOCK_BYTES = 1 << 16


class RecordObserver(Protocol):
    """Sees what leaves the tap (`reconcile.RunTally`, for the `reconciliation` stream)."""

    def counter(self, stream: str) -> Callable[[dict[str, Any]], None] | None:
        """The function to call with each record of `stream`, or None: not observed."""

    def version_sent(self, stream: str) -> None:
        """`stream` sent its ACTIVATE_VERSION: its full table is out."""


class SingerLineWriter(MsgSpecWriter):
    """The SDK's msgspec writer, with RECORD lines gathered into blocks.

    The SDK's writer flushes stdout after every message: one system call per record, which
    Meltano's unbuffered pipes make expensive. Here RECORD lines wait in a block of up to
    64 KiB; any other message (SCHEMA, STATE, ACTIVATE_VERSION) goes out at once together
    with every record before it, so a target still sees each STATE right after the records
    it covers. The SDK leaves out a STATE equal to the last one, so the block is also
    written when the run ends (`flush`, called by the tap and at exit).

    An `observer` (set by the `reconciliation` stream) is asked once per stream and page
    for a record counter, so streams it does not count pay one `is None` test per record.
    The first message of a sync is the input STATE when there is one (`Tap.sync_all`):
    kept as `input_state`, what the run started from.
    """

    observer: RecordObserver | None = None
    input_state: dict[str, Any] | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._block = bytearray()
        self._frame_key: tuple[str, int | None, datetime | None] | None = None
        self._frame = (b"", b"")
        self._count: Callable[[dict[str, Any]], None] | None = None
        self._started = False
        atexit.register(self.flush)

    def write_record(
        self, stream: str, record: dict[str, Any], version: int | None, extracted: datetime | None
    ) -> None:
        """One RECORD line, the same bytes as `write_message(RecordMessage(...))` gives.

        The hot path of the profile streams: the record is encoded straight into the block
        between a head and a tail that are built once per stream, version and extraction
        time (one per page), instead of through a message object and its dictionary.
        """
        key = (stream, version, extracted)
        if key != self._frame_key:
            self._frame_key, self._frame = key, record_frame(stream, version, extracted)
            self._count = None if self.observer is None else self.observer.counter(stream)
        if self._count is not None:
            self._count(record)
        head, tail = self._frame
        block = self._block
        block += head
        encoder.encode_into(record, block, -1)
        block += tail
        if len(block) >= BLOCK_BYTES:
            self.flush()

    def write_lines(self, lines: bytes) -> None:
        """RECORD lines encoded elsewhere (`page_helpers.py`, framed by `record_frame`)."""
        self._block += lines
        if len(self._block) >= BLOCK_BYTES:
            self.flush()

    def write_message(self, message: Message) -> None:
        """Queue one line; write the block when it is full or the message is not a RECORD."""
        if not self._started:
            self._started = True
            if isinstance(message, StateMessage):  # the tap's live dict: a copy
                self.input_state = copy.deepcopy(dict(message.value))
        observer = self.observer
        if observer is not None and isinstance(message, RecordMessage):
            count = observer.counter(message.stream)
            if count is not None:
                count(message.record)
        self._block += self.format_message(message)
        if len(self._block) >= BLOCK_BYTES or not isinstance(message, RecordMessage):
            self.flush()
        # Told once the line is out: what the observer does then (requests) cannot keep an
        # ACTIVATE_VERSION from being written.
        if observer is not None and isinstance(message, ActivateVersionMessage):
            observer.version_sent(message.stream)

    def flush(self) -> None:
        """Write what waits in the block."""
        if self._block:
            sys.stdout.buffer.write(self._block)
            self._block.clear()
        sys.stdout.flush()


def record_frame(
    stream: str, version: int | None, extracted: datetime | None
) -> tuple[bytes, bytes]:
    """The bytes before and after the record in a RECORD line (`RecordMessage.to_dict`)."""
    head = encoder.encode({"type": "RECORD", "stream": stream})[:-1] + b',"record":'
    rest: dict[str, Any] = {}
    if version is not None:
        rest["version"] = version
    if extracted is not None:
        rest["time_extracted"] = RecordMessage("", {}, time_extracted=extracted).time_extracted
    return head, (b"," + encoder.encode(rest)[1:] if rest else b"}") + b"\n"
