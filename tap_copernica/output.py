"""How Singer messages leave the tap: msgspec-encoded lines, written in blocks."""

from __future__ import annotations

import atexit
import sys
from datetime import datetime
from typing import Any

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder
from singer_sdk.singerlib import Message, RecordMessage

BLOCK_BYTES = 1 << 16


class SingerLineWriter(MsgSpecWriter):
    """The SDK's msgspec writer, with RECORD lines gathered into blocks.

    The SDK's writer flushes stdout after every message: one system call per record, which
    Meltano's unbuffered pipes make expensive. Here RECORD lines wait in a block of up to
    64 KiB; any other message (SCHEMA, STATE, ACTIVATE_VERSION) goes out at once together
    with every record before it, so a target still sees each STATE right after the records
    it covers. The SDK leaves out a STATE equal to the last one, so the block is also
    written when the run ends (`flush`, called by the tap and at exit).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._block = bytearray()
        self._frame_key: tuple[str, int | None, datetime | None] | None = None
        self._frame = (b"", b"")
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
            self._frame_key, self._frame = key, _frame(stream, version, extracted)
        head, tail = self._frame
        block = self._block
        block += head
        encoder.encode_into(record, block, -1)
        block += tail
        if len(block) >= BLOCK_BYTES:
            self.flush()

    def write_message(self, message: Message) -> None:
        """Queue one line; write the block when it is full or the message is not a RECORD."""
        self._block += self.format_message(message)
        if len(self._block) >= BLOCK_BYTES or not isinstance(message, RecordMessage):
            self.flush()

    def flush(self) -> None:
        """Write what waits in the block."""
        if self._block:
            sys.stdout.buffer.write(self._block)
            self._block.clear()
        sys.stdout.flush()


def _frame(stream: str, version: int | None, extracted: datetime | None) -> tuple[bytes, bytes]:
    """The bytes before and after the record in a RECORD line (`RecordMessage.to_dict`)."""
    head = encoder.encode({"type": "RECORD", "stream": stream})[:-1] + b',"record":'
    rest: dict[str, Any] = {}
    if version is not None:
        rest["version"] = version
    if extracted is not None:
        rest["time_extracted"] = RecordMessage("", {}, time_extracted=extracted).time_extracted
    return head, (b"," + encoder.encode(rest)[1:] if rest else b"}") + b"\n"
