#!/usr/bin/env bash
# End-to-end throughput of `perfstream run`: N events are produced first (unpaced) into a
# `perfstream dev-broker` (librdkafka's mock cluster, a separate process), then one pipeline
# process (release build) consumes, aggregates and commits them to Postgres; we time from its
# start to the moment every partition's committed progress reached the end of its log.
#   DATABASE_URL=postgres://... bash scripts/bench-pipeline.sh [EVENTS] [PARTITIONS]
# Prints events/s and the pipeline's peak RSS. Needs a Postgres at DATABASE_URL (superuser).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-500000}
PARTS=${2:-6}
: "${DATABASE_URL:?set DATABASE_URL to a Postgres superuser URL}"
cargo build --release -p perfstream -q
BIN=${CARGO_TARGET_DIR:-target}/release/perfstream
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
"$BIN" dev-broker --partitions "$PARTS" --bootstrap-file "$WORK/bs" >/dev/null 2>&1 &
while [ ! -s "$WORK/bs" ]; do sleep 0.1; done
BS=$(cat "$WORK/bs")
DB=bench_$$
psql -q "$DATABASE_URL" -c "CREATE DATABASE $DB"
URL="${DATABASE_URL%/*}/$DB"
START=$(( ($(date +%s) - 3000) * 1000000 ))
"$BIN" emit --bootstrap "$BS" --count "$EVENTS" --rate 5000 --unpaced --start-time "$START" \
  --window 60s --malformed 0 --too-late 0 --progress-interval 1h >"$WORK/emit.log"
export PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS=$BS PERFSTREAM_POSTGRES__URL=$URL RUST_LOG=warn \
  PERFSTREAM_WINDOW__IDLE_TIMEOUT=2s PERFSTREAM_PIPELINE__FLUSH_INTERVAL_MS=1000
/usr/bin/time -v "$BIN" run 2>"$WORK/time.log" &
RUN=$!
# Start the clock when the group has assigned the partitions (they are claimed in Postgres), so
# the group-join delay is not counted.
until [ "$(psql -tA "$URL" -c "SELECT count(*) FROM consumer_offsets" 2>/dev/null || echo 0)" -gt 0 ]; do sleep 0.05; done
T0=$(date +%s.%N)
TOTAL=$(grep -Eo 'acknowledged +[0-9]+' "$WORK/emit.log" | grep -Eo '[0-9]+$' || echo 0)
while :; do
  DONE=$(psql -tA "$URL" -c "SELECT coalesce(sum(applied_through_offset),0) FROM consumer_offsets" 2>/dev/null || echo 0)
  [ "${DONE:-0}" -ge "$TOTAL" ] && [ "$TOTAL" -gt 0 ] && break
  sleep 0.2
done
T1=$(date +%s.%N)
pkill -TERM -P "$RUN"; wait "$RUN" || true
RSS=$(grep -Eo "Maximum resident set size \(kbytes\): [0-9]+" "$WORK/time.log" | grep -Eo "[0-9]+$" || echo 0)
python3 -c "import sys; t=$T1-$T0; print(f'pipeline: {$TOTAL} messages in {t:.2f} s = {$TOTAL/t:,.0f} msg/s from assignment to the last commit; peak RSS {int(\"$RSS\")/1024:.0f} MiB')"
psql -q "$DATABASE_URL" -c "DROP DATABASE $DB"
