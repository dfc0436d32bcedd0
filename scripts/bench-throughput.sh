#!/usr/bin/env bash
# Throughput side by side, in one run on one machine (issue 13):
#   bash scripts/bench-throughput.sh [--events N] [--partitions P] [--processes N] [--seed S] [--fresh-rate R]
#                                    [--fresh-seconds S] [--fresh-only] [--smoke] [--no-append]
#
# 1. starts `perfstream dev-broker` (P partitions per topic) and a throwaway Postgres (or uses
#    DATABASE_URL when set: a database per stage is created in it and dropped at the end);
# 2. fills the input topics with N generated events (`perfstream emit --unpaced`, seeded, 60 s
#    windows, no malformed or too-late events);
# 3. raw: `raw-consume` (crates/perfstream-bench) reads them with the pipeline's consumer
#    properties, counting messages and touching their bytes;
# 4. perfstream: `perfstream run` on the same topics from the beginning, fresh database, timed
#    from the first partition claim to the last committed progress reaching the end offsets;
# 5. baseline: bench/python/baseline.py (confluent-kafka + fastavro + hdrhistogram + psycopg
#    COPY) does the same job into the schema `baseline`; bench/python/compare.py checks its
#    rollups equal perfstream's (fails the run on any difference);
# 6. freshness: a fresh `perfstream run` with 1 s windows fed live by a paced `perfstream emit`;
#    bench/python/watch.py polls when each window's rows become visible (R events/s, default
#    20,000, for 30 s);
# 7. prints the report (bench/python/report.py) and appends it to BENCHMARKS.md ("Throughput
#    side by side") unless --smoke or --no-append.
#
# Defaults: 1,000,000 events on 12 partitions, seed 1, release builds (built here). --smoke:
# 20,000 events, a 10 s freshness phase, no report appended, and the perfstream binary from
# E2E_PERFSTREAM_BIN when set (CI passes its debug build: a release build there costs minutes);
# its figures mean nothing, it proves every stage still runs and the rollups still agree.
# PY is the Python with confluent-kafka, fastavro, hdrhistogram and psycopg (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="bash scripts/bench-throughput.sh${*:+ $*}"
EVENTS=1000000 PARTS=12 SEED=1 SMOKE=0 APPEND=1 FRESH_ONLY=0 PROCS=1
FRESH_S=30 FRESH_RATE=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --events) EVENTS=$2; shift 2 ;;
    --partitions) PARTS=$2; shift 2 ;;
    --processes) PROCS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --fresh-rate) FRESH_RATE=$2; shift 2 ;;
    --fresh-seconds) FRESH_S=$2; shift 2 ;;
    --fresh-only) FRESH_ONLY=1; APPEND=0; shift ;;
    --smoke) SMOKE=1; APPEND=0; shift ;;
    --no-append) APPEND=0; shift ;;
    *) echo "usage: $0 [--events N] [--partitions P] [--processes N] [--seed S] [--fresh-rate R] [--fresh-seconds S] [--fresh-only] [--smoke] [--no-append]" >&2; exit 2 ;;
  esac
done
[ "$SMOKE" = 1 ] && { [ "$EVENTS" = 1000000 ] && EVENTS=20000; FRESH_S=10; FRESH_RATE=1000; }
PY=${PY:-$ROOT/.venv/bin/python}
"$PY" -c 'import confluent_kafka, fastavro, hdrh, psycopg' || {
  echo "PY=$PY lacks confluent-kafka, fastavro, hdrhistogram or psycopg (bash scripts/test.sh installs them)" >&2; exit 1; }
log() { # also records the load average at each stage for the report
  printf '== %s: %s\n' "$(date +%T)" "$*" >&2
  [ -z "${WORK:-}" ] || echo "$* | $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/load.txt"
}
fail() { echo "bench-throughput: FAILED: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || fail "needs /usr/bin/time for peak RSS and CPU time (apt-get install time)"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$SMOKE" = 1 ] && [ -n "${E2E_PERFSTREAM_BIN:-}" ]; then
  BIN=$E2E_PERFSTREAM_BIN PROFILE=debug
  cargo build -q -p perfstream-bench
  RAW=$TARGET/debug/raw-consume
else
  PROFILE=release
  # BENCH_PREBUILT=1: take target/release as it is (e.g. while others rebuild the tree).
  [ -n "${BENCH_PREBUILT:-}" ] || cargo build -q --release -p perfstream -p perfstream-bench
  BIN=$TARGET/release/perfstream RAW=$TARGET/release/raw-consume
fi

WORK=$(mktemp -d /tmp/bench-throughput.XXXXXX)
chmod 755 "$WORK"
PIDS=()
DBS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] || for d in "${DBS[@]}"; do psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $d" 2>/dev/null; done
  [ -d "$WORK/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
# Polls a condition with a deadline (no fixed sleeps): wait_for SECONDS WHAT COMMAND...
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"; sleep 0.05; done
}

if [ -n "${DATABASE_URL:-}" ]; then
  ADMIN_URL=$DATABASE_URL
else
  log "postgres (throwaway cluster)"
  PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK/pg -c fsync=off" start >/dev/null
  ADMIN_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
fi
new_db() { # new_db NAME: a fresh database, dropped on exit; prints its URL
  local db="bench_$$_$1"
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  DBS+=("$db")
  echo "${ADMIN_URL%/*}/$db"
}

log "broker ($PARTS partitions per topic)"
"$BIN" dev-broker --partitions "$PARTS" --bootstrap-file "$WORK/bs" >"$WORK/broker.log" 2>&1 &
PIDS+=($!)
wait_for 30 "the dev broker" test -s "$WORK/bs"
BS=$(cat "$WORK/bs")

run_perfstream() { # run_perfstream URL LOG [extra env...]: starts `perfstream run` under time -v
  local url=$1 out=$2; shift 2
  env RUST_LOG=warn PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS="$BS" PERFSTREAM_POSTGRES__URL="$url" \
    PERFSTREAM_PIPELINE__FLUSH_INTERVAL_MS=100 PERFSTREAM_WINDOW__IDLE_TIMEOUT=500ms \
    PERFSTREAM_ALERTS__ENABLED=false PERFSTREAM_HTTP__ENABLED=false "$@" \
    /usr/bin/time -v "$BIN" run >"$out.log" 2>"$out.time" &
  RUN_PIDS+=($!)
  PIDS+=($!)
}
RUN_PIDS=()
stop_perfstream() { # SIGTERM to every `perfstream run` (the child of time), then wait for them
  local p
  for p in "${RUN_PIDS[@]}"; do pkill -TERM -P "$p" || true; done
  for p in "${RUN_PIDS[@]}"; do wait "$p" || fail "perfstream run exited non-zero (see below)"; done
  RUN_PIDS=()
}

if [ "$FRESH_ONLY" = 0 ]; then
# Event times span 10 minutes (10 windows) whatever N, ending 40 minutes ago.
log "emit $EVENTS events (seed $SEED, unpaced)"
START_US=$(( ($(date +%s) - 3000) * 1000000 ))
RATE=$((EVENTS / 600 + 1))
# The last window end the watermark (max event time - 5 s lateness) passes, with 1 s of slack.
CLOSED_US=$(( (START_US + EVENTS * 1000000 / RATE - 6000000) / 60000000 * 60000000 ))
"$BIN" emit --bootstrap "$BS" --count "$EVENTS" --rate "$RATE" --unpaced --start-time "$START_US" \
  --window 60s --malformed 0 --too-late 0 --seed "$SEED" --progress-interval 1h >"$WORK/emit.log" 2>&1 \
  || { cat "$WORK/emit.log"; fail "emit"; }
TOTAL=$(grep -Eo 'acknowledged +[0-9]+' "$WORK/emit.log" | grep -Eo '[0-9]+$' | head -n 1)
[ "${TOTAL:-0}" -gt 0 ] || { cat "$WORK/emit.log"; fail "no acknowledged messages"; }
# librdkafka's mock cluster keeps at most 5 MB (or 100,000 batches) per partition and deletes
# the oldest data beyond that; a stage reading while it deletes sees a different stream (the
# "intermittent" 1-partition failure). Fail loudly instead: every log must start at offset 0.
"$PY" - "$BS" <<'PY' || fail "the dev broker deleted old data (at most 5 MB per partition): use more --partitions or fewer --events"
import sys
from confluent_kafka import Consumer, TopicPartition
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "bench-check"})
meta = c.list_topics(timeout=30)
bad = [(t, p, lo) for t in ("perf.query", "perf.request", "perf.resource")
       for p in meta.topics[t].partitions
       for lo, _ in [c.get_watermark_offsets(TopicPartition(t, p), timeout=30)] if lo != 0]
c.close()
for t, p, lo in bad:
    print(f"{t}[{p}] starts at offset {lo}, not 0", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

log "raw: counting consumer ($TOTAL messages)"
/usr/bin/time -v "$RAW" --bootstrap "$BS" --group "raw-$$" >"$WORK/raw.json" 2>"$WORK/raw.time" \
  || { cat "$WORK/raw.time"; fail "raw-consume"; }

log "perfstream run ($PROFILE)"
PS_URL=$(new_db perfstream)
# --processes N: N members of one consumer group share the partitions (logs perfstream.*, -2...).
run_perfstream "$PS_URL" "$WORK/perfstream"
for i in $(seq 2 "$PROCS"); do run_perfstream "$PS_URL" "$WORK/perfstream-$i"; done
"$PY" bench/python/watch.py progress --database-url "$PS_URL" --total "$TOTAL" --timeout-s 1800 \
  --watermark-us "$CLOSED_US" \
  >"$WORK/perfstream.json" || { cat "$WORK/perfstream.time"; fail "perfstream run did not commit every message"; }
stop_perfstream

log "baseline: Python (confluent-kafka + fastavro + hdrhistogram + psycopg)"
/usr/bin/time -v "$PY" bench/python/baseline.py --bootstrap "$BS" --database-url "$PS_URL" \
  --schema baseline >"$WORK/baseline.json" 2>"$WORK/baseline.time" \
  || { cat "$WORK/baseline.time"; fail "baseline"; }

log "compare: baseline rollups = perfstream rollups"
(cd bench/python && "$PY" compare.py --database-url "$PS_URL" --schema baseline --closed-us "$CLOSED_US") >"$WORK/compare.json" \
  || { cat "$WORK/compare.json"; fail "the baseline's rollups differ from perfstream's"; }

fi

log "freshness: live for ${FRESH_S}s at $FRESH_RATE events/s, 1 s windows"
FR_URL=$(new_db fresh)
FR_TOPICS=(--topic-query live.query --topic-request live.request --topic-resource live.resource)
FR_ENV=(PERFSTREAM_KAFKA__TOPICS__QUERY=live.query PERFSTREAM_KAFKA__TOPICS__REQUEST=live.request
  PERFSTREAM_KAFKA__TOPICS__RESOURCE=live.resource)
# The live topics exist before the pipeline subscribes (a topic the producer created after
# the subscription would only be seen at the next metadata refresh, minutes later: a run once
# missed every resource event that way); it joins its group while the producer starts. Windows that closed before it claimed its partitions (+ 1 s to catch up) are
# left out of the figures (watch.py records the claim).
"$PY" - "$BS" <<'PY' || fail "creating the live topics"
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1]})
for t in ("live.query", "live.request", "live.resource"):  # the dev broker auto-creates on metadata
    assert t in p.list_topics(topic=t, timeout=30).topics
PY
run_perfstream "$FR_URL" "$WORK/fresh" "${FR_ENV[@]}" PERFSTREAM_KAFKA__GROUP_ID=live \
  PERFSTREAM_WINDOW__WINDOW=1s PERFSTREAM_WINDOW__ALLOWED_LATENESS=100ms ${BENCH_FRESH_ENV:-}
"$PY" bench/python/watch.py freshness --database-url "$FR_URL" --duration-s $((FRESH_S + 60)) \
  >"$WORK/fresh.json" &
WATCH_PID=$!
PIDS+=("$WATCH_PID")
"$BIN" emit --bootstrap "$BS" --rate "$FRESH_RATE" --duration "${FRESH_S}s" --window 1s \
  --allowed-lateness 100ms --late 0 --out-of-order 0 --malformed 0 --too-late 0 --seed "$SEED" \
  --services 20 --query-hashes ${FRESH_QUERY_HASHES:-400} --endpoints ${FRESH_ENDPOINTS:-40} --instances 3 --episodes none ${FRESH_EMIT_EXTRA:-} \
  --progress-interval 1h "${FR_TOPICS[@]}" >"$WORK/fresh-emit.log" 2>&1 \
  || { cat "$WORK/fresh-emit.log"; fail "live emit"; }
FR_TOTAL=$(grep -Eo 'acknowledged +[0-9]+' "$WORK/fresh-emit.log" | grep -Eo '[0-9]+$' | head -n 1)
"$PY" bench/python/watch.py progress --database-url "$FR_URL" --group live --total "$FR_TOTAL" \
  --timeout-s 120 >"$WORK/fresh-progress.json" || fail "the live pipeline did not catch up"
kill -TERM "$WATCH_PID"
wait "$WATCH_PID" || fail "freshness watcher"
stop_perfstream

log "report"
REPORT_ARGS=(--work "$WORK" --events "$EVENTS" --partitions "$PARTS" --seed "$SEED" --profile "$PROFILE"
  --bin "$BIN" --fresh-rate "$FRESH_RATE" --fresh-seconds "$FRESH_S" --processes "$PROCS")
[ "$FRESH_ONLY" = 1 ] && REPORT_ARGS+=(--fresh-only)
"$PY" bench/python/report.py "${REPORT_ARGS[@]}" --command "$COMMAND" >"$WORK/report.md" \
  || fail "report"
cat "$WORK/report.md"
if [ "$APPEND" = 1 ]; then
  { echo; cat "$WORK/report.md"; } >>BENCHMARKS.md
  log "appended to BENCHMARKS.md"
fi
