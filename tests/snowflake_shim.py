"""Run target-snowflake against fakesnow (a DuckDB-backed Snowflake emulator).

Runs in its own venv (`.tools/snowflake`, see tests/test_snowflake.py), not this project's:
    python tests/snowflake_shim.py DB_DIR --config CONFIG.json < singer-messages

fakesnow lacks three things target-snowflake 0.20.4 uses; this shim adapts only those:
- the user stage `@~`: PUT goes to a named internal stage instead;
- `MERGE ... USING (SELECT $1:col::TYPE ... FROM '@~/...'(file_format => ...) QUALIFY ...)`:
  the staged files are read with DuckDB's `read_json_objects` as one VARIANT column, and the
  QUALIFY dedup is dropped (DuckDB cannot run that window inside a MERGE source; the test
  sends each key once);
- `REMOVE @~/...` and `DROP FILE FORMAT` are no-ops;
- fakesnow serves every connection from one DuckDB connection, so streams drain one at a
  time (the SDK drains them in parallel threads otherwise).
Everything else (DDL, column types, the casts in the MERGE) is the target's own SQL.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import fakesnow
import singer_sdk.target_base
import snowflake.connector
from fakesnow.transforms import stage as fs_stage
from sqlalchemy import TextClause, text
from target_snowflake.connector import SnowflakeConnector
from target_snowflake.target import TargetSnowflake

USER_STAGE = re.compile(r"'@~/target-snowflake/([^'/]*)/?'")
STAGED_SOURCE = re.compile(r"'@~/target-snowflake/([^'/]*)'\(file_format => [^)]*\)")
QUALIFY = re.compile(
    r" QUALIFY ROW_NUMBER\(\) OVER \(PARTITION BY [^)]*ORDER BY SEQ8\(\) DESC\) = 1"
)


def main(argv: list[str]) -> None:
    db_dir, target_args = argv[0], argv[1:]
    config = json.loads(Path(target_args[target_args.index("--config") + 1]).read_text())
    stage = f"{config['database']}.PUBLIC.TARGET_SNOWFLAKE_USER_STAGE"
    original_put = SnowflakeConnector._get_put_statement
    original_merge = SnowflakeConnector._get_merge_from_stage_statement

    def put(self: SnowflakeConnector, sync_id: str, file_uri: str) -> tuple[TextClause, dict]:
        clause, kwargs = original_put(self, sync_id, file_uri)
        return text(USER_STAGE.sub(rf"@{stage}/\1", clause.text)), kwargs

    def merge(self: SnowflakeConnector, *args: Any, **kwargs: Any) -> tuple[TextClause, dict]:
        clause, extra = original_merge(self, *args, **kwargs)
        sql = clause.text
        match = STAGED_SOURCE.search(sql)
        assert match, sql
        files = fs_stage.internal_dir(stage, match.group(1)) + "/*"
        source = f"(select json::variant as staged from read_json_objects('{files}'))"
        sql = sql[: match.start()] + source + sql[match.end() :]
        sql = QUALIFY.sub("", sql).replace("$1:", "staged:")
        assert "QUALIFY" not in sql, sql
        return text(sql), extra

    SnowflakeConnector._get_put_statement = put
    SnowflakeConnector._get_merge_from_stage_statement = merge
    singer_sdk.target_base._MAX_PARALLELISM = 1
    nops = [r"^remove '@~/target-snowflake/", r"^drop file format "]
    with fakesnow.patch(db_path=db_dir, nop_regexes=nops):
        with snowflake.connector.connect(database=config["database"], schema="PUBLIC") as conn:
            conn.cursor().execute(f"create stage if not exists {stage}")
        TargetSnowflake.cli(target_args)


if __name__ == "__main__":
    main(sys.argv[1:])
