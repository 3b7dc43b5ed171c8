"""Print the warehouse's tables, their row counts and what the last run wrote.

Run with the target-duckdb plugin's Python (it has duckdb): `scripts/demo.sh` does so.
"""

from __future__ import annotations

import os
import sys

import duckdb


def main(path: str, run_started_utc: str) -> None:
    con = duckdb.connect(path, read_only=True)
    tables = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'copernica' ORDER BY table_name"
        ).fetchall()
    ]
    print(f"\nWarehouse {path} (schema copernica)\n")
    counts = [
        (
            table,
            con.execute(f"SELECT count(*) FROM copernica.{table}").fetchone()[0],
            con.execute(
                f"SELECT count(*) FROM copernica.{table} WHERE _sdc_batched_at >= ?::TIMESTAMP",
                [run_started_utc],
            ).fetchone()[0],
        )
        for table in tables
    ]
    width = max([len("table"), *(len(table) for table in tables)]) + 2  # the longest name
    print(f"{'table':<{width}}{'rows':>10}{'written this run':>20}")
    for table, rows, written in counts:
        print(f"{table:<{width}}{rows:>10}{written:>20}")
    profiles = con.execute(
        "SELECT count(*) FROM copernica.profiles WHERE _sdc_batched_at >= ?::TIMESTAMP",
        [run_started_utc],
    ).fetchone()[0]
    total = con.execute("SELECT count(*) FROM copernica.profiles").fetchone()[0]
    removed = con.execute(
        "SELECT count(*) FROM copernica.profile_ids WHERE _sdc_batched_at < ?::TIMESTAMP",
        [run_started_utc],
    ).fetchone()[0]
    if removed:
        # profile_ids is rewritten in full by every run: IDs it did not rewrite are gone.
        print(f"Removed in Copernica (profile_ids rows this run did not rewrite): {removed}.")
    if profiles < total:
        print(f"\nIncremental run: {profiles} of {total} profiles were new or changed.")
    else:
        print(f"\nFull load: {total} profiles. Run the command again for an incremental run.")
    # One statement that keeps its connection open while it prints, with absolute paths: it
    # runs from any directory (a relation printed after its connection closed fails).
    query = "select * from copernica.profiles limit 5"
    code = (
        f"import duckdb; con = duckdb.connect({os.path.abspath(path)!r}, read_only=True); "
        f"con.sql({query!r}).show()"
    )
    print(f'\nQuery it, e.g.:\n  {os.path.abspath(sys.executable)} -c "{code}"')


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
