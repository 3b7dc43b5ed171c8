"""The Singer SDK's private members that `copernica_api.sdk_compat` relies on still exist with
the signatures it calls them with, and no other module of the plugins touches a private SDK
member. A new SDK release that fails here needs `sdk_compat.py` adapted before the pin moves.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from singer_sdk import Sink, Stream, Target
from singer_sdk.streams import RESTStream

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("copernica_api", "tap_copernica", "target_copernica")
COMPAT = ROOT / "copernica_api" / "sdk_compat.py"

#: (class, member, parameter names after `self`) for each private member sdk_compat uses.
PRIVATE_METHODS = [
    (Stream, "_write_record_message", ["record"]),
    (Stream, "_increment_stream_state", ["latest_record", "context"]),
    (Stream, "_write_state_message", []),
    (Stream, "_write_activate_version_message", ["full_table_version"]),
    (Stream, "_sync_records", ["context", "write_messages"]),
    (Stream, "_finalize_state", ["state"]),
    (RESTStream, "_request", ["prepared_request", "context"]),
    (Target, "_process_state_message", ["message_dict"]),
    (Target, "_process_record_message", ["message_dict"]),
    (Target, "_process_activate_version_message", ["message_dict"]),
    (Target, "_assert_line_requires", ["message_dict", "requires"]),
    (Target, "_write_state_message", ["state"]),
    (Sink, "_remove_sdc_metadata_from_record", ["record"]),
    (Sink, "_validate_and_parse", ["record"]),
    (Sink, "_singer_validate_message", ["record"]),
    (Sink, "_parse_timestamps_in_record", ["record", "schema", "treatment"]),
]


@pytest.mark.parametrize(("owner", "name", "params"), PRIVATE_METHODS)
def test_private_sdk_methods_keep_their_signature(
    owner: type, name: str, params: list[str]
) -> None:
    method = getattr(owner, name, None)
    assert method is not None, f"singer-sdk no longer has {owner.__name__}.{name}"
    names = list(inspect.signature(method).parameters)[1:]
    assert names == params, f"{owner.__name__}.{name} now takes {names}"


def test_private_sdk_attributes_are_still_set() -> None:
    """The attributes read through sdk_compat are assigned where the SDK builds its objects."""
    assert "self._tap" in inspect.getsource(Stream.__init__)
    assert "self._stream_version" in inspect.getsource(Stream.__init__)
    assert "self._validator" in inspect.getsource(Sink.__init__)
    target_init = inspect.getsource(Target.__init__)
    for attribute in ("self._latest_state", "self._sinks_active", "self._sinks_to_clear"):
        assert attribute in target_init
    # sync sends ACTIVATE_VERSION through the method sdk_compat holds back, then reads the
    # records through the generator it wraps.
    sync = inspect.getsource(Stream.sync)
    assert "self._write_activate_version_message(" in sync
    assert "self._sync_records(" in sync
    # A run in parts reads partitions one `_sync_records` call each and ends the stream as
    # the SDK's own loop does; the version it may replace is the one every RECORD carries.
    records = inspect.getsource(Stream._sync_records)
    assert "self._finalize_state(self.stream_state)" in records
    assert "version=self._stream_version" in inspect.getsource(Stream)
    # drain_all emits the latest STATE through the overridable method sdk_compat hooks.
    assert "self._write_state_message(" in inspect.getsource(Target.drain_all)
    # The message callbacks CompatTarget overrides are looked up on the instance.
    callbacks = inspect.getsource(Target.process_lines)
    for callback in ("self._process_record_message", "self._process_activate_version_message"):
        assert callback in callbacks


def test_private_sdk_helpers_are_importable() -> None:
    from singer_sdk.helpers._typing import get_datelike_property_type  # noqa: PLC0415
    from singer_sdk.helpers._util import utc_now  # noqa: PLC0415

    assert get_datelike_property_type({"type": "string", "format": "date-time"}) == "date-time"
    assert utc_now().tzinfo is not None


def _private_sdk_uses(path: Path) -> list[str]:
    """`singer_sdk.<...>._x` imports, and `._x` attributes or overrides of SDK members."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    sdk_private = {
        name
        for owner in (Stream, RESTStream, Target, Sink)
        for name in vars(owner)
        if name.startswith("_") and not name.startswith("__")
    } | {"_tap", "_stream_version", "_validator", "_latest_state", "_sinks_active"}
    sdk_private |= {"_sinks_to_clear", "_request", "_state_manager"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singer_sdk"):
            module = node.module or ""
            if any(part.startswith("_") for part in module.split(".")):
                found.append(f"line {node.lineno}: from {module}")
        elif isinstance(node, ast.Attribute) and node.attr in sdk_private:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.FunctionDef) and node.name in sdk_private:
            found.append(f"line {node.lineno}: def {node.name}")
    return found


def test_private_sdk_use_sits_in_sdk_compat_only() -> None:
    offenders = {
        str(path.relative_to(ROOT)): uses
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != COMPAT and (uses := _private_sdk_uses(path))
    }
    assert offenders == {}
    assert _private_sdk_uses(COMPAT), "the check must see sdk_compat's own uses"
