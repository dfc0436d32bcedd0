#!/usr/bin/env python3
"""Independent check of a load-generator truth file (docs/truth-format.md).

Reads the three input topics back from the broker with confluent-kafka, decodes every message
with fastavro against schemas/*.avsc (the 5-byte Confluent header skipped and checked),
recomputes the per-window aggregates from the raw events, and compares them with the truth
file exactly. Shares no code with the Rust generator, the Rust codec or perfstream-window, so
it guards all three.

A message counts as malformed when it is empty, shorter than the header, has a magic byte other
than 0 or a schema id that is none of the topic's versions, does not decode, or does not re-encode to the same
bytes (catches silently short reads). Events listed in the truth's too_late section (matched by
topic, event time and key) are counted there and kept out of the aggregates; each must be older
than end_us - horizon - window - lateness.

Exit status: 0 when everything agrees, 1 with a diff when not, 2 on usage or broker errors.

    check_truth.py --bootstrap HOST:PORT --truth out.json --window 60s
"""

import argparse
import io
import json
import math
import os
import sys
import time
import uuid
from collections import Counter, defaultdict

import fastavro
from confluent_kafka import Consumer, KafkaException, TopicPartition

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_IDS = {"query": 1, "request": 2, "resource": 3}
# Every schema version a topic may carry, by schema id (schemas/ids.json): queries and requests
# with a trace id are written in version 2 (ids 6, 7), the others in version 1.
SCHEMA_FILES = {
    "query": {1: "query_event.avsc", 6: "query_event_v2.avsc"},
    "request": {2: "request_event.avsc", 7: "request_event_v2.avsc"},
    "resource": {3: "resource_event.avsc"},
}
QUANTILES = [("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)]


def parse_duration_us(s):
    s = s.strip()
    units = [("ms", 1_000), ("us", 1), ("s", 1_000_000), ("m", 60_000_000), ("h", 3_600_000_000)]
    for suffix, mult in units:
        if s.endswith(suffix) and s[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(round(float(s[: -len(suffix)]) * mult))
    return int(round(float(s) * 1_000_000))


def strip_logical_types(node):
    """Keeps timestamps as plain longs (fastavro would turn them into datetimes)."""
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def load_schemas(schema_dir):
    """{kind: {schema id: parsed schema}}."""
    out = {}
    for kind, versions in SCHEMA_FILES.items():
        out[kind] = {}
        for schema_id, name in versions.items():
            with open(os.path.join(schema_dir, name)) as f:
                out[kind][schema_id] = fastavro.parse_schema(strip_logical_types(json.load(f)))
    return out


def decode(value, kind, schemas):
    """The event dict, or None when the message is malformed."""
    if value is None or len(value) < 5 or value[0] != 0:
        return None
    schema = schemas[kind].get(int.from_bytes(value[1:5], "big"))
    if schema is None:
        return None
    body = value[5:]
    fo = io.BytesIO(body)
    try:
        rec = fastavro.schemaless_reader(fo, schema)
    except Exception:
        return None
    if fo.tell() != len(body):
        return None
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, schema, rec)
    except Exception:
        return None
    if out.getvalue() != body:
        return None
    return rec


def read_topics(bootstrap, topics, deadline_s):
    """All messages of `topics` up to their high watermarks: {kind: [(partition, offset, value)]}."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "check-truth-" + uuid.uuid4().hex,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.queue.backoff.ms": 10,
            "enable.partition.eof": False,
        }
    )
    try:
        meta = consumer.list_topics(timeout=30)
        assignment, remaining = [], {}
        for kind, topic in topics.items():
            if topic not in meta.topics or meta.topics[topic].error is not None:
                raise SystemExit(f"error: topic {topic} not found on {bootstrap}")
            for p in meta.topics[topic].partitions:
                lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                if hi > lo:
                    assignment.append(TopicPartition(topic, p, lo))
                    remaining[(topic, p)] = hi
        by_topic = {t: k for k, t in topics.items()}
        out = {k: [] for k in topics}
        if not assignment:
            return out
        consumer.assign(assignment)
        until = time.monotonic() + deadline_s
        while remaining:
            if time.monotonic() > until:
                raise SystemExit(f"error: timed out reading topics; partitions left: {sorted(remaining)}")
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                if msg.error():
                    raise KafkaException(msg.error())
                tp = (msg.topic(), msg.partition())
                if tp not in remaining:
                    continue
                out[by_topic[msg.topic()]].append((msg.partition(), msg.offset(), msg.value()))
                if msg.offset() + 1 >= remaining[tp]:
                    del remaining[tp]
        return out
    finally:
        consumer.close()


def dist(values):
    values.sort()
    n = len(values)
    d = {"count": n, "sum": sum(values), "min": values[0], "max": values[-1]}
    for name, q in QUANTILES:
        rank = min(max(1, math.ceil(q * float(n))), n)
        d[name] = values[rank - 1]
    return d


def gauge(samples):
    """samples: [(event_time, value or None)] in canonical order (event time, then offset).
    last = value at the latest time, ties broken by the larger value; sum in canonical order."""
    samples = [(t, v) for t, v in samples if v is not None]
    if not samples:
        return None
    last_at, last = samples[0]
    total = samples[0][1]
    for t, v in samples[1:]:
        if t > last_at or (t == last_at and v > last):
            last_at, last = t, v
        total = total + v
    values = [v for _, v in samples]
    return {"count": len(values), "min": min(values), "max": max(values), "last": last, "sum": total}


def ppm_of(num, den):
    """num / den in parts per million, rounded half away from zero, exactly."""
    n = num * 1_000_000
    q = (2 * abs(n) + den) // (2 * den)
    return q if n >= 0 else -q


def ratio_ppm(r):
    """round_half_away_from_zero(r * 1e6) in IEEE double (Python's round() is half-even)."""
    x = r * 1e6
    a = abs(x)
    f = math.floor(a)
    q = f + (1 if a - f >= 0.5 else 0)
    return int(q) if x >= 0 else -int(q)


def labels_of(kind, e):
    if kind == "query":
        return {"service": e["service"], "query_hash": e["query_hash"], "query_type": e["query_type"]}
    if kind == "request":
        return {"service": e["service"], "endpoint": e["endpoint"], "method": e["method"]}
    return {"service": e["service"], "instance": e["instance"]}


TIME_FIELD = {"query": "executed_at_us", "request": "occurred_at_us", "resource": "observed_at_us"}


def recompute(truth, messages, schemas, window_us):
    params = truth["params"]
    topics = {k: params["topics"][k] for k in SCHEMA_IDS}
    too_late_expected = Counter(
        (e["topic"], e["event_time_us"], tuple(sorted(e["labels"].items()))) for e in truth["too_late"]["events"]
    )
    horizon_edge = params["end_us"] - params["correction_horizon_us"] - params["window_us"] - params["allowed_lateness_us"]
    problems = []
    malformed = Counter()
    too_late = []
    aggregated = Counter()
    queries, requests, resources = defaultdict(list), defaultdict(list), defaultdict(list)
    total = 0
    for kind, msgs in messages.items():
        topic = topics[kind]
        for partition, offset, value in msgs:
            total += 1
            e = decode(value, kind, schemas)
            if e is None:
                malformed[topic] += 1
                continue
            t = e[TIME_FIELD[kind]]
            lk = tuple(sorted(labels_of(kind, e).items()))
            if too_late_expected[(topic, t, lk)] > 0:
                too_late_expected[(topic, t, lk)] -= 1
                too_late.append({"topic": topic, "event_time_us": t, "labels": dict(lk)})
                if t >= horizon_edge:
                    problems.append(f"too-late event at {t} is not beyond the horizon (edge {horizon_edge})")
                continue
            aggregated[kind] += 1
            ws = t // window_us * window_us
            if kind == "query":
                queries[(ws, e["service"], e["query_hash"], e["query_type"])].append(e)
            elif kind == "request":
                requests[(ws, e["service"], e["endpoint"], e["method"])].append(e)
            else:
                resources[(ws, e["service"], e["instance"])].append((t, partition, offset, e))
    missing = +too_late_expected
    if missing:
        problems.append(f"too-late events listed in the truth but not on the topics: {sorted(missing)[:5]}")

    query_rows = []
    for (ws, service, qh, qt), evs in sorted(queries.items()):
        rows = [e["rows_affected"] for e in evs]
        query_rows.append(
            {
                "window_start_us": ws,
                "window_end_us": ws + window_us,
                "service": service,
                "query_hash": qh,
                "query_type": qt,
                "execution_time_us": dist([e["execution_time_us"] for e in evs]),
                "rows_affected_sum": sum(rows),
                "rows_affected_max": max(rows),
            }
        )
    request_rows = []
    for (ws, service, ep, method), evs in sorted(requests.items()):
        status = {f"{c}xx": 0 for c in range(1, 6)}
        for e in evs:
            status[f"{min(max(e['status_code'] // 100, 1), 5)}xx"] += 1
        request_rows.append(
            {
                "window_start_us": ws,
                "window_end_us": ws + window_us,
                "service": service,
                "endpoint": ep,
                "method": method,
                "response_time_us": dist([e["response_time_us"] for e in evs]),
                "status": status,
            }
        )
    resource_rows = []
    for (ws, service, instance), samples in sorted(resources.items()):
        samples.sort(key=lambda s: (s[0], s[1], s[2]))
        evs = [s[3] for s in samples]
        caches = {}
        for e in evs:
            for name, c in (e["caches"] or {}).items():
                acc = caches.setdefault(name, {"hits": 0, "misses": 0})
                acc["hits"] += c["hits"]
                acc["misses"] += c["misses"]
        g = lambda f: gauge([(e["observed_at_us"], f(e)) for e in evs])  # noqa: E731
        resource_rows.append(
            {
                "window_start_us": ws,
                "window_end_us": ws + window_us,
                "service": service,
                "instance": instance,
                "count": len(evs),
                "cpu_utilization_ratio": g(lambda e: e["cpu_utilization_ratio"]),
                "cpu_utilization_ppm": g(lambda e: ratio_ppm(e["cpu_utilization_ratio"])),
                "memory_used_bytes": g(lambda e: e["memory_used_bytes"]),
                "memory_limit_bytes": g(lambda e: e["memory_limit_bytes"]),
                "memory_utilization_ratio": g(lambda e: e["memory_used_bytes"] / e["memory_limit_bytes"]),
                "memory_utilization_ppm": g(lambda e: ppm_of(e["memory_used_bytes"], e["memory_limit_bytes"])),
                "heap_bytes": g(lambda e: e["heap_bytes"]),
                "gc_pause_us": g(lambda e: e["gc_pause_us"]),
                "gc_count": g(lambda e: e["gc_count"]),
                "interval_us": g(lambda e: e["interval_us"]),
                "io_read_bytes": g(lambda e: e["io_read_bytes"]),
                "io_write_bytes": g(lambda e: e["io_write_bytes"]),
                "pool_active": g(lambda e: e["pool_active"]),
                "pool_idle": g(lambda e: e["pool_idle"]),
                "pool_max": g(lambda e: e["pool_max"]),
                "pool_utilization_ratio": g(lambda e: e["pool_active"] / e["pool_max"]),
                "pool_utilization_ppm": g(lambda e: ppm_of(e["pool_active"], e["pool_max"])),
                "pool_waiters": g(lambda e: e["pool_waiters"]),
                "pool_wait_us": g(lambda e: e["pool_wait_us"]),
                "caches": caches,
                "cache_hits": sum(c["hits"] for c in caches.values()),
                "cache_misses": sum(c["misses"] for c in caches.values()),
            }
        )
    return {
        "total": total,
        "malformed": {"count": sum(malformed.values()), "by_topic": dict(malformed)},
        "too_late": sorted(too_late, key=lambda e: (e["topic"], e["event_time_us"], sorted(e["labels"].items()))),
        "aggregated": dict(aggregated),
        "query": query_rows,
        "request": request_rows,
        "resource": resource_rows,
        "problems": problems,
    }


def row_key(kind, row):
    fields = {"query": ("service", "query_hash", "query_type"), "request": ("service", "endpoint", "method"), "resource": ("service", "instance")}[kind]
    return (row["window_start_us"],) + tuple(row[f] for f in fields)


def compare(truth, got, max_diffs=20):
    diffs = list(got["problems"])
    t_total = truth["totals"]["acknowledged"]
    if got["total"] != t_total:
        diffs.append(f"messages on the topics: {got['total']}, acknowledged in the truth: {t_total}")
    if got["malformed"]["count"] != truth["malformed"]["count"]:
        diffs.append(f"malformed: topics {got['malformed']['count']}, truth {truth['malformed']['count']}")
    if got["malformed"]["by_topic"] != truth["malformed"]["by_topic"]:
        diffs.append(f"malformed by topic: topics {got['malformed']['by_topic']}, truth {truth['malformed']['by_topic']}")
    if len(got["too_late"]) != truth["too_late"]["count"]:
        diffs.append(f"too-late: topics {len(got['too_late'])}, truth {truth['too_late']['count']}")
    if got["aggregated"] != truth["totals"]["aggregated"]:
        diffs.append(f"aggregated events: topics {got['aggregated']}, truth {truth['totals']['aggregated']}")
    for kind in ("query", "request", "resource"):
        mine = {row_key(kind, r): r for r in got[kind]}
        theirs = {row_key(kind, r): r for r in truth[kind]}
        for k in sorted(set(mine) | set(theirs), key=repr):
            a, b = mine.get(k), theirs.get(k)
            if a == b:
                continue
            if a is None:
                diffs.append(f"{kind} {k}: in the truth, not on the topics")
            elif b is None:
                diffs.append(f"{kind} {k}: on the topics, not in the truth")
            else:
                fields = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
                detail = "; ".join(f"{f}: topics {a.get(f)!r} truth {b.get(f)!r}" for f in fields)
                diffs.append(f"{kind} {k}: {detail}")
    if len(diffs) > max_diffs:
        diffs = diffs[:max_diffs] + [f"... and {len(diffs) - max_diffs} more differences"]
    return diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    ap.add_argument("--truth", required=True, help="truth file written by perfstream emit --truth")
    ap.add_argument("--window", required=True, help="window size (e.g. 60s, 10s); must match the run's")
    ap.add_argument("--schemas", default=os.path.join(ROOT, "schemas"), help="folder of the .avsc files")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for reading the topics")
    args = ap.parse_args(argv)

    with open(args.truth) as f:
        truth = json.load(f)
    if truth.get("format") != "perfstream-truth/1":
        print(f"error: {args.truth} is not a perfstream-truth/1 file", file=sys.stderr)
        return 2
    window_us = parse_duration_us(args.window)
    if window_us != truth["params"]["window_us"]:
        print(
            f"error: --window is {window_us} us but the truth was computed with {truth['params']['window_us']} us",
            file=sys.stderr,
        )
        return 2
    schemas = load_schemas(args.schemas)
    topics = {k: truth["params"]["topics"][k] for k in SCHEMA_IDS}
    started = time.monotonic()
    messages = read_topics(args.bootstrap, topics, args.timeout)
    got = recompute(truth, messages, schemas, window_us)
    diffs = compare(truth, got)
    elapsed = time.monotonic() - started
    rows = sum(len(got[k]) for k in ("query", "request", "resource"))
    if diffs:
        print(f"check_truth: DISAGREE ({len(diffs)} differences)", file=sys.stderr)
        if truth["totals"]["failed"]:
            print(
                f"  note: {truth['totals']['failed']} messages were not acknowledged; a message whose "
                "acknowledgement was lost can still be on a topic, so only runs with failed = 0 compare exactly",
                file=sys.stderr,
            )
        for d in diffs:
            print("  " + d, file=sys.stderr)
        return 1
    print(
        f"check_truth: agree: {got['total']} messages, {rows} rows, {got['malformed']['count']} malformed, "
        f"{len(got['too_late'])} too late ({elapsed:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
