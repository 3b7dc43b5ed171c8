"""The SDK's standard target test suite, against the emulator with a catch-all route."""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

from singer_sdk.testing import get_target_test_class

from target_copernica.target import TargetCopernica
from tests.conftest import config_for
from tests.emulator import Emulator

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
