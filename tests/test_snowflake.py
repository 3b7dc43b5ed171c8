"""The copernica-to-snowflake route: tap -> MeltanoLabs target-snowflake -> fakesnow.

target-snowflake needs a newer singer-sdk than this project, so it runs from its own venv,
created once under `.tools/snowflake` (gitignored), through `tests/snowflake_shim.py`, which
runs it under fakesnow with a database file and adapts the few statements fakesnow lacks
(the user stage `@~`, QUALIFY inside MERGE, REMOVE; see the shim). The database is then
opened with DuckDB to check the tables, column types and rows the target made.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import REPO, sync
from tests.target_helpers import singer_lines

VENV = REPO / ".tools" / "snowflake"
PYTHON = VENV / "bin" / "python"
PACKAGES = ["meltanolabs-target-snowflake==0.20.4", "fakesnow==0.12.1"]
SHIM = REPO / "tests" / "snowflake_shim.py"
STREAMS = ["profiles_customers", "subprofiles_customers_orders", "profiles"]
TARGET_CONFIG = {
    "account": "fake",
    "user": "fake",
    "password": "fake",
    "database": "ANALYTICS",
    "warehouse": "LOADING",
    "role": "LOADER",
    "default_target_schema": "COPERNICA",
}


def _installed() -> bool:
    # Versions only: importing fakesnow would leave a temporary folder behind.
    same = " and ".join(
        f"v({name!r}) == {pinned!r}" for name, pinned in (p.split("==") for p in PACKAGES)
    )
    check = f"import sys; from importlib.metadata import version as v; sys.exit(not ({same}))"
    return PYTHON.exists() and subprocess.run([PYTHON, "-c", check], check=False).returncode == 0


@pytest.fixture(scope="module")
def snowflake_python() -> Path:
    """The venv's python, with the pinned target and fakesnow (installed on first use)."""
    if not _installed():
        subprocess.run(["python3", "-m", "venv", "--clear", VENV], check=True)
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", *PACKAGES], check=True, timeout=600)
    assert _installed()
    return PYTHON


def load(python: Path, tmp: Path, messages: list[dict[str, Any]]) -> subprocess.CompletedProcess:
    """Pipe `messages` into target-snowflake under fakesnow; the database lands in tmp/db."""
    (tmp / "db").mkdir(exist_ok=True)
    config = tmp / "target.json"
    config.write_text(json.dumps(TARGET_CONFIG))
    # fakesnow's stage and the SDK's batch files go to the temp folder: keep them in tmp.
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run(
        [python, SHIM, tmp / "db", "--config", config],
        check=False,
        input=singer_lines(messages),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def query(python: Path, tmp: Path, sql: str) -> list[list[Any]]:
    """Rows of `sql` on the database fakesnow wrote (DuckDB, read-only)."""
    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(json.dumps(con.sql(sys.argv[2]).fetchall(), default=str))\n"
    )
    db = tmp / "db" / f"{TARGET_CONFIG['database']}.db"
    out = subprocess.run(
        [python, "-c", script, db, sql], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def column_types(python: Path, tmp: Path, table: str) -> dict[str, str]:
    rows = query(
        python,
        tmp,
        "select column_name, data_type from information_schema.columns "
        f"where table_schema = 'COPERNICA' and table_name = '{table}'",
    )
    return dict(rows)


NUMBER = {"BIGINT", "INTEGER", "DOUBLE", "HUGEINT"}


def test_tap_output_loads_into_snowflake_tables_with_typed_columns(
    snowflake_python: Path, tmp_path: Path
) -> None:
    with Emulator(seed=7, profiles_per_database=8) as emu:
        result = sync(config_for(emu), streams=STREAMS)
    assert result.exit_code == 0
    loaded = load(snowflake_python, tmp_path, result.messages)
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    for stream in STREAMS:
        ids = result.ids(stream)
        assert ids, stream
        assert len(set(ids)) == len(ids), stream  # the shim drops MERGE's dedup
        table = f'"COPERNICA"."{stream.upper()}"'
        assert query(snowflake_python, tmp_path, f"select count(*) from {table}") == [[len(ids)]]
        got = query(snowflake_python, tmp_path, f'select "ID" from {table} order by 1')
        assert [row[0] for row in got] == sorted(ids)

    customers = column_types(snowflake_python, tmp_path, "PROFILES_CUSTOMERS")
    assert customers["ID"] in NUMBER
    assert customers["AGE"] in NUMBER  # integer
    assert customers["SCORE"] in NUMBER  # number
    assert customers["BIRTHDATE"] == "DATE"
    assert customers["MODIFIED"].startswith("TIMESTAMP")
    assert customers["EMAIL"] == "VARCHAR"
    assert customers["INTERESTS"] == "JSON"  # array -> VARIANT

    orders = column_types(snowflake_python, tmp_path, "SUBPROFILES_CUSTOMERS_ORDERS")
    assert orders["AMOUNT"] in NUMBER
    assert orders["QUANTITY"] in NUMBER
    assert orders["ORDERED_AT"].startswith("TIMESTAMP")

    profiles = column_types(snowflake_python, tmp_path, "PROFILES")
    assert profiles["FIELDS"] == "JSON"  # object -> VARIANT

    # Values survive the target's `$1:col::TYPE` casts: a nested object stays an object.
    first = result.records["profiles"][0]
    got = query(
        snowflake_python,
        tmp_path,
        'select "FIELDS"::varchar, "MODIFIED" from "COPERNICA"."PROFILES" '
        f'where "ID" = {first["ID"]}',
    )
    assert json.loads(got[0][0]) == first["fields"]
    assert got[0][1].replace(" ", "T")[:19] == first["modified"][:19]


def test_properties_differing_only_in_case_are_refused(
    snowflake_python: Path, tmp_path: Path
) -> None:
    """Snowflake folds unquoted names to upper case, and target-snowflake folds property
    names to lower case before that: `Email` and `email` would be one column, so it stops
    with ConformedNameClashException and creates no table (rather than merging them)."""
    schema = {
        "type": "object",
        "properties": {
            "ID": {"type": "integer"},
            "Email": {"type": ["string", "null"]},
            "email": {"type": ["string", "null"]},
        },
    }
    messages = [
        {"type": "SCHEMA", "stream": "cases", "schema": schema, "key_properties": ["ID"]},
        {"type": "RECORD", "stream": "cases", "record": {"ID": 1, "Email": "A@x", "email": "a@x"}},
    ]
    loaded = load(snowflake_python, tmp_path, messages)
    assert loaded.returncode != 0
    assert "ConformedNameClashException" in loaded.stderr
    assert "[('email', ['Email', 'email'])]" in loaded.stderr
    tables = query(
        snowflake_python,
        tmp_path,
        "select table_name from information_schema.tables where table_schema = 'COPERNICA'",
    )
    assert tables == []
