#!/usr/bin/env python3
"""Cross-language check of perfstream's codec against fastavro, both ways.

1. Rust -> fastavro: `cargo run --example fixtures -- write DIR` writes framed messages encoded
   by perfstream-events and a manifest of the expected values; fastavro decodes each with the
   schema that ids.json names for its schema id, and every field is compared. The series keys
   Rust computed are compared with the producer example's `series_key`.
2. fastavro -> Rust: the same values plus seeded random events are encoded by fastavro (with the
   producer example's `frame`), and `fixtures check DIR` decodes them on both Rust paths and
   compares field by field.

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


def fixtures_cmd(args):
    if args.fixtures_bin:
        return [args.fixtures_bin]
    return ["cargo", "run", "-q", "-p", "perfstream-events", "--example", "fixtures", "--"]


def rust_to_fastavro(args, schemas, by_id, out_dir):
    """Returns (passed, failed, manifest)."""
    subprocess.run(fixtures_cmd(args) + ["write", str(out_dir)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    passed = failed = 0
    for entry in manifest:
        data = (out_dir / entry["file"]).read_bytes()
        magic, schema_id = data[0], struct.unpack(">I", data[1:5])[0]
        kind = entry["kind"]
        problems = []
        if magic != 0:
            problems.append(f"magic byte {magic}")
        if by_id.get(schema_id) != kind:
            problems.append(f"schema id {schema_id} is {by_id.get(schema_id)}, want {kind}")
        else:
            body = io.BytesIO(data[5:])
            got = to_json_view(fastavro.schemaless_reader(body, schemas[kind][1], None))
            if body.read():
                problems.append("trailing bytes after the record")
            want = entry["value"]
            for field in sorted(set(want) | set(got)):
                if got.get(field, "<missing>") != want.get(field, "<missing>"):
                    problems.append(f"{field}: want {want.get(field, '<missing>')!r}, got {got.get(field, '<missing>')!r}")
            if entry.get("key_hex") is not None and series_key(kind, want).hex() != entry["key_hex"]:
                problems.append(f"series key: Rust {entry['key_hex']}, Python {series_key(kind, want).hex()}")
        if problems:
            failed += 1
            print(f"rust->fastavro {entry['file']}: " + "; ".join(problems), file=sys.stderr)
        else:
            passed += 1
    return passed, failed, manifest


def fastavro_to_rust(args, schemas, rust_manifest, out_dir):
    """Returns (passed, failed) as reported by `fixtures check`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    values = [(e["kind"], e["value"]) for e in rust_manifest]
    t0 = 1_767_225_600_000_000
    for i in range(150):
        kind = ("query", "request", "resource")[i % 3]
        values.append((kind, json_view(make_event(kind, rng, t0 + rng.randrange(86_400_000_000)))))
    manifest = []
    for n, (kind, value) in enumerate(values):
        schema_id, schema = schemas[kind]
        name = f"{n:03}-{kind}.bin"
        (out_dir / name).write_bytes(frame(schema_id, schema, from_json_view(kind, value)))
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
    by_id = {schema_id: kind for kind, (schema_id, _) in schemas.items()}
    with tempfile.TemporaryDirectory(prefix="perfstream-fixtures-") as tmp:
        tmp = Path(tmp)
        p1, f1, rust_manifest = rust_to_fastavro(args, schemas, by_id, tmp / "rust")
        p2, f2 = fastavro_to_rust(args, schemas, rust_manifest, tmp / "fastavro")
    print(f"rust->fastavro: {p1} passed, {f1} failed; fastavro->rust (both Rust paths): {p2} passed, {f2} failed")
    passed, failed = p1 + p2, f1 + f2
    print(f"fastavro_roundtrip: {passed} passed, {failed} failed")
    return 0 if failed == 0 and p1 > 0 and p2 > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
