"""The SDK's standard target test suite, against the emulator with a catch-all route."""

from __future__ import annotations

import atexit
import json
import tempfile
from importlib.resources import files
from pathlib import Path

from singer_sdk.testing import get_target_test_class

from copernica_emulator import Emulator
from target_copernica.target import TargetCopernica
from tests.conftest import config_for
from tests.target_helpers import run_target

# The suite's classes are built at import time from a config, so the emulator starts here.
_EMULATOR = Emulator(seed=5, profiles_per_database=5).start()
atexit.register(_EMULATOR.stop)
_DATABASE = _EMULATOR.store.add_database("SingerTests", "Every test stream lands here")
# The test streams key on `id`; Copernica cannot create a field with that name, so it exists.
_EMULATOR.store.add_field("database", _DATABASE, "id", "text", index=True)
_REJECTS = Path(tempfile.mkdtemp(prefix="target-copernica-")) / "rejected.jsonl"

TestTargetCopernica = get_target_test_class(
    target_class=TargetCopernica,
    config={
        **config_for(_EMULATOR),
        "stream_routes": {"*": {"database": "SingerTests", "key_fields": ["id"]}},
        "create_missing_fields": True,
        "rejected_records_path": str(_REJECTS),
    },
)

# The SDK's suite expects a record without a key property to end the load
# (`MissingKeyPropertiesError`); this target rejects that record instead and loads the rest
# (`tests/test_target_errors.py`). The same input, with that outcome:
delattr(TestTargetCopernica, "test_target_record_missing_key_property")


def test_target_record_missing_key_property_is_rejected(tmp_path: Path) -> None:
    singer_file = files("singer_sdk.testing") / "target_test_streams"
    lines = (singer_file / "record_missing_key_property.singer").read_text().splitlines()
    config = {
        **config_for(_EMULATOR),
        "stream_routes": {"*": {"database": "SingerTests", "key_fields": ["id"]}},
        "rejected_records_path": str(tmp_path / "rejected.jsonl"),
    }
    run = run_target(config, [json.loads(line) for line in lines])
    assert run.exit_code == 0
    (rejected,) = run.rejected
    assert rejected["record"] == {"metric": 8214}
    assert "['id']" in rejected["reason"]
