#!/usr/bin/env bash
# Sets up .venv (first time), then runs every check: ruff, mypy and the pytest suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k incremental`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q -e ".[dev]"

# The end-to-end tests load into the local PostgreSQL server (127.0.0.1:5432).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort | tail -n 1)" main start || true
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy copernica_api copernica_emulator tap_copernica target_copernica tests scripts
# Four workers, each taking whole files (module fixtures and in-file order stay as written):
# most tests wait on HTTP and subprocesses, so this is four times the tests on two cores.
# A later `-n 0` in the arguments runs in one process (for `-s` or `--pdb`).
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-4}" --dist loadfile "$@"
