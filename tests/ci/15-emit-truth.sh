#!/usr/bin/env bash
# Issue 3: the load generator at 50k events/s for 10 s against the broker, and the independent
# Python recomputation (confluent-kafka + fastavro) agrees with its truth file exactly.
set -euo pipefail
: "${E2E_PERFSTREAM_BIN:?} ${E2E_BOOTSTRAP:?} ${PY:?}"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$E2E_PERFSTREAM_BIN" emit --bootstrap "$E2E_BOOTSTRAP" --rate 50000 --duration 10s --truth "$OUT/out.json"
"$PY" tests/python/check_truth.py --bootstrap "$E2E_BOOTSTRAP" --truth "$OUT/out.json" --window 60s
