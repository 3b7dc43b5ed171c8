"""How the target reads its input: msgspec-decoded Singer lines."""

from __future__ import annotations

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

_DECODER = msgspec.json.Decoder()


class SingerLineReader(MsgSpecReader):
    """The SDK's msgspec reader, which decodes lines several times faster than the default
    one; a line that is not JSON is reported once, by the target's CLI, not as a traceback."""

    def deserialize_json(self, line: str) -> dict:
        """The message on one line; InvalidInputLine (with the line's start) if not JSON."""
        try:
            message = _DECODER.decode(line)
        except msgspec.DecodeError as exc:
            msg = f"line is not JSON: {line.strip()[:120]!r}"
            raise InvalidInputLine(msg) from exc
        if not isinstance(message, dict):
            msg = f"line is not a Singer message (a JSON object): {line.strip()[:120]!r}"
            raise InvalidInputLine(msg)
        return message
