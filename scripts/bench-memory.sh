#!/usr/bin/env bash
# Memory of the whole `perfstream run` process holding ~1 M live series (issue 13):
#   bash scripts/bench-memory.sh [--events N] [--services S] [--query-hashes Q] [--endpoints E]
#                                [--partitions P] [--seed S] [--min-series M] [--append]
#
# 1. starts `perfstream dev-broker` (P partitions per topic) and a throwaway Postgres (or uses
#    DATABASE_URL when set: a database per run is created in it and dropped at the end);
# 2. idle baseline: `perfstream run` on the still empty topics, under `/usr/bin/time -v`, until
#    it has claimed every partition and committed a few flushes; VmRSS/VmHWM from
#    /proc/PID/status, then SIGTERM and time's maximum RSS;
# 3. fills the input topics with N events (`perfstream emit --unpaced`, seeded, uniform
#    popularity: --zipf-exponent 0) drawn from S services x Q query hashes plus S x E endpoints,
#    all with event times inside ONE 60 s window (50 s of event time starting 1 s after a minute
#    boundary 30 minutes ago), so every series stays in an open window;
# 4. held: a fresh `perfstream run` (default config, but the cardinality caps raised so nothing
#    overflows and `window.idle_timeout = 24h` so quiet partitions never let the clock close the
#    window) consumes them; its /metrics is polled (deadline, no fixed sleeps) until
#    perfstream_messages_in reaches N and two more flushes committed, so perfstream_live_series
#    counts everything; then VmRSS/VmHWM, SIGTERM, and time's maximum RSS;
# 5. fails unless live series >= M (default 1,000,000) and no event went to an overflow series;
#    prints a Markdown report (bytes per series = (held peak - idle peak) / live series) and,
#    with --append, appends it to BENCHMARKS.md under "Memory: 1 M live series, whole process
#    (issue 13)".
#
# Defaults: 4,000,000 events, 100 services x 10,000 query hashes (85 % of events) and x 1,000
# endpoints, 4 instances each, 96 partitions per topic, seed 1: about 1.07 M distinct series,
# ~3.7 events each. The dev broker keeps at most 5 MiB per partition (librdkafka's mock cluster
# drops the oldest messages beyond it; the run fails if it did): 4 M events need ~50 partitions
# per topic, hence 96. Release build (built here; BENCH_PREBUILT=1 takes target/release as it is). Needs root
# for the throwaway Postgres (it runs as `postgres`), curl and /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="bash scripts/bench-memory.sh${*:+ $*}"
EVENTS=4000000 SERVICES=100 HASHES=10000 ENDPOINTS=1000 INSTANCES=4 PARTS=96 SEED=1
MIN_SERIES=1000000 APPEND=0 QUERY_SHARE=0.85
while [ $# -gt 0 ]; do
  case "$1" in
    --events) EVENTS=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --query-hashes) HASHES=$2; shift 2 ;;
    --endpoints) ENDPOINTS=$2; shift 2 ;;
    --partitions) PARTS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --min-series) MIN_SERIES=$2; shift 2 ;;
    --append) APPEND=1; shift ;;
    *) echo "usage: $0 [--events N] [--services S] [--query-hashes Q] [--endpoints E] [--partitions P] [--seed S] [--min-series M] [--append]" >&2; exit 2 ;;
  esac
done
log() { printf '== %s: %s\n' "$(date +%T)" "$*" >&2; [ -z "${WORK:-}" ] || echo "$* | $(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/load.txt"; }
fail() { echo "bench-memory: FAILED: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || fail "needs /usr/bin/time for the peak RSS (apt-get install time)"
command -v curl >/dev/null || fail "needs curl to read /metrics"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[ -n "${BENCH_PREBUILT:-}" ] || cargo build -q --release -p perfstream
[ -x "$TARGET/release/perfstream" ] || fail "no $TARGET/release/perfstream"
REV=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || REV="$REV (uncommitted changes in the tree)"
BUILT=$(date -u -r "$TARGET/release/perfstream" '+%H:%M UTC')

WORK=$(mktemp -d /tmp/bench-memory.XXXXXX)
chmod 755 "$WORK"
# Every phase runs this copy: the shared target dir may be rebuilt meanwhile.
BIN=$WORK/perfstream
cp "$TARGET/release/perfstream" "$BIN"
PIDS=()
DBS=()
cleanup() {
  set +e
  if [ -n "${PS_PID:-}" ] && kill -TERM "$PS_PID" 2>/dev/null; then
    # Its shutdown needs the broker and Postgres: let it finish (30 s at most) before they go.
    local deadline=$((SECONDS + 30))
    while kill -0 "$PS_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    kill -KILL "$PS_PID" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] || for d in "${DBS[@]}"; do psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $d" 2>/dev/null; done
  [ -d "$WORK/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Polls a condition with a deadline (no fixed sleeps): wait_for SECONDS WHAT COMMAND...
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"; sleep 0.2; done
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

if [ -n "${DATABASE_URL:-}" ]; then
  ADMIN_URL=$DATABASE_URL
else
  log "postgres (throwaway cluster)"
  PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
  PORT=$(free_port)
  mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK/pg -c fsync=off" start >/dev/null
  ADMIN_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
fi
new_db() { # new_db NAME: a fresh database, dropped on exit; sets DB_URL
  local db="bench_mem_$$_$1"
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  DBS+=("$db")
  DB_URL="${ADMIN_URL%/*}/$db"
}

log "broker ($PARTS partitions per topic)"
"$BIN" dev-broker --partitions "$PARTS" --bootstrap-file "$WORK/bs" >"$WORK/broker.log" 2>&1 &
PIDS+=($!)
wait_for 30 "the dev broker" test -s "$WORK/bs"
BS=$(cat "$WORK/bs")

# `perfstream run` with its default config but for the broker, the database, the /metrics port,
# the group and what keeps 1 M series held: caps raised, and no partition ever idle.
CAPS=(PERFSTREAM_WINDOW__MAX_SERIES=100000000 PERFSTREAM_WINDOW__MAX_SERIES_PER_SERVICE=100000000
  PERFSTREAM_WINDOW__MAX_MEMORY_MB=1000000 PERFSTREAM_WINDOW__IDLE_TIMEOUT=24h)
run_perfstream() { # run_perfstream NAME: starts `perfstream run` under time -v; sets RUN_PID, PS_PID, METRICS
  local name=$1 port
  new_db "$name"
  port=$(free_port)
  METRICS="http://127.0.0.1:$port/metrics"
  env RUST_LOG=warn PERFSTREAM_KAFKA__BOOTSTRAP_SERVERS="$BS" PERFSTREAM_POSTGRES__URL="$DB_URL" \
    PERFSTREAM_KAFKA__GROUP_ID="mem-$name" PERFSTREAM_HTTP__LISTEN="127.0.0.1:$port" "${CAPS[@]}" \
    /usr/bin/time -v "$BIN" run >"$WORK/$name.log" 2>"$WORK/$name.time" &
  RUN_PID=$!
  PIDS+=("$RUN_PID")
  wait_for 30 "perfstream run ($name) to start" has_child
  PS_PID=$(pgrep -P "$RUN_PID")
}
has_child() { pgrep -P "$RUN_PID" >/dev/null; }
alive() { kill -0 "$PS_PID" 2>/dev/null || { cat "$WORK/$1.log" "$WORK/$1.time" >&2; fail "perfstream run ($1) exited"; }; }
metric() { # metric NAME: its value in the last scrape ($WORK/m), 0 when absent
  awk -v n="$1" '$1 == n { v = $2 } END { print (v == "" ? 0 : v) }' "$WORK/m"
}
scrape() { curl -fsS -m 5 "$METRICS" >"$WORK/m.new" 2>/dev/null && mv "$WORK/m.new" "$WORK/m"; }
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PS_PID/status"; } # status_kib VmHWM
stop_perfstream() { # SIGTERM to `perfstream run` (the child of time), wait; sets MAXRSS (KiB)
  kill -TERM "$PS_PID"
  wait "$RUN_PID" || { cat "$WORK/$1.time" >&2; fail "perfstream run ($1) exited non-zero"; }
  PS_PID=
  MAXRSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/$1.time")
}
# Condition helpers for wait_for (each scrapes once).
claimed_and_flushed() { # every partition assigned and at least $1 flushes committed
  alive "$NAME"; scrape || return 1
  [ "$(metric perfstream_assigned_partitions)" -ge $((3 * PARTS)) ] && [ "$(metric perfstream_flushes_total)" -ge "$1" ]
}
# The dev broker (librdkafka's mock cluster) keeps at most 5 MiB per partition and drops the oldest
# messages beyond it: a consumer at the end of every partition (lag 0) with messages missing, for
# 50 scrapes in a row, means the topics were too small for the data.
STALL=0 LAST_IN=-1
consumed() {
  alive "$NAME"; scrape || return 1
  local n; n=$(metric perfstream_messages_in_total)
  [ "$n" -ge "$TOTAL" ] && return 0
  if [ "$(metric perfstream_consumer_lag_messages)" = 0 ] && [ "$n" = "$LAST_IN" ] && [ "$n" -gt 0 ]; then
    STALL=$((STALL + 1))
    [ $STALL -lt 50 ] || fail "consumed $n of $TOTAL messages and no lag left: the dev broker dropped the oldest (5 MiB per partition): raise --partitions"
  else
    STALL=0
  fi
  LAST_IN=$n
  return 1
}
flushed_past() { alive "$NAME"; scrape || return 1; [ "$(metric perfstream_flushes_total)" -ge "$1" ]; }

log "idle baseline: perfstream run on empty topics"
NAME=idle
run_perfstream idle
wait_for 900 "the idle run to claim its partitions and flush" claimed_and_flushed 10
IDLE_RSS=$(status_kib VmRSS) IDLE_HWM=$(status_kib VmHWM)
stop_perfstream idle
IDLE_TIME=$MAXRSS

# Event times: 50 s starting 1 s after the minute that began 30 minutes ago (one 60 s window;
# the watermark, max event time - 5 s, stays 14 s short of its end).
START_US=$(( (($(date +%s) - 1800) / 60 * 60 + 1) * 1000000 ))
RATE=$((EVENTS / 50))
log "emit $EVENTS events ($SERVICES services x $HASHES query hashes, x $ENDPOINTS endpoints; seed $SEED)"
"$BIN" emit --bootstrap "$BS" --count "$EVENTS" --rate "$RATE" --unpaced --start-time "$START_US" \
  --window 60s --services "$SERVICES" --query-hashes "$HASHES" --endpoints "$ENDPOINTS" \
  --instances "$INSTANCES" --zipf-exponent 0 --query-share "$QUERY_SHARE" --episodes none \
  --late 0 --out-of-order 0 --malformed 0 --too-late 0 --seed "$SEED" --progress-interval 1h \
  >"$WORK/emit.log" 2>&1 || { cat "$WORK/emit.log"; fail "emit"; }
TOTAL=$(grep -Eo 'acknowledged +[0-9]+' "$WORK/emit.log" | grep -Eo '[0-9]+$' | head -n 1)
[ "${TOTAL:-0}" -gt 0 ] || { cat "$WORK/emit.log"; fail "no acknowledged messages"; }

log "held: perfstream run consumes $TOTAL messages"
NAME=held
run_perfstream held
T0=$SECONDS
wait_for 3600 "perfstream run to consume $TOTAL messages" consumed
CONSUMED_S=$((SECONDS - T0))
# A flush plan counts the live series; the one committing now may predate the last batch.
F0=$(metric perfstream_flushes_total)
wait_for 300 "two more flushes" flushed_past $((F0 + 2))
LIVE=$(metric perfstream_live_series) EST_BYTES=$(metric perfstream_series_bytes)
HELD_RSS=$(status_kib VmRSS) HELD_HWM=$(status_kib VmHWM)
HELD_ANON=$(status_kib RssAnon) HELD_FILE=$(status_kib RssFile) THREADS=$(status_kib Threads)
AGG=$(metric perfstream_events_aggregated_total) DLQ=$(metric perfstream_dead_lettered_total)
CLOSED=$(metric perfstream_windows_closed_total)
stop_perfstream held
HELD_TIME=$MAXRSS
OVERFLOW=$(grep -c 'Cardinality budget reached' "$WORK/held.log" || true)

log "report"
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; } # mib KIB
num() { echo "$1" | sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta'; } # 1234567 -> 1,234,567
PEAK=$HELD_TIME; [ "$HELD_HWM" -gt "$PEAK" ] && PEAK=$HELD_HWM
BASE=$IDLE_TIME; [ "$IDLE_HWM" -gt "$BASE" ] && BASE=$IDLE_HWM
PER_SERIES=$(( (PEAK - BASE) * 1024 / (LIVE > 0 ? LIVE : 1) ))
EST_PER_SERIES=$(( EST_BYTES / (LIVE > 0 ? LIVE : 1) ))
LIMIT_KIB=$((4 * 1024 * 1024))
if [ "$PEAK" -le "$LIMIT_KIB" ]; then VERDICT="met: $(mib "$PEAK") < 4 GiB"; else VERDICT="missed: $(mib "$PEAK") > 4 GiB"; fi
CPU_S=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.0f", s }' "$WORK/held.time")
OVERRIDES=$(env | grep -E '^PERFSTREAM_(WINDOW|PIPELINE|ALERTS|HTTP|MAINTENANCE|DECODE)__' | sort | sed 's/.*/`&`/' | paste -sd' ' || true)
{
  echo "### Run of $(date -u '+%Y-%m-%d %H:%M') UTC: $(num "$LIVE") live series, $(num "$TOTAL") messages"
  echo
  echo "\`$COMMAND\` (perfstream release build; ${DATABASE_URL:+Postgres at DATABASE_URL, }seed $SEED). Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); load average at each stage: $(awk -F' [|] ' '{ printf "%s%s: %s", (NR > 1 ? "; " : ""), $1, $2 }' "$WORK/load.txt")."
  echo
  echo "| run | live series | VmRSS at the end | VmHWM (peak) | time -v max RSS |"
  echo "|---|---|---|---|---|"
  echo "| idle: empty topics, $((3 * PARTS)) partitions claimed, 10 flushes | 0 | $(mib "$IDLE_RSS") | $(mib "$IDLE_HWM") | $(mib "$IDLE_TIME") |"
  echo "| held: $(num "$TOTAL") messages consumed (${CONSUMED_S} s), one open 60 s window | **$(num "$LIVE")** | $(mib "$HELD_RSS") (anon $(mib "$HELD_ANON"), file $(mib "$HELD_FILE")) | $(mib "$HELD_HWM") | **$(mib "$HELD_TIME")** |"
  echo
  echo "- Target \"1 M live series within 4 GiB RSS, whole process\": **$VERDICT** at $(num "$LIVE") series."
  echo "- Whole process, (held peak - idle peak) / live series: **$(num "$PER_SERIES") B per series** (engine's own estimate, \`perfstream_series_bytes\`: $(mib $((EST_BYTES / 1024))), $(num "$EST_PER_SERIES") B per series)."
  echo "- Data: $(num "$EVENTS") regular events (+ resource samples) from \`perfstream emit --unpaced --zipf-exponent 0\`, $SERVICES services x $HASHES query hashes ($QUERY_SHARE of events) and x $ENDPOINTS endpoints, $INSTANCES instances each, event times within one 60 s window; $(num "$AGG") events aggregated, $(num "$DLQ") dead-lettered, $CLOSED windows closed, $OVERFLOW flushes reporting overflow; dev broker with $PARTS partitions per topic; $THREADS threads."
  echo "- Config: defaults (alerts, HTTP, maintenance on; \`samples_per_series = 5\`; \`flush_interval_ms = 1000\`) unless set in the environment (below), and \`PERFSTREAM_WINDOW__MAX_SERIES=100000000\`, \`..._MAX_SERIES_PER_SERVICE=100000000\`, \`..._MAX_MEMORY_MB=1000000\`, \`..._IDLE_TIMEOUT=24h\`."
  [ -z "$OVERRIDES" ] || echo "- Set in the environment as well: $OVERRIDES."
  echo "- CPU of the held run, start to SIGTERM: ${CPU_S} s user + system (the cores were shared: not a throughput figure)."
  echo "- Versions: perfstream $REV, release build of $BUILT, $(rustc --version 2>/dev/null || echo rustc unknown)."
} >"$WORK/report.md"
cat "$WORK/report.md"

[ "$OVERFLOW" = 0 ] || fail "events went to overflow series ($OVERFLOW flushes said so): raise the caps"
[ "$CLOSED" = 0 ] || fail "$CLOSED windows closed: the series were not all held at once"
[ "$LIVE" -ge "$MIN_SERIES" ] || fail "live series $LIVE < $MIN_SERIES (raise --events or the key space)"

if [ "$APPEND" = 1 ]; then
  HEADING="## Memory: 1 M live series, whole process (issue 13)"
  {
    if ! grep -qxF "$HEADING" BENCHMARKS.md; then
      echo
      echo "$HEADING"
      echo
      echo "\`bash scripts/bench-memory.sh [--events N] [--append]\` measures the resident memory of the"
      echo "whole \`perfstream run\` process (pipeline, alert evaluator, HTTP server, maintenance, librdkafka"
      echo "and sqlx pools) while it holds about a million live series in one open window, fed by"
      echo "\`perfstream emit\` through \`perfstream dev-broker\` and writing its progress to Postgres. The"
      echo "baseline is the same process idle on empty topics (partitions claimed, 10 flushes). Peak RSS is"
      echo "\`VmHWM\` from \`/proc/PID/status\` once every message is consumed and counted by a flush, and"
      echo "\`/usr/bin/time -v\`'s maximum RSS after SIGTERM (the larger is used)."
    fi
    echo
    cat "$WORK/report.md"
  } >>BENCHMARKS.md
  log "appended to BENCHMARKS.md"
fi
