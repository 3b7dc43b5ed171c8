"""The README's main command, run as a new user would: twice, from a fresh copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.singer import REPO

pytestmark = pytest.mark.slow


def tracked_copy(dest: Path) -> Path:
    """The files a clone of this repository holds (what git tracks plus new, unignored files)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def table_rows(output: str) -> dict[str, tuple[int, int]]:
    rows = re.findall(r"^(\w+)\s+(\d+)\s+(\d+)$", output, flags=re.MULTILINE)
    return {name: (int(total), int(written)) for name, total, written in rows}


def test_demo_pipeline_loads_duckdb_then_runs_incrementally(tmp_path: Path) -> None:
    project = tracked_copy(tmp_path / "project")
    # The machine's environment as a user's shell has it (proxies, CA bundles, PATH), but no
    # token: the demo then runs against the bundled emulator.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_COPERNICA_")}

    def demo() -> str:
        run = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=project,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run.stdout

    first = demo()
    tables = table_rows(first)
    assert tables["profiles"] == (875, 875)
    assert tables["profile_ids"][0] == 875
    assert tables["subprofiles"][0] == tables["subprofile_ids"][0] > 0
    assert "Full load: 875 profiles" in first

    second = demo()
    tables = table_rows(second)
    assert tables["profiles"] == (875, 5), "only the 5 profiles changed since were written"
    assert tables["subprofiles"][1] == 0
    assert "Incremental run: 5 of 875 profiles were new or changed." in second
