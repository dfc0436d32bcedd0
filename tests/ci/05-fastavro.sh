#!/usr/bin/env bash
# Issue 2: Rust-encoded events decoded by fastavro field for field, and fastavro-encoded events
# decoded by both Rust paths (tests/python/fastavro_roundtrip.py). Issue 14: in both schema
# versions of the query and request events (version 2 adds trace_id): version 1 bytes decode in
# perfstream, version 2 bytes from fastavro and from the Python client decode in perfstream, and
# perfstream's version 2 bytes read in fastavro with the version 1 schema as reader.
set -euo pipefail
: "${PY:?}"
TARGET=${CARGO_TARGET_DIR:-target}
"$PY" tests/python/fastavro_roundtrip.py --fixtures-bin "$TARGET/debug/examples/fixtures"
# The Python client's trace ids (traceparent, middlewares, version choice), no broker needed.
"$PY" clients/python/tests/test_trace.py
