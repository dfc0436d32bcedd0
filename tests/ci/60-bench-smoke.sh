#!/usr/bin/env bash
# Issue 13: the throughput harness at a smoke size, so it cannot rot. Every stage must complete
# (emit, raw consume, `perfstream run` to its last commit, the Python baseline, the live
# freshness phase, the report) and the baseline's rollups must equal perfstream's; no timing is
# asserted. Uses the debug perfstream of E2E_PERFSTREAM_BIN (a release build would cost CI
# minutes), the Postgres at DATABASE_URL and the venv Python PY; takes seconds plus the group
# joins. The real measurement: `bash scripts/bench-throughput.sh` (BENCHMARKS.md).
set -euo pipefail
: "${E2E_PERFSTREAM_BIN:?} ${DATABASE_URL:?} ${PY:?}"
cd "$(dirname "$0")/../.."
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
bash scripts/bench-throughput.sh --smoke >"$OUT" 2>&1 || { cat "$OUT"; exit 1; }
cat "$OUT"
grep -q '^| `perfstream run`' "$OUT" || { echo "60-bench-smoke: no report"; exit 1; }
grep -q '^- Rollups: baseline = perfstream' "$OUT" || { echo "60-bench-smoke: no rollup check"; exit 1; }
echo "60-bench-smoke: every stage completed, the rollups agree"
