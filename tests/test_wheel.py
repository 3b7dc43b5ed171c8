"""Installed the way a user installs it: a built wheel in a fresh virtualenv."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import venv
from collections import Counter
from pathlib import Path

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import REPO, run_cli
from tests.test_sync import CORE_STREAMS, live_profiles, live_subprofiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with only the wheel (and its dependencies) installed; yields its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(REPO)],
        check=True,
    )
    wheel = next(root.glob("tap_copernica-*.whl"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True
    )
    return env_dir / "bin"


def test_the_wheel_ships_its_schemas_and_discovers_from_anywhere(
    installed: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "config.json"
    with Emulator(seed=21, profiles_per_database=10) as emu:
        config_file.write_text(json.dumps(config_for(emu)))
        result = subprocess.run(
            [str(installed / "tap-copernica"), "--discover", "--config", str(config_file)],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # not the checkout: schemas must come from the installed package
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    streams = {s["tap_stream_id"]: s for s in json.loads(result.stdout)["streams"]}
    assert set(CORE_STREAMS) <= set(streams)
    assert streams["profiles"]["schema"]["properties"]["modified"]["format"] == "date-time"
    age = streams["profiles_customers"]["schema"]["properties"]["age"]
    assert age["type"] == ["integer", "null"]
    assert (installed / "target-copernica").exists()


def test_the_installed_tap_syncs_exactly_through_faults_and_expiring_jwts(
    installed: Path, tmp_path: Path
) -> None:
    with Emulator(seed=21, profiles_per_database=150, jwt_lifetime=3) as emu:
        for n, kind in enumerate(["html503", "gateway504", "ratelimit429", "reset", "truncate"]):
            emu.faults.add(kind, rate=0.02, seed=n)  # 10 % of requests in all
        emu.faults.latency_ms = 45
        started = time.monotonic()
        result = run_cli(
            str(installed / "tap-copernica"),
            [],
            config=config_for(emu, page_size=10),
            tmp_path=tmp_path,
        )
        elapsed = time.monotonic() - started
        assert result.exit_code == 0, result.stderr[-3000:]
        assert elapsed > 6, "the run outlived at least two JWTs of 3 s"
        assert emu.tokens_issued >= 3
        assert len(emu.faults.injected) >= 10
        for stream in CORE_STREAMS:
            assert result.records.get(stream), stream
        assert Counter(result.ids("profiles")) == Counter(list(live_profiles(emu)))
        assert Counter(result.ids("subprofiles")) == Counter(list(live_subprofiles(emu)))
        assert Counter(result.ids("profile_ids")) == Counter(list(live_profiles(emu)))


def test_the_wheel_ships_the_emulator_as_a_command(installed: Path, tmp_path: Path) -> None:
    """`copernica-emulator serve` from the installed wheel alone, outside the checkout, serves
    an API the installed tap reads."""
    server = subprocess.Popen(
        [str(installed / "copernica-emulator"), "serve", "--port", "0", "--profiles", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        settings: dict[str, str] = {}
        for line in server.stdout:
            if line.startswith("export TAP_COPERNICA_"):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                settings[name.removeprefix("TAP_COPERNICA_").lower()] = value.strip("'\"")
            if len(settings) == 3:
                break
        assert set(settings) == {"api_url", "auth_url", "api_token"}
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(settings))
        result = subprocess.run(
            [str(installed / "tap-copernica"), "--discover", "--config", str(config_file)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "profiles_customers" in result.stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
