"""Run the tap in-process or as a CLI and collect its Singer messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tap_copernica.tap import TapCopernica

REPO = Path(__file__).resolve().parent.parent


@dataclass
class SyncResult:
    """What a sync emitted."""

    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    exit_code: int = 0

    @classmethod
    def parse(cls, stdout: str, stderr: str = "", exit_code: int = 0) -> SyncResult:
        messages = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        states = []
        for message in messages:
            if "type" not in message:  # a target writes the state itself, unwrapped
                states.append(message)
            elif message["type"] == "RECORD":
                records[message["stream"]].append(message["record"])
            elif message["type"] == "STATE":
                states.append(message["value"])
        return cls(messages, dict(records), states, stderr, exit_code)

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1] if self.states else {}

    def ids(self, stream: str) -> list[int]:
        key = {"profile_ids": "profile_id", "subprofile_ids": "subprofile_id"}.get(stream, "ID")
        return [r[key] for r in self.records.get(stream, [])]


def catalog_selecting(config: dict[str, Any], streams: list[str] | None) -> dict[str, Any] | None:
    """The discovered catalog with only `streams` selected (None: everything selected)."""
    if streams is None:
        return None
    catalog = TapCopernica(config=config, validate_config=False).catalog_dict
    for entry in catalog["streams"]:
        for meta in entry["metadata"]:
            if meta["breadcrumb"] == []:
                meta["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def sync(
    config: dict[str, Any],
    *,
    streams: list[str] | None = None,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
) -> SyncResult:
    """Run a sync in this process (preflight included) and parse what it wrote.

    `streams` selects streams in a freshly discovered catalog; `catalog` gives one instead.
    """
    tap = TapCopernica(
        config=config,
        state=state,
        catalog=catalog or catalog_selecting(config, streams),
        validate_config=True,
    )
    # A text stream over bytes, like a real stdout: the msgspec writer writes to `.buffer`.
    buffer = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    exit_code = 0
    with redirect_stdout(buffer):
        try:
            tap.run()
        except SystemExit as exc:
            exit_code = int(exc.code or 0)
    buffer.flush()
    return SyncResult.parse(buffer.buffer.getvalue().decode(), exit_code=exit_code)


def run_cli(
    executable: str,
    args: list[str],
    *,
    config: dict[str, Any] | None = None,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> SyncResult:
    """Run an installed console script with a config file; returns output and exit code."""
    argv = [executable, *args]
    if config is not None:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        argv += ["--config", str(config_file)]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
        check=False,
    )
    return SyncResult.parse(proc.stdout, proc.stderr, proc.returncode)


def script(name: str) -> str:
    """Path of a console script installed next to this interpreter."""
    return str(Path(sys.executable).parent / name)
