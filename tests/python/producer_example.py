#!/usr/bin/env python3
"""perfstream producer example: how a Python service emits performance events.

Encodes query, request and resource events with fastavro in the Confluent wire format
(magic byte 0, 4-byte big-endian schema id, Avro binary body) using perfstream's static schema
ids (schemas/ids.json), and produces them with confluent-kafka to perf.query, perf.request and
perf.resource, keyed by the series key so one series always lands in one partition.

    python tests/python/producer_example.py --bootstrap 127.0.0.1:9092 --count 1000

Prints one summary line and exits 0 when every message was acknowledged. With --manifest FILE
it also writes one JSON line per produced event (topic, kind, key_hex, value in the JSON view of
perfstream_events::json), so a consumer can check what it decodes field by field.
See docs/producers.md.
"""

import argparse
import io
import json
import random
import struct
import sys
import time
from pathlib import Path

import fastavro

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"

# Static schema ids and topics; schemas/ids.json is the source of the ids. Queries and requests
# use version 2 of their schema (ids 6, 7: version 1 plus an optional trace_id).
KINDS = {
    "query": {"file": "query_event_v2.avsc", "topic": "perf.query"},
    "request": {"file": "request_event_v2.avsc", "topic": "perf.request"},
    "resource": {"file": "resource_event.avsc", "topic": "perf.resource"},
    "alert": {"file": "alert_event.avsc", "topic": "perf.alerts"},
    "dead_letter": {"file": "dead_letter.avsc", "topic": "perf.dlq"},
}


def load_schemas(schemas_dir=SCHEMAS_DIR):
    """{kind: (schema_id, parsed schema)} from the .avsc files and ids.json."""
    ids = json.loads((schemas_dir / "ids.json").read_text())
    id_of_file = {f: int(i) for i, f in ids.items() if not i.startswith("_")}
    out = {}
    for kind, k in KINDS.items():
        schema = fastavro.parse_schema(json.loads((schemas_dir / k["file"]).read_text()))
        out[kind] = (id_of_file[k["file"]], schema)
    return out


def frame(schema_id, schema, record):
    """One Kafka message value: Confluent header + Avro binary body."""
    buf = io.BytesIO()
    buf.write(b"\x00")
    buf.write(struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def series_key(kind, record):
    """The Kafka key: the series' fields joined by NUL (see docs/producers.md)."""
    fields = {
        "query": ("service", "query_hash"),
        "request": ("service", "endpoint", "method"),
        "resource": ("service", "instance"),
    }[kind]
    return "\0".join(record[f] for f in fields).encode("utf-8")


def now_us():
    return time.time_ns() // 1000


def trace_id(rng):
    """A W3C trace id (32 lowercase hex digits) for half the events, None for the others."""
    return rng.choice([None, f"{rng.getrandbits(128) | 1:032x}"])


def make_event(kind, rng, t_us):
    """A plausible event of `kind` at event time t_us (microseconds since the epoch, UTC)."""
    service = rng.choice(["campaign-api", "domain-gen", "ingest-worker"])
    instance = f"{service}-{rng.randrange(3)}"
    if kind == "query":
        qtype = rng.choice(["select", "insert", "update", "delete", "other"])
        return {
            "service": service,
            "instance": instance,
            "query_hash": f"{rng.randrange(50):016x}",
            "query_type": qtype,
            "query_text": rng.choice([None, f"{qtype.upper()} ... WHERE id = $1"]),
            "execution_time_us": int(rng.lognormvariate(7, 1)),
            "rows_affected": rng.randrange(100),
            "tenant_id": rng.choice([None, f"tenant-{rng.randrange(10)}"]),
            "executed_at_us": t_us,
            "trace_id": trace_id(rng),
        }
    if kind == "request":
        return {
            "service": service,
            "instance": instance,
            "endpoint": rng.choice(["/campaigns/{id}", "/campaigns", "/domains/{id}/status"]),
            "method": rng.choice(["GET", "POST"]),
            "status_code": rng.choice([200, 200, 200, 201, 404, 500]),
            "response_time_us": int(rng.lognormvariate(9, 1)),
            "request_bytes": rng.choice([None, rng.randrange(10_000)]),
            "response_bytes": rng.randrange(100_000),
            "occurred_at_us": t_us,
            "trace_id": trace_id(rng),
        }
    if kind == "resource":
        return {
            "service": service,
            "instance": instance,
            "observed_at_us": t_us,
            "interval_us": 10_000_000,
            "cpu_utilization_ratio": round(rng.random(), 6),
            "memory_used_bytes": rng.randrange(1 << 30),
            "memory_limit_bytes": 1 << 30,
            "heap_bytes": rng.choice([None, rng.randrange(1 << 29)]),
            "gc_pause_us": rng.choice([None, rng.randrange(50_000)]),
            "gc_count": rng.choice([None, rng.randrange(10)]),
            "io_read_bytes": rng.randrange(1 << 24),
            "io_write_bytes": rng.randrange(1 << 24),
            "pool_active": rng.randrange(20),
            "pool_idle": rng.randrange(5),
            "pool_max": 20,
            "pool_waiters": rng.randrange(3),
            "pool_wait_us": rng.randrange(100_000),
            "caches": rng.choice([
                None,
                {"domains": {"hits": rng.randrange(1000), "misses": rng.randrange(100)}},
            ]),
        }
    raise ValueError(f"not an input kind: {kind}")


def json_view(value):
    """The JSON view perfstream_events::json uses: bytes as lowercase hex, the rest as is."""
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: json_view(v) for k, v in value.items()}
    return value


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port")
    p.add_argument("--count", type=int, default=1000, help="events to produce, spread over the three kinds")
    p.add_argument("--seed", type=int, default=1, help="random seed (events are reproducible, times are now)")
    p.add_argument("--manifest", type=Path, help="write one JSON line per produced event here")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for acknowledgements")
    args = p.parse_args()

    # Imported here so the helpers above work without the Kafka client (fastavro_roundtrip.py).
    from confluent_kafka import Producer

    schemas = load_schemas()
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(args.timeout * 1000),
    })
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    rng = random.Random(args.seed)
    counts = {"query": 0, "request": 0, "resource": 0}
    manifest = args.manifest.open("w") if args.manifest else None
    start = time.monotonic()
    for i in range(args.count):
        kind = ("query", "request", "resource")[i % 3]
        schema_id, schema = schemas[kind]
        # Event time a little in the past, as a real emitter's would be.
        record = make_event(kind, rng, now_us() - rng.randrange(2_000_000))
        key = series_key(kind, record)
        topic = KINDS[kind]["topic"]
        while True:
            try:
                producer.produce(topic, key=key, value=frame(schema_id, schema, record), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: serve deliveries, then retry
        producer.poll(0)
        counts[kind] += 1
        if manifest:
            manifest.write(json.dumps({"topic": topic, "kind": kind, "key_hex": key.hex(), "value": json_view(record)}) + "\n")
    remaining = producer.flush(args.timeout)
    if manifest:
        manifest.close()
    elapsed = time.monotonic() - start
    failed = len(failures) + remaining
    print(
        f"produced {args.count - failed} of {args.count} events "
        f"(query {counts['query']}, request {counts['request']}, resource {counts['resource']}) "
        f"to {args.bootstrap} in {elapsed:.2f} s, {failed} failed"
        + (f": {failures[0]}" if failures else "")
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
