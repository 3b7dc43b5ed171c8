"""The README's main command, run as a new user would: twice, from a fresh copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from copernica_emulator import Emulator
from tests.conftest import config_for
from tests.singer import REPO
from tests.warehouse import fresh_schema, query

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


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository as a new user clones it (Meltano is installed on first use)."""
    return tracked_copy(tmp_path_factory.mktemp("clone") / "project")


def meltano_run(project: Path, env: dict[str, str], *args: str) -> None:
    """`meltano run ...` in the project copy; fails the test with the log's tail."""
    run = subprocess.run(
        [".tools/meltano/bin/meltano", "run", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]


def user_env() -> dict[str, str]:
    """The machine's environment as a user's shell has it (proxies, CA bundles, PATH), without
    a Copernica token: the demo then runs against the bundled emulator."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TAP_COPERNICA_")}


def test_demo_pipeline_loads_duckdb_then_runs_incrementally(project: Path) -> None:
    env = user_env()

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
    assert re.search(r"^    Run summary: [0-9,]+ records", first, re.MULTILINE), "shown as it runs"
    assert "Run summary:" in (project / "output/last-run.log").read_text(), "and in the full log"
    # The query the demo suggests runs as printed, from any directory.
    hint = first.strip().splitlines()[-1].strip()
    assert hint.endswith('.show()"'), hint
    shown = subprocess.run(hint, shell=True, cwd="/", capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "modified" in shown.stdout, shown.stdout

    second = demo()
    tables = table_rows(second)
    assert tables["profiles"] == (875, 5), "only the 5 profiles changed since were written"
    assert tables["subprofiles"][1] == 0
    assert "Incremental run: 5 of 875 profiles were new or changed." in second


@pytest.mark.postgres
def test_meltano_job_into_postgres_is_typed_incremental_and_marks_deletes(project: Path) -> None:
    assert (project / ".tools/meltano/bin/meltano").exists(), "the demo test installs Meltano"
    with Emulator(seed=9, profiles_per_database=80) as emu, fresh_schema() as schema:
        env = {
            **user_env(),
            **{f"TAP_COPERNICA_{k.upper()}": str(v) for k, v in config_for(emu).items()},
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
        }

        def job() -> None:
            meltano_run(project, env, "copernica-to-postgres")

        job()
        live = {
            int(p["ID"])
            for db in ("Customers", "Newsletter", "Legacy")
            for p in emu.store.profiles(db)
        }
        assert query(f'SELECT count(*) FROM "{schema}".profiles')[0][0] == len(live)
        customers = len(emu.store.profiles("Customers"))
        assert query(f'SELECT count(*) FROM "{schema}".profiles_customers')[0][0] == customers
        columns = dict(
            query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'profiles_customers'",
                schema,
            )
        )
        assert columns["age"] == "bigint"
        assert columns["birthdate"] == "date"
        assert columns["signup_at"].startswith("timestamp")

        between = query("SELECT now()")[0][0]
        ids = sorted(live)
        changed, deleted = ids[3:5], ids[7]
        for profile_id in changed:
            emu.store.update_profile(profile_id, {"email": f"changed{profile_id}@example.org"})
        emu.store.delete_profile(deleted)
        job()

        rewritten = {
            row[0]
            for row in query(
                f'SELECT "ID" FROM "{schema}".profiles WHERE _sdc_batched_at > %s', between
            )
        }
        assert rewritten == set(changed), "the second run wrote only the changed profiles"
        marked = {
            row[0]
            for row in query(
                f'SELECT profile_id FROM "{schema}".profile_ids WHERE _sdc_deleted_at IS NOT NULL'
            )
        }
        assert marked == {deleted}


def duckdb_query(project: Path, path: Path, sql: str) -> list[tuple[object, ...]]:
    """Query the warehouse with the DuckDB the loader plugin installed."""
    python = project / ".meltano/loaders/target-duckdb/venv/bin/python"
    code = (
        "import duckdb, json, sys; "
        "con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(json.dumps(con.execute(sys.argv[2]).fetchall(), default=str))"
    )
    out = subprocess.run(
        [str(python), "-c", code, str(path), sql], capture_output=True, text=True, check=True
    ).stdout
    return [tuple(row) for row in json.loads(out)]


def test_meltano_job_into_duckdb_is_incremental_and_shows_removed_profiles(
    project: Path, tmp_path: Path
) -> None:
    assert (project / ".tools/meltano/bin/meltano").exists(), "the demo test installs Meltano"
    warehouse = tmp_path / "job.duckdb"
    with Emulator(seed=9, profiles_per_database=60) as emu:
        env = {
            **user_env(),
            **{f"TAP_COPERNICA_{k.upper()}": str(v) for k, v in config_for(emu).items()},
            "TARGET_DUCKDB_FILEPATH": str(warehouse),
        }

        def job() -> None:
            # Its own state: the demo runs above share this job's default state ID.
            meltano_run(project, env, "--state-id-suffix=test", "copernica-to-duckdb")

        job()
        live = sorted(int(p["ID"]) for p in emu.store.profiles("Customers"))
        count = "SELECT count(*) FROM copernica.profiles_customers"
        assert duckdb_query(project, warehouse, count) == [(len(live),)]
        time.sleep(2.1)  # past the tests' 1 s lookback
        between = duckdb_query(project, warehouse, "SELECT now()::TIMESTAMP")[0][0]
        emu.store.update_profile(live[2], {"city": "Elsewhere"})
        emu.store.delete_profile(live[5])
        job()
        rewritten = duckdb_query(
            project,
            warehouse,
            f"SELECT id FROM copernica.profiles_customers WHERE _sdc_batched_at > '{between}'",
        )
        assert rewritten == [(live[2],)]
        gone = duckdb_query(
            project,
            warehouse,
            f"SELECT profile_id FROM copernica.profile_ids WHERE _sdc_batched_at < '{between}'",
        )
        assert gone == [(live[5],)]
