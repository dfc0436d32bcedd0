#!/usr/bin/env bash
# Issue 7: smoke run of `perfstream demo` for 60 s against a throwaway database, then check that
# rows of all three kinds, stored progress and at least one firing and one resolved alert exist, and that the stored histograms decode in an
# independent HdrHistogram implementation (Python hdrhistogram) to the stored percentiles.
set -euo pipefail
: "${DATABASE_URL:?} ${E2E_PERFSTREAM_BIN:?} ${PY:?}"
DB=demo_smoke_$$
BASE=${DATABASE_URL%/*}
psql -q "$DATABASE_URL" -c "CREATE DATABASE $DB"
URL="$BASE/$DB"
DATABASE_URL=$URL RUST_LOG=warn "$E2E_PERFSTREAM_BIN" demo --duration 60s --summary-every 10 | tee /tmp/demo-smoke.$$.log
count() { psql -tA "$URL" -c "$1"; }
q=$(count "SELECT count(*) FROM query_rollups")
r=$(count "SELECT count(*) FROM request_rollups")
s=$(count "SELECT count(*) FROM resource_rollups")
p=$(count "SELECT count(*) FROM consumer_offsets WHERE resume_offset IS NOT NULL")
echo "demo smoke: query rows $q, request rows $r, resource rows $s, partitions with progress $p"
[ "$q" -gt 0 ] && [ "$r" -gt 0 ] && [ "$s" -gt 0 ] && [ "$p" -gt 0 ] || { echo "demo smoke: missing rows"; exit 1; }
f=$(count "SELECT count(*) FROM alerts WHERE state = 'firing'")
res=$(count "SELECT count(*) FROM alerts WHERE state = 'resolved'")
echo "demo smoke: alert transitions firing $f, resolved $res"
[ "$f" -gt 0 ] && [ "$res" -gt 0 ] || { echo "demo smoke: expected at least one firing and one resolved alert"; exit 1; }
grep -q "Done:" /tmp/demo-smoke.$$.log || { echo "demo did not stop cleanly"; exit 1; }
"$PY" tests/python/check_hist.py --database-url "$URL" --table all
psql -q "$DATABASE_URL" -c "DROP DATABASE $DB"
