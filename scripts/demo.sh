#!/usr/bin/env bash
# The main job: a Meltano pipeline from Copernica into an embedded DuckDB warehouse.
#   scripts/demo.sh            against the bundled emulator (demo data), when no token is set
#   TAP_COPERNICA_API_TOKEN=... scripts/demo.sh   against your real Copernica account
# Run it again: the second run is incremental and reports what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

PYTHON=${PYTHON:-python3}
if [ ! -x .tools/meltano/bin/meltano ]; then
  echo "==> Installing Meltano into .tools/meltano"
  "$PYTHON" -m venv .tools/meltano
  .tools/meltano/bin/pip install -q --upgrade pip
  .tools/meltano/bin/pip install -q "meltano>=4.4,<5"
fi
MELTANO=.tools/meltano/bin/meltano

mkdir -p output
echo "==> Installing the plugins (tap-copernica, target-duckdb, ...)"
"$MELTANO" install >output/install.log 2>&1 || { tail -n 30 output/install.log; exit 1; }

if [ -z "${TAP_COPERNICA_API_TOKEN:-}" ]; then
  echo "==> No TAP_COPERNICA_API_TOKEN set: starting the bundled Copernica emulator with demo data"
  emulator_log=$(mktemp)
  # stdlib only; --touch changes a few profiles at start, so a rerun has changes to pick up
  "$PYTHON" -m copernica_emulator --port 0 --profiles 500 --touch 5 >"$emulator_log" 2>&1 &
  emulator_pid=$!
  trap 'kill $emulator_pid 2>/dev/null || true; rm -f "$emulator_log"' EXIT
  for _ in $(seq 50); do grep -q '^api_token' "$emulator_log" && break; sleep 0.2; done
  TAP_COPERNICA_API_URL=$(awk '$1=="api_url"{print $2}' "$emulator_log")
  TAP_COPERNICA_AUTH_URL=$(awk '$1=="auth_url"{print $2}' "$emulator_log")
  TAP_COPERNICA_API_TOKEN=$(awk '$1=="api_token"{print $2}' "$emulator_log")
  export TAP_COPERNICA_API_URL TAP_COPERNICA_AUTH_URL TAP_COPERNICA_API_TOKEN
  echo "    emulator at $TAP_COPERNICA_API_URL"
fi

mkdir -p output
DUCKDB_PYTHON=.meltano/loaders/target-duckdb/venv/bin/python
started=$("$DUCKDB_PYTHON" -c 'import datetime as d; print(d.datetime.now(d.timezone.utc).replace(tzinfo=None).isoformat())')

echo "==> meltano run copernica-to-duckdb (tap-copernica -> target-duckdb)"
if ! "$MELTANO" run copernica-to-duckdb >output/last-run.log 2>&1; then
  tail -n 30 output/last-run.log
  echo "The pipeline failed; the full log is in output/last-run.log" >&2
  exit 1
fi

"$DUCKDB_PYTHON" scripts/warehouse_summary.py output/warehouse.duckdb "$started"
