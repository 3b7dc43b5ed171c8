"""TLS verification is always on: both plugins refuse a server whose certificate does not
verify, at once and with a message that says what to do, and accept it once the standard
trust setting (REQUESTS_CA_BUNDLE) names its CA. The emulator serves HTTPS here with a
certificate made for the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import SyncResult, run_cli, script
from tests.target_helpers import add_warehouse, singer_lines

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "tap_copernica", ROOT / "target_copernica"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (no public CA vouches for it)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=copernica-emulator"
    subprocess.run(
        [
            *command.split(),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def test_tap_refuses_a_certificate_that_does_not_verify(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    with Emulator(seed=3, profiles_per_database=2, tls=certificate) as emu:
        config = {**config_for(emu), "max_retries": 3}
        result = run_cli(
            script("tap-copernica"),
            ["--discover"],
            config=config,
            tmp_path=tmp_path,
            env={"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""},
        )
        assert result.exit_code != 0
        assert "did not verify" in result.stderr
        assert "REQUESTS_CA_BUNDLE" in result.stderr
        assert "Retrying" not in result.stderr, "a certificate failure is not retried"
        assert "Traceback" not in result.stderr
        assert emu.requests == [], "nothing was sent over the unverified connection"


def test_tap_accepts_the_certificate_once_its_ca_is_trusted(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    with Emulator(seed=3, profiles_per_database=2, tls=certificate) as emu:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config_for(emu)))
        proc = subprocess.run(
            [script("tap-copernica"), "--config", str(config_file), "--discover"],
            capture_output=True,
            text=True,
            env={**os.environ, "REQUESTS_CA_BUNDLE": certificate[0]},
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        catalog = json.loads(proc.stdout)
        assert "profiles" in {s["tap_stream_id"] for s in catalog["streams"]}
        assert any(r.path.startswith("/v4/database") for r in emu.requests)


def run_target_cli(emu: Emulator, tmp_path: Path, env: dict[str, str]) -> SyncResult:
    """target-copernica writing one profile into the emulator's Warehouse database."""
    messages = [
        {"type": "SCHEMA", "stream": "c", "schema": {"properties": {}}, "key_properties": []},
        {"type": "RECORD", "stream": "c", "record": {"email": "a@example.org"}},
    ]
    return run_cli(
        script("target-copernica"),
        [],
        config={**config_for(emu), "database": "Warehouse"},
        tmp_path=tmp_path,
        env=env,
        stdin=singer_lines(messages),
    )


def test_target_refuses_a_certificate_that_does_not_verify(
    certificate: tuple[str, str], tmp_path: Path
) -> None:
    with Emulator(seed=3, profiles_per_database=0, tls=certificate) as emu:
        add_warehouse(emu)
        result = run_target_cli(emu, tmp_path, {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""})
        assert result.exit_code != 0
        assert "did not verify" in result.stderr
        assert "Retrying" not in result.stderr
        assert emu.requests == []


def test_target_writes_once_the_ca_is_trusted(certificate: tuple[str, str], tmp_path: Path) -> None:
    with Emulator(seed=3, profiles_per_database=0, tls=certificate) as emu:
        add_warehouse(emu)
        result = run_target_cli(emu, tmp_path, {"REQUESTS_CA_BUNDLE": certificate[0]})
        assert result.exit_code == 0, result.stderr[-2000:]
        assert [p["fields"]["email"] for p in emu.store.profiles("Warehouse")] == ["a@example.org"]


def test_no_code_path_switches_verification_off() -> None:
    """The tests above prove verification on the paths they run; this covers the rest."""
    # Whatever the spacing: verify off, no certificate required, or no hostname check.
    switch_off = re.compile(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False")
    offenders = [
        f"{path.relative_to(ROOT)}: {found.group()}"
        for package in PACKAGES
        for path in package.rglob("*.py")
        for found in switch_off.finditer(path.read_text())
    ]
    assert offenders == []
