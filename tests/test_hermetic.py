"""The suite runs the same whatever the developer's shell or `.env` holds for their own
pipelines (the README's `meltano config set` writes `.env` in the repository root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import singer_sdk.configuration._dict_config as sdk_env_config

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdk_reads_no_dotenv_file_during_tests() -> None:
    assert sdk_env_config.find_dotenv() == os.devnull
    assert not [n for n in os.environ if n.startswith(("TAP_COPERNICA_", "TARGET_COPERNICA_"))]


def test_plugin_variables_in_the_environment_do_not_reach_the_tests() -> None:
    """The SDK's standard tests build the plugins with `parse_env_config`: a wrong token
    exported for a real pipeline would otherwise replace the emulator's."""
    env = {
        **os.environ,
        "TAP_COPERNICA_API_TOKEN": "a-token-for-production",
        "TAP_COPERNICA_API_URL": "http://127.0.0.1:9/v4",
        "TARGET_COPERNICA_API_TOKEN": "a-token-for-production",
        "TARGET_COPERNICA_API_URL": "http://127.0.0.1:9/v4",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
            "tests/test_target_standard.py",
            "-k",
            "array_data or record_before_schema",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert " passed" in result.stdout
