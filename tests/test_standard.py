"""The SDK's standard tap test suite, run against the emulator."""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from copernica_emulator import Emulator
from tap_copernica.tap import TapCopernica
from tests.conftest import config_for

# The suite's classes are built at import time from a config, so the emulator starts here.
_EMULATOR = Emulator(seed=5, profiles_per_database=60).start()
atexit.register(_EMULATOR.stop)

TestTapCopernica = get_tap_test_class(
    tap_class=TapCopernica,
    config=config_for(_EMULATOR, page_size=25, webhook_ids=["1", "2"]),
    suite_config=SuiteConfig(
        max_records_limit=500,
        # Runs after `sync_all` (it checks the other streams), which is all the suite calls.
        ignore_no_records_for_streams=["reconciliation"],
    ),
)
