"""A real PostgreSQL server for end-to-end tests (started if it is down), and pipelines into it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.singer import SyncResult, run_cli, script

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def ensure_postgres() -> None:
    """Connect, or start the local cluster the way CI does, or fail with what to do."""
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
            capture_output=True,
        )
    try:
        psycopg.connect(PG_DSN, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        msg = (
            f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc}); start it with "
            f"`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
        raise RuntimeError(msg) from None


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema of its own for one test, dropped afterwards."""
    ensure_postgres()
    schema = f"copernica_{uuid.uuid4().hex[:10]}"
    try:
        yield schema
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_DSN) as conn:
        return list(conn.execute(sql, params).fetchall())


def tap_to_postgres(
    tap_config: dict[str, Any],
    schema: str,
    tmp_path: Path,
    *,
    streams: list[str],
    state: dict[str, Any] | None = None,
    target_config: dict[str, Any] | None = None,
) -> tuple[SyncResult, dict[str, Any]]:
    """Run tap-copernica | target-postgres; return the tap's output and the target's state."""
    args = ["--catalog", str(_catalog_file(tap_config, streams, tmp_path))]
    if state is not None:
        state_file = tmp_path / "state.json"
        state_file.write_text(json.dumps(state))
        args += ["--state", str(state_file)]
    tap = run_cli(script("tap-copernica"), args, config=tap_config, tmp_path=tmp_path)
    assert tap.exit_code == 0, tap.stderr[-2000:]
    raw = "\n".join(json.dumps(m) for m in tap.messages)
    config = {
        "sqlalchemy_url": PG_URL,
        "default_target_schema": schema,
        **(target_config or {}),
    }
    target = run_cli(
        script("target-postgres"), [], config=config, tmp_path=tmp_path, stdin=raw, timeout=300
    )
    assert target.exit_code == 0, target.stderr[-3000:]
    return tap, (target.states[-1] if target.states else {})


def _catalog_file(config: dict[str, Any], streams: list[str], tmp_path: Path) -> Path:
    from tests.singer import catalog_selecting  # noqa: PLC0415

    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_selecting(config, streams)))
    return path
