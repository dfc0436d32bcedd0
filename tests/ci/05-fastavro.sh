#!/usr/bin/env bash
# Issue 2: Rust-encoded events decoded by fastavro field for field, and fastavro-encoded events
# decoded by both Rust paths (tests/python/fastavro_roundtrip.py).
set -euo pipefail
: "${PY:?}"
TARGET=${CARGO_TARGET_DIR:-target}
"$PY" tests/python/fastavro_roundtrip.py --fixtures-bin "$TARGET/debug/examples/fixtures"
