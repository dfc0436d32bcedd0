#!/usr/bin/env bash
# Issue 17: the Python client (clients/python). Its schema copies equal schemas/*.avsc, it
# passes the shared fingerprint vectors, and `pip install ./clients/python` gives a package that
# imports and finds its schemas (installed into a scratch directory, not the venv). The client
# against the broker and `perfstream run` is tests/python_client.rs.
set -euo pipefail
: "${PY:?}"
for f in query_event.avsc request_event.avsc resource_event.avsc; do
  cmp "schemas/$f" "clients/python/perfstream_client/schemas/$f" \
    || { echo "clients/python/perfstream_client/schemas/$f differs from schemas/$f: copy it"; exit 1; }
done
echo "python client: schema copies equal schemas/"
"$PY" clients/python/tests/test_fingerprint.py
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# From a copy, so the build leaves nothing in the working tree.
cp -r clients/python "$OUT/src"
"$PY" -m pip install -q --no-deps --no-build-isolation --target "$OUT/site" "$OUT/src"
(cd "$OUT" && PYTHONPATH="$OUT/site" "$PY" - <<'PYEOF'
import perfstream_client, perfstream_client.emitter as e
assert perfstream_client.__file__.startswith(__import__("os").getcwd()), perfstream_client.__file__
for f in ("query_event.avsc", "request_event.avsc", "resource_event.avsc"):
    e._load_schema(f)
print("python client: pip install ./clients/python gives an importable package with its schemas")
PYEOF
)
