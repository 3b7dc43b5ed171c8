"""Streams whose records are built to their schema: RECORD lines written straight out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import cached_property
from typing import Any

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform, StreamMap

from tap_copernica.output import SingerLineWriter
from tap_copernica.streams.base import ObjectStream


class SchemaShapedStream(ObjectStream):
    """A stream that builds each record to its schema (typed values, declared properties
    only), so the SDK's per-property type conformance walk would only cost time (a third
    of the tap's CPU on profiles). Its RECORD lines are encoded straight into the output
    block (`write_record_fast`); `_extracted` is the extraction time of the page being
    emitted, set by the stream as each page arrives.
    """

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    _extracted: dt.datetime | None = None  # when the page being emitted arrived

    def write_record_fast(self, record: dict[str, Any]) -> bool:
        """The SDK's RECORD writing, encoded straight into the output block, when nothing in
        the stream is deselected (records are built to the schema and not conformed here).

        The SDK would walk every property for deselection, build a message object with its
        own clock reading and encode it through two layers of dictionaries: most of the
        tap's CPU per profile. Stream maps still apply; the extraction time is the page's.
        `tests/test_units.py::test_fast_record_messages_match_the_sdk` fails if the SDK's
        lines stop matching these.
        """
        writer = self._fast_writer
        if writer is None:
            return False
        for alias, transform in self._map_plan:
            mapped = record if transform is None else transform(record)
            if mapped is not None:
                writer.write_record(alias, mapped, self.stream_version, self._extracted)
        self.state_changed()
        return True

    @cached_property
    def _map_plan(self) -> list[tuple[str, Callable[[dict], dict | None] | None]]:
        """Each stream map's alias and transform; None where the map hands the record on
        as it is (the SDK's default map without flattening)."""
        return [
            (m.stream_alias, None if self._is_plain(m) else m.transform) for m in self.stream_maps
        ]

    @staticmethod
    def _is_plain(stream_map: StreamMap) -> bool:
        return type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled

    @cached_property
    def _fast_writer(self) -> SingerLineWriter | None:
        """The tap's writer when the fast path builds what the SDK would, else None."""
        writer = self.message_writer
        plain = self.TYPE_CONFORMANCE_LEVEL == TypeConformanceLevel.NONE
        if plain and all(self.mask.values()) and isinstance(writer, SingerLineWriter):
            return writer
        return None
