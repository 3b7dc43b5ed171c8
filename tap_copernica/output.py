"""How Singer messages leave the tap: msgspec-encoded lines, written in blocks."""

from __future__ import annotations

import atexit
import sys

from singer_sdk.contrib.msgspec import MsgSpecWriter
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
        atexit.register(self.flush)

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
