#!/usr/bin/env python3
"""Cross-language check of perfstream's codec against fastavro, both ways.

1. Rust -> fastavro: `cargo run --example fixtures -- write DIR` writes framed messages encoded
   by perfstream-events and a manifest of the expected values; fastavro decodes each with the
   schema that ids.json names for its schema id, and every field is compared. The series keys
   Rust computed are compared with the producer example's `series_key`.
2. fastavro -> Rust: the same values plus seeded random events are encoded by fastavro (with the
   producer example's `frame`), and `fixtures check DIR` decodes them on both Rust paths and
   compares field by field.

Schema versions (issue 14): queries and requests come in version 1 (ids 1, 2) and version 2
(ids 6, 7, adding an optional trace_id). Rust -> fastavro reads each message with the schema of
its id, and every version 2 message also with the version 1 schema as reader (a consumer not
upgraded), which must give the same fields without trace_id. fastavro -> Rust writes queries
and requests in both versions (a version 1 message carries no trace id), and the Python
client's own encoder (perfstream_client) writes some too.

    .venv/bin/python tests/python/fastavro_roundtrip.py [--fixtures-bin PATH]

Ends with `fastavro_roundtrip: N passed, M failed`; exits 1 if anything failed.
"""

import argparse
import datetime
import io
import json
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from producer_example import SCHEMAS_DIR, frame, json_view, load_schemas, make_event, series_key  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))

ROOT = Path(__file__).resolve().parents[2]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
BYTES_FIELDS = {"original_key", "original_value"}


def to_json_view(value):
    """fastavro's decoded value in the JSON view: timestamps back to integer microseconds."""
    if isinstance(value, datetime.datetime):
        return (value - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(value, dict):
        return {k: to_json_view(v) for k, v in value.items()}
    return json_view(value)


def from_json_view(kind, value):
    """A manifest value as a record for fastavro: hex strings back to bytes."""
    if kind != "dead_letter":
        return value
    return {k: (bytes.fromhex(v) if k in BYTES_FIELDS and v is not None else v) for k, v in value.items()}


def load_versions(schemas_dir=SCHEMAS_DIR):
    """{schema id: (kind, parsed schema)} for every schema ids.json lists, and {kind: (v1 id,
    v1 schema)} for the kinds with a version 2."""
    ids = json.loads((schemas_dir / "ids.json").read_text())
    kind_of = {"QueryEvent": "query", "RequestEvent": "request", "ResourceEvent": "resource",
               "AlertEvent": "alert", "DeadLetter": "dead_letter"}
    by_id, v1 = {}, {}
    for i, f in ids.items():
        if i.startswith("_"):
            continue
        raw = json.loads((schemas_dir / f).read_text())
        kind = kind_of[raw["name"]]
        by_id[int(i)] = (kind, fastavro.parse_schema(raw))
        if kind in ("query", "request") and not any(x["name"] == "trace_id" for x in raw["fields"]):
            v1[kind] = (int(i), by_id[int(i)][1])
    return by_id, v1


def fixtures_cmd(args):
    if args.fixtures_bin:
        return [args.fixtures_bin]
    return ["cargo", "run", "-q", "-p", "perfstream-events", "--example", "fixtures", "--"]


def rust_to_fastavro(args, versions, v1, out_dir):
    """Returns (passed, failed, manifest, ids seen)."""
    subprocess.run(fixtures_cmd(args) + ["write", str(out_dir)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    passed = failed = 0
    seen = set()
    for entry in manifest:
        data = (out_dir / entry["file"]).read_bytes()
        magic, schema_id = data[0], struct.unpack(">I", data[1:5])[0]
        seen.add(schema_id)
        kind = entry["kind"]
        problems = []
        if magic != 0:
            problems.append(f"magic byte {magic}")
        if versions.get(schema_id, (None,))[0] != kind:
            problems.append(f"schema id {schema_id} is {versions.get(schema_id, (None,))[0]}, want {kind}")
        else:
            writer = versions[schema_id][1]
            body = io.BytesIO(data[5:])
            got = to_json_view(fastavro.schemaless_reader(body, writer, None))
            if body.read():
                problems.append("trailing bytes after the record")
            want = dict(entry["value"])
            if kind in v1 and schema_id == v1[kind][0]:
                # Version 1 has no trace_id; Rust reads it as none.
                if want.pop("trace_id", None) is not None:
                    problems.append("a version 1 message with a trace id in the manifest")
            for field in sorted(set(want) | set(got)):
                if got.get(field, "<missing>") != want.get(field, "<missing>"):
                    problems.append(f"{field}: want {want.get(field, '<missing>')!r}, got {got.get(field, '<missing>')!r}")
            if kind in v1 and schema_id != v1[kind][0]:
                # A consumer still on version 1 reads version 2 bytes: trace_id skipped.
                old = to_json_view(fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, v1[kind][1]))
                want_old = {k: v for k, v in want.items() if k != "trace_id"}
                if old != want_old:
                    problems.append(f"read with the version 1 schema: want {want_old!r}, got {old!r}")
            if entry.get("key_hex") is not None and series_key(kind, want).hex() != entry["key_hex"]:
                problems.append(f"series key: Rust {entry['key_hex']}, Python {series_key(kind, want).hex()}")
        if problems:
            failed += 1
            print(f"rust->fastavro {entry['file']}: " + "; ".join(problems), file=sys.stderr)
        else:
            passed += 1
    return passed, failed, manifest, seen


def client_encoded(rng, t0):
    """(kind, value, bytes) written by the Python client's encoder (perfstream_client), which
    picks version 2 exactly when a trace id is given."""
    from perfstream_client import emitter as client

    em = client.Emitter.__new__(client.Emitter)  # the encoder only: no producer, no thread
    em._schemas = {k: (s[0], client._load_schema(s[1])) for k, s in client._KINDS.items()}
    em._schemas_v2 = {k: (s[0], client._load_schema(s[1])) for k, s in client._V2.items()}
    out = []
    for i in range(40):
        kind = ("query", "request")[i % 2]
        value = make_event(kind, rng, t0 + rng.randrange(86_400_000_000))
        data = em._encode(kind, dict(value))
        want_id = {"query": (1, 6), "request": (2, 7)}[kind][value["trace_id"] is not None]
        if struct.unpack(">I", data[1:5])[0] != want_id:
            raise SystemExit(f"client encoder: {kind} with trace_id {value['trace_id']!r} framed with id {data[1:5].hex()}")
        out.append((kind, json_view(value), data))
    return out


def fastavro_to_rust(args, schemas, v1, rust_manifest, out_dir):
    """Returns (passed, failed) as reported by `fixtures check`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    values = [(e["kind"], e["value"]) for e in rust_manifest]
    t0 = 1_767_225_600_000_000
    for i in range(150):
        kind = ("query", "request", "resource")[i % 3]
        values.append((kind, json_view(make_event(kind, rng, t0 + rng.randrange(86_400_000_000)))))
    messages = []
    for kind, value in values:
        schema_id, schema = schemas[kind]
        messages.append((kind, value, frame(schema_id, schema, from_json_view(kind, value))))
        if kind in v1:
            # The same event from a version 1 producer: no trace id reaches perfstream.
            old_id, old_schema = v1[kind]
            messages.append((kind, dict(value, trace_id=None), frame(old_id, old_schema, value)))
    messages.extend(client_encoded(rng, t0))
    manifest = []
    for n, (kind, value, data) in enumerate(messages):
        name = f"{n:03}-{kind}.bin"
        (out_dir / name).write_bytes(data)
        key = series_key(kind, value).hex() if kind in ("query", "request", "resource") else None
        manifest.append({"file": name, "kind": kind, "key_hex": key, "value": value})
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    r = subprocess.run(fixtures_cmd(args) + ["check", str(out_dir)], cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    # "fixtures check: N passed, M failed"
    try:
        counts = last.split(":", 1)[1].split(",")
        passed, failed = (int(c.split()[0]) for c in counts)
    except (IndexError, ValueError):
        print(f"fastavro->rust: unexpected output {r.stdout!r} (exit {r.returncode})", file=sys.stderr)
        return 0, 1
    if r.returncode != 0 and failed == 0:
        failed = 1
    return passed, failed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures-bin", help="a built `fixtures` example binary (default: cargo run)")
    args = p.parse_args()
    schemas = load_schemas(SCHEMAS_DIR)
    versions, v1 = load_versions(SCHEMAS_DIR)
    # The Python client's schema copies (both versions) equal the repository's.
    copies = ROOT / "clients" / "python" / "perfstream_client" / "schemas"
    stale = [f for f in ("query_event.avsc", "request_event.avsc", "resource_event.avsc",
                         "query_event_v2.avsc", "request_event_v2.avsc")
             if not (copies / f).exists() or (copies / f).read_bytes() != (SCHEMAS_DIR / f).read_bytes()]
    if stale:
        print(f"clients/python schema copies differ from schemas/: {stale}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="perfstream-fixtures-") as tmp:
        tmp = Path(tmp)
        p1, f1, rust_manifest, seen = rust_to_fastavro(args, versions, v1, tmp / "rust")
        missing = {1, 2, 6, 7} - seen
        if missing:
            print(f"rust->fastavro: no fixture with schema id {sorted(missing)}", file=sys.stderr)
            f1 += 1
        p2, f2 = fastavro_to_rust(args, schemas, v1, rust_manifest, tmp / "fastavro")
    print(f"rust->fastavro: {p1} passed, {f1} failed; fastavro->rust (both Rust paths): {p2} passed, {f2} failed")
    passed, failed = p1 + p2, f1 + f2
    print(f"fastavro_roundtrip: {passed} passed, {failed} failed")
    return 0 if failed == 0 and p1 > 0 and p2 > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
