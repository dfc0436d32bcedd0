#!/usr/bin/env bash
# Issue 16: the dashboard in a real browser (Debian's headless chromium, installed when
# missing). Fills a throwaway database with `perfstream demo` (in-process Kafka, the
# generator, the pipeline, the alert evaluator, and the dashboard being tested), adds a week of
# history (tests/browser/seed.sql: base windows for 6 h, '1h' and '1d' tier rows for 7 days),
# then drives every view with tests/browser/dashboard_test.py: data points in every chart,
# drill-down from a service and from an alert, range switch -> tier, no console error, no
# horizontal scroll at 1366x768. Screenshots and report.json go to $BROWSER_OUT
# (default target/browser-test).
set -euo pipefail
: "${DATABASE_URL:?} ${E2E_PERFSTREAM_BIN:?}"
cd "$(dirname "$0")/../.."
OUT=${BROWSER_OUT:-$PWD/target/browser-test}
PYTHON=${PY:-python3}
rm -rf "$OUT" && mkdir -p "$OUT"

if ! command -v chromium >/dev/null; then
  echo "installing chromium (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium --version

DB=browser_$$
BASE=${DATABASE_URL%/*}
URL="$BASE/$DB"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $DB"
PORT=$("$PYTHON" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
DEMO_PID=
cleanup() {
  set +e
  if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
    # TERM, not INT: a background job of a non-interactive shell ignores SIGINT. The demo's
    # generator can wait minutes for its producer flush once the in-process broker is gone;
    # the test is over by then, so after 15 s the demo is killed.
    kill -TERM "$DEMO_PID"
    for _ in $(seq 1 150); do kill -0 "$DEMO_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DEMO_PID" 2>/dev/null; wait "$DEMO_PID" 2>/dev/null
  fi
  psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
trap cleanup EXIT

# The generator backdates some events by up to ~30 min; the history ends before that.
HISTORY_UNTIL=$(date -u -d '-40 min' +%FT%TZ)
DATABASE_URL=$URL RUST_LOG=warn PERFSTREAM_HTTP__LISTEN=127.0.0.1:$PORT \
  "$E2E_PERFSTREAM_BIN" demo --duration 150s --summary-every 10 >"$OUT/demo.log" 2>&1 &
DEMO_PID=$!

# Poll with a deadline: the dashboard answers and the demo committed rows of all three kinds.
deadline=$((SECONDS + 90))
until [ "$(psql -tA "$URL" -c "SELECT (SELECT count(*) > 0 FROM request_rollups) AND (SELECT count(*) > 0 FROM query_rollups) AND (SELECT count(*) > 0 FROM resource_rollups)" 2>/dev/null)" = t ] \
      && curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
  kill -0 "$DEMO_PID" 2>/dev/null || { echo "demo exited early"; cat "$OUT/demo.log"; exit 1; }
  [ $SECONDS -lt $deadline ] || { echo "no rollups or no dashboard after 90 s"; cat "$OUT/demo.log"; exit 1; }
  sleep 0.5
done
echo "demo wrote rows; adding the history"
psql -q "$URL" -v base_hours=6 -v tier_days=7 -v n_services=3 -v base=1m \
  -v until="$HISTORY_UNTIL" -f tests/browser/seed.sql

"$PYTHON" tests/browser/dashboard_test.py --url "http://127.0.0.1:$PORT" --out "$OUT"
echo "browser test: screenshots in $OUT"
