"""The README's settings tables are the ones the plugins declare (`--about`).

On a failure, regenerate them: `python scripts/settings_tables.py --write README.md`.
"""

from __future__ import annotations

import subprocess
import sys

from tests.singer import REPO


def test_readme_settings_tables_match_about() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "settings_tables.py"), "--check", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
