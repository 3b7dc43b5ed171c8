"""Every command and query in README.md runs as written.

The convention (README, Development):

- Fenced blocks tagged `sh` run in document order, each with `bash -euo pipefail` from the
  root of a fresh copy of the repository (what a clone holds), in its own process group:
  background processes a block starts (an emulator it serves) are stopped after it.
- Fenced blocks tagged `sql` run, in the same order, against the local PostgreSQL database
  `test` (127.0.0.1:5432): the Postgres job's block comes before them.
- A block right after the line `<!-- readme-test: skip (reason) -->` is not run; the reason
  is required (a real account, a server that never stops, the whole test suite, ...).
- Shell examples are tagged `sh`, never `bash`, `shell`, `console` or `zsh`, so none escapes
  the test; output and configuration examples use other tags or none.

The blocks see the emulator's settings exported, as a user would have set their account's:
`TAP_COPERNICA_API_URL`, `TAP_COPERNICA_AUTH_URL`, `TAP_COPERNICA_API_TOKEN`, the same three
as `TARGET_COPERNICA_*`, and `COPERNICA_API_TOKEN`. Meltano comes from the repository's
`.tools/meltano` (shared with the copy, installed by `scripts/meltano` if missing); plugins
install into the copy (Meltano installs them with uv, in seconds). A failing block is reported
with its README line, its text and the end of its output.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import REPO
from tests.test_main_job import tracked_copy, user_env
from tests.warehouse import PG_DSN, ensure_postgres

pytestmark = pytest.mark.slow

SKIP = re.compile(r"^<!-- readme-test: skip \((?P<reason>[^)]+)\) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SHELL_TAGS = {"bash", "shell", "console", "zsh", "shell-session"}


@dataclass
class Block:
    """One fenced block of README.md."""

    lang: str
    line: int  # of the opening fence, 1-based
    text: str
    skip: str | None  # the reason, when marked

    def label(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"README.md:{self.line} ({self.lang}) {first[:70]}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks, in order, each with the skip reason of the line before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marked = SKIP.match(before.strip())
        blocks.append(
            Block(opening["lang"], start + 1, "\n".join(body) + "\n", marked and marked["reason"])
        )
        i += 1
    return blocks


BLOCKS = readme_blocks((REPO / "README.md").read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.lang in ("sh", "sql") and b.skip is None]


def test_readme_blocks_follow_the_convention() -> None:
    """Shell examples are `sh` (so the test runs them); skip markers give a reason and mark a
    block; the commands the README must keep covered are run, not skipped."""
    mistagged = [b.label() for b in BLOCKS if b.lang in SHELL_TAGS]
    assert not mistagged, f"tag shell examples `sh` (or mark them skipped): {mistagged}"
    text = (REPO / "README.md").read_text(encoding="utf-8")
    markers = [line for line in text.splitlines() if line.startswith("<!-- readme-test")]
    assert all(SKIP.match(m.strip()) for m in markers), markers
    assert len(markers) == sum(1 for b in BLOCKS if b.skip), "a marker must precede a block"
    ran = "\n".join(b.text for b in RUN)
    for needed in (
        "scripts/demo.sh",
        "scripts/meltano run copernica-to-postgres",
        'JOIN copernica.profile_ids i ON i.profile_id = p."ID"',
        "scripts/meltano config set target-copernica api_token",
        "scripts/meltano run tap-postgres target-copernica",
        "samples/customers.singer.jsonl",
        "con.sql('select * from copernica.profiles limit 5').show()",
    ):
        assert needed in ran, f"the README's run blocks no longer include {needed!r}"
    for block in RUN:
        if block.lang == "sh":
            assert not re.search(r"(^|[;&|]\s*)meltano ", block.text, re.MULTILINE), (
                f"{block.label()}: use scripts/meltano (Meltano is not on PATH)"
            )


def run_shell(block: Block, cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    """`bash -euo pipefail -c <block>` in its own process group, output to `log` (a file: a
    background process holding a pipe open would hang the read); what it left running (an
    emulator started with `&`) is stopped afterwards. Returns the exit status and output."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            status = -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    text = log.read_text(errors="replace")
    return status, text + ("\n[timed out after 600 s]" if status == -1 else "")


def run_sql(block: Block) -> str:
    """The block's statements in one transaction; each result set, printed."""
    shown: list[str] = []
    with psycopg.connect(PG_DSN, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(block.text.encode())
        while True:
            if cur.description is not None:
                shown.append(repr(cur.fetchall()))
            if not cur.nextset():
                break
    return "\n".join(shown)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repository sharing the repository's Meltano install."""
    subprocess.run([str(REPO / "scripts/meltano"), "--version"], check=True, capture_output=True)
    project = tracked_copy(tmp_path_factory.mktemp("readme") / "project")
    (project / ".tools").symlink_to(REPO / ".tools")
    return project


@pytest.mark.postgres
def test_every_readme_command_runs_as_written(clone: Path) -> None:
    ensure_postgres()
    timings: list[str] = []
    with Emulator(seed=7, profiles_per_database=200) as emu:
        settings = config_for(emu)
        env = {k: v for k, v in user_env().items() if not k.startswith("TARGET_COPERNICA_")}
        for prefix in ("TAP_COPERNICA_", "TARGET_COPERNICA_"):
            for key in ("api_url", "auth_url", "api_token"):
                env[prefix + key.upper()] = str(settings[key])
        env["COPERNICA_API_TOKEN"] = str(settings["api_token"])
        for block in RUN:
            started = time.monotonic()
            if block.lang == "sh":
                status, output = run_shell(block, clone, env, clone.parent / "block.log")
                failed = status != 0
            else:
                try:
                    output, failed = run_sql(block), False
                except psycopg.Error as exc:
                    output, failed = f"{type(exc).__name__}: {exc}", True
            timings.append(f"{time.monotonic() - started:6.1f} s  {block.label()}")
            print(timings[-1])
            if failed:
                pytest.fail(
                    f"{block.label()} failed.\n--- block ---\n{block.text}"
                    f"--- output (end) ---\n{output[-6000:]}\n--- blocks run ---\n"
                    + "\n".join(timings),
                    pytrace=False,
                )
