#!/usr/bin/env bash
# The main job: a Meltano pipeline from Copernica into an embedded DuckDB warehouse.
#   scripts/demo.sh            against the bundled emulator (demo data), when no token is set
#   TAP_COPERNICA_API_TOKEN=... scripts/demo.sh   against your real Copernica account
# Run it again: the second run is incremental and reports what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

PYTHON=${PYTHON:-python3}
MELTANO=scripts/meltano   # installs Meltano into .tools/meltano on first use

mkdir -p output
# Only what this job runs: the extractor and the one loader.
echo "==> Installing the plugins (tap-copernica, target-duckdb)"
"$MELTANO" run --only-install copernica-to-duckdb >output/install.log 2>&1 ||
  { tail -n 30 output/install.log; exit 1; }

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
  # The demo data loads in seconds: a progress line every second shows it working.
  export TAP_COPERNICA_PROGRESS_INTERVAL=${TAP_COPERNICA_PROGRESS_INTERVAL:-1}
fi
# A progress line every 10 s on a real account (the plugin's default is 30 s).
export TAP_COPERNICA_PROGRESS_INTERVAL=${TAP_COPERNICA_PROGRESS_INTERVAL:-10}

DUCKDB_PYTHON=.meltano/loaders/target-duckdb/venv/bin/python
started=$("$DUCKDB_PYTHON" -c 'import datetime as d; print(d.datetime.now(d.timezone.utc).replace(tzinfo=None).isoformat())')

echo "==> meltano run copernica-to-duckdb (tap-copernica -> target-duckdb)"
# Progress lines (records, pages, % of the ID range and ETA where known) and the run summary
# are shown here; the full log goes to output/last-run.log.
set +e
"$MELTANO" run copernica-to-duckdb 2>&1 | tee output/last-run.log | "$PYTHON" -u -c '
import re, sys
wanted = re.compile(r"\] tap-copernica +((Progress|Run summary): .*|Stream .* failed: .*)$")
for line in sys.stdin:
    found = wanted.search(re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip()))
    if found:
        print("    " + found.group(1), flush=True)
'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  tail -n 30 output/last-run.log
  echo "The pipeline failed; the full log is in output/last-run.log" >&2
  exit 1
fi

"$DUCKDB_PYTHON" scripts/warehouse_summary.py output/warehouse.duckdb "$started"
