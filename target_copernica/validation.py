"""Record validation against the stream's SCHEMA, compiled once (the SDK's documented idiom).

`jsonschema` interprets the schema anew for every record, which costs most of a target's
CPU; `fastjsonschema` compiles it to Python code once per stream.
"""

from __future__ import annotations

from typing import Any

import fastjsonschema
from singer_sdk.exceptions import InvalidJSONSchema, InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator


class CompiledSchemaValidator(BaseJSONSchemaValidator):
    """Validates records with a schema compiled by fastjsonschema (formats are not checked,
    as with the SDK's default; date-times are parsed and checked by the sink)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)
        try:
            self._check = fastjsonschema.compile(schema, formats=_ANY_FORMAT)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            msg = f"Schema Validation Error: {exc}"
            raise InvalidJSONSchema(msg) from exc

    def validate(self, record: dict[str, Any]) -> None:
        """Raise InvalidRecord with the reason when the record does not match."""
        try:
            self._check(record)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidRecord(exc.message, record) from exc


# Formats are not validated here (the SDK's default does not either): accept any value.
_ANY_FORMAT = {
    name: (lambda _value: True)
    for name in ("date-time", "date", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname")
}
