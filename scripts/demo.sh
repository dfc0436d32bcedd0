#!/usr/bin/env bash
# The first command: the whole system, embedded, on a fresh Debian machine with Rust installed.
#   bash scripts/demo.sh [--duration 60s] [--keep] [--rate 2000]
# Installs the PostgreSQL server package when missing, builds perfstream, and runs
# `perfstream demo`: an in-process Kafka-protocol broker, a throwaway Postgres (or DATABASE_URL),
# the load generator with its episodes, the pipeline with 10 s windows and a live summary.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "Installing the PostgreSQL server package (apt-get install postgresql)..."
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
RUST_LOG=${RUST_LOG:-warn} exec cargo run -q -p perfstream -- demo "$@"
