#!/usr/bin/env python3
"""perfstream's job written the way a team would write it quickly: the baseline of issue 13.

confluent-kafka reads the three input topics (batches of `consume`), fastavro decodes each
event (5-byte Confluent header checked, then `schemaless_reader`), plain dicts keyed by
(window start, series key) aggregate it, `hdrhistogram` (module `hdrh`) holds each series'
latencies with the pipeline's layout (1 us .. 1 h, `--sigfig` significant digits), and psycopg
writes the closed windows every `--flush-interval` with COPY into a temporary table plus one
`INSERT .. ON CONFLICT DO UPDATE` per table, then commits the Kafka offsets (at least once; no
exactly-once protocol, no dead-letter topic, one global watermark).

Windows follow docs/truth-format.md: tumbling, aligned to the epoch. The watermark is the largest
event time seen minus `--lateness`; a window is written once the watermark passes its end, and
again whenever a late event changes it, as long as it is within `--horizon` of the watermark.
Windows still open when the topics are read to their end are not written (as in perfstream).

Rows go to the schema `--schema` (created afresh) of `--database-url`, in tables named like
perfstream's (`query_rollups`, `request_rollups`, `resource_rollups`) with the same column names
for the figures compared, plus `progress(watermark)`.

Reads the topics from the beginning to their high watermarks at start-up, then prints one JSON
line: messages, seconds (from the partition assignment to the last commit), rows, undecodable.

    baseline.py --bootstrap HOST:PORT --database-url URL [--schema baseline]
"""

import argparse
import io
import json
import math
import os
import sys
import time
import uuid

import fastavro
import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from hdrh.histogram import HdrHistogram

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ("query", "request", "resource")
# Writer schemas by id (schemas/ids.json): every version of each kind is read; version 2 of
# query and request events (ids 6, 7) adds an optional trace_id the baseline does not use.
SCHEMA_FILES = {
    "query": {1: "query_event.avsc", 6: "query_event_v2.avsc"},
    "request": {2: "request_event.avsc", 7: "request_event_v2.avsc"},
    "resource": {3: "resource_event.avsc"},
}
TIME_FIELD = {"query": "executed_at_us", "request": "occurred_at_us", "resource": "observed_at_us"}
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
PCT_COLS = ("p50_us", "p90_us", "p95_us", "p99_us", "p999_us")
HIST_LOW, HIST_HIGH = 1, 3_600_000_000
# perfstream's resource gauges, in the order of resource_rollups' columns.
GAUGES = (
    "cpu_ppm", "memory_used_bytes", "memory_limit_bytes", "memory_utilization_ppm", "heap_bytes",
    "gc_pause_us", "gc_count", "interval_us", "pool_active", "pool_max", "pool_utilization_ppm",
    "pool_waiters", "pool_wait_us", "io_read_bytes", "io_write_bytes",
)
KEY_COLS = {
    "query": ("service", "query_hash", "query_type"),
    "request": ("service", "endpoint", "method"),
    "resource": ("service", "instance"),
}
FIGURE_COLS = {
    "query": ("count", "sum_us", "min_us", "max_us") + PCT_COLS + ("rows_sum", "rows_max"),
    "request": ("count", "sum_us", "min_us", "max_us") + PCT_COLS
    + ("status_2xx", "status_3xx", "status_4xx", "status_5xx", "status_other"),
    "resource": ("samples",)
    + tuple(f"{g}_{s}" for g in GAUGES for s in ("samples", "sum", "min", "max", "last"))
    + ("cache_hits", "cache_misses"),
}


def load_schemas():
    def strip(node):  # keep timestamps as plain longs
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "logicalType"}
        return [strip(v) for v in node] if isinstance(node, list) else node

    out = {}
    for kind in KINDS:
        out[kind] = {}
        for schema_id, name in SCHEMA_FILES[kind].items():
            with open(os.path.join(ROOT, "schemas", name)) as f:
                out[kind][schema_id] = fastavro.parse_schema(strip(json.load(f)))
    return out


def percentiles(h, lo, hi):
    """HdrHistogram's canonical values at QUANTILES (the target count is the ceiling of q times
    the total, the value the highest equivalent of its bucket), as perfstream computes them;
    hdrh's own `get_value_at_percentile` rounds the target half-up. One pass over the buckets
    between the smallest and the largest value recorded (`lo`, `hi`)."""
    n = h.get_total_count()
    targets = [max(int(math.ceil(q * n)), 1) for q in QUANTILES]
    first = h.get_counts_array_index(lo)
    out, total, t = [], 0, 0
    for offset, c in enumerate(h.counts[first : h.get_counts_array_index(hi) + 1]):
        total += c
        while t < len(targets) and total >= targets[t]:
            out.append(h.get_highest_equivalent_value(h.get_value_from_index(first + offset)))
            t += 1
        if t == len(targets):
            break
    return out


class Latency:
    """count, sum, min, max of the raw values plus their HDR histogram (values clamped into
    1 us .. 1 h as perfstream does)."""

    __slots__ = ("count", "sum", "min", "max", "hist")

    def __init__(self, sigfig):
        self.count, self.sum, self.min, self.max = 0, 0, None, None
        self.hist = HdrHistogram(HIST_LOW, HIST_HIGH, sigfig)

    def record(self, v):
        self.count += 1
        self.sum += v
        self.min = v if self.min is None or v < self.min else self.min
        self.max = v if self.max is None or v > self.max else self.max
        self.hist.record_value(min(max(v, HIST_LOW), HIST_HIGH))

    def figures(self):
        lo, hi = (min(max(v, HIST_LOW), HIST_HIGH) for v in (self.min, self.max))
        return [self.count, self.sum, self.min, self.max] + percentiles(self.hist, lo, hi)


def ppm_of(num, den):
    """num / den in parts per million, rounded half away from zero; None without a denominator."""
    if den == 0:
        return None
    n = num * 1_000_000
    q = (2 * abs(n) + abs(den)) // (2 * abs(den))
    return q if (n >= 0) == (den > 0) else -q


def ratio_ppm(r):
    """round_half_away_from_zero(r * 1e6) (Python's round() is half-even)."""
    x = r * 1e6
    a = abs(x)
    q = math.floor(a) + (1 if a - math.floor(a) >= 0.5 else 0)
    return int(q) if x >= 0 else -int(q)


class Window:
    """One window's series of the three kinds."""

    def __init__(self):
        self.series = {k: {} for k in KINDS}
        self.dirty = True


def record(window, kind, e, sigfig):
    s = window.series[kind]
    if kind == "query":
        key = (e["service"], e["query_hash"], e["query_type"])
        a = s.get(key)
        if a is None:
            a = s[key] = [Latency(sigfig), 0, 0]
        a[0].record(e["execution_time_us"])
        a[1] += e["rows_affected"]
        a[2] = max(a[2], e["rows_affected"])
    elif kind == "request":
        key = (e["service"], e["endpoint"], e["method"])
        a = s.get(key)
        if a is None:
            a = s[key] = [Latency(sigfig), [0, 0, 0, 0, 0]]
        a[0].record(e["response_time_us"])
        c = e["status_code"] // 100
        a[1][c - 2 if 2 <= c <= 5 else 4] += 1
    else:
        key = (e["service"], e["instance"])
        a = s.get(key)
        if a is None:
            # samples, {gauge: [samples, sum, min, max, last, last_at]}, cache hits, misses
            a = s[key] = [0, {}, 0, 0]
        a[0] += 1
        t = e["observed_at_us"]
        values = (
            ratio_ppm(e["cpu_utilization_ratio"]), e["memory_used_bytes"], e["memory_limit_bytes"],
            ppm_of(e["memory_used_bytes"], e["memory_limit_bytes"]), e["heap_bytes"],
            e["gc_pause_us"], e["gc_count"], e["interval_us"], e["pool_active"], e["pool_max"],
            ppm_of(e["pool_active"], e["pool_max"]), e["pool_waiters"], e["pool_wait_us"],
            e["io_read_bytes"], e["io_write_bytes"],
        )
        for name, v in zip(GAUGES, values):
            if v is None:
                continue
            g = a[1].get(name)
            if g is None:
                a[1][name] = [1, v, v, v, v, t]
                continue
            g[0] += 1
            g[1] += v
            g[2] = min(g[2], v)
            g[3] = max(g[3], v)
            if t > g[5] or (t == g[5] and v > g[4]):
                g[4], g[5] = v, t
        for c in (e["caches"] or {}).values():
            a[2] += c["hits"]
            a[3] += c["misses"]


def rows_of(kind, ws, we, series):
    for key, a in series.items():
        if kind == "query":
            figures = a[0].figures() + [a[1], a[2]]
        elif kind == "request":
            figures = a[0].figures() + a[1]
        else:
            figures = [a[0]]
            for name in GAUGES:
                g = a[1].get(name)
                figures += g[:5] if g else [0, 0, None, None, None]
            figures += [a[2], a[3]]
        yield (ws, we) + key + tuple(figures)


def create_schema(conn, schema):
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cur.execute(f"CREATE SCHEMA {schema}")
        for kind in KINDS:
            keys = ", ".join(f"{c} text NOT NULL" for c in KEY_COLS[kind])
            figs = ", ".join(f"{c} bigint" for c in FIGURE_COLS[kind])
            pk = ", ".join(("window_start",) + KEY_COLS[kind])
            cur.execute(
                f"CREATE TABLE {schema}.{kind}_rollups (window_start timestamptz NOT NULL, "
                f"window_end timestamptz NOT NULL, {keys}, {figs}, PRIMARY KEY ({pk}))"
            )
            cur.execute(
                f"CREATE TEMP TABLE staging_{kind} (ws_us bigint, we_us bigint, {keys}, {figs})"
            )
        cur.execute(f"CREATE TABLE {schema}.progress (watermark_us bigint)")
        cur.execute(f"INSERT INTO {schema}.progress VALUES (NULL)")
    conn.commit()


def write(conn, schema, rows_by_kind, watermark_us):
    """One transaction: COPY each kind's rows into its staging table, upsert them, progress."""
    n = 0
    with conn.cursor() as cur:
        for kind, rows in rows_by_kind.items():
            if not rows:
                continue
            cols = ("ws_us", "we_us") + KEY_COLS[kind] + FIGURE_COLS[kind]
            with cur.copy(f"COPY staging_{kind} ({', '.join(cols)}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            target = KEY_COLS[kind] + FIGURE_COLS[kind]
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in FIGURE_COLS[kind])
            pk = ", ".join(("window_start",) + KEY_COLS[kind])
            cur.execute(
                f"INSERT INTO {schema}.{kind}_rollups (window_start, window_end, {', '.join(target)}) "
                f"SELECT to_timestamp(ws_us / 1e6), to_timestamp(we_us / 1e6), {', '.join(target)} "
                f"FROM staging_{kind} ON CONFLICT ({pk}) DO UPDATE SET {sets}"
            )
            cur.execute(f"TRUNCATE staging_{kind}")
            n += len(rows)
        cur.execute(f"UPDATE {schema}.progress SET watermark_us = %s", (watermark_us,))
    conn.commit()
    return n


def end_offsets(consumer, topics):
    remaining = {}
    meta = consumer.list_topics(timeout=30)
    for topic in topics:
        if topic not in meta.topics:
            raise SystemExit(f"error: topic {topic} not found")
        for p in meta.topics[topic].partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if hi > lo:
                remaining[(topic, p)] = (lo, hi)
    return remaining


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--schema", default="baseline")
    ap.add_argument("--topics", default="perf.query,perf.request,perf.resource",
                    help="query, request and resource topics, in that order")
    ap.add_argument("--window-s", type=float, default=60.0)
    ap.add_argument("--lateness-s", type=float, default=5.0)
    ap.add_argument("--horizon-s", type=float, default=3600.0)
    ap.add_argument("--flush-interval-s", type=float, default=0.1)
    ap.add_argument("--sigfig", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    a = ap.parse_args()
    if not a.database_url:
        ap.error("no --database-url and no DATABASE_URL")
    window_us, lateness_us = int(a.window_s * 1e6), int(a.lateness_s * 1e6)
    horizon_us = int(a.horizon_s * 1e6)
    topics = a.topics.split(",")
    kind_of = dict(zip(topics, KINDS))
    schemas = load_schemas()

    conn = psycopg.connect(a.database_url)
    create_schema(conn, a.schema)
    consumer = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "bench-baseline-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": 10,
    })
    bounds = end_offsets(consumer, topics)
    # Messages between each partition's log start and end: the log start is not always 0 (a
    # broker may have deleted the oldest segment), and counting from 0 made a run fail once.
    total = sum(hi - lo for lo, hi in bounds.values())
    remaining = {tp: hi for tp, (lo, hi) in bounds.items()}
    assigned = []
    consumer.subscribe(topics, on_assign=lambda c, ps: assigned.append(time.monotonic()))

    windows = {}  # window start -> Window
    uncommitted = []  # non-empty when messages were consumed since the last offset commit
    watermark = None
    messages = undecodable = rows = 0
    next_flush = time.monotonic() + a.flush_interval_s
    deadline = time.monotonic() + a.timeout_s

    def flush():
        nonlocal windows
        if watermark is None:
            return 0
        out = {k: [] for k in KINDS}
        for ws, w in windows.items():
            if w.dirty and ws + window_us <= watermark:
                for kind in KINDS:
                    out[kind].extend(rows_of(kind, ws, ws + window_us, w.series[kind]))
                w.dirty = False
        n = write(conn, a.schema, out, watermark)
        if uncommitted:
            consumer.commit(asynchronous=False)
            uncommitted.clear()
        # Forget windows beyond the correction horizon.
        windows = {ws: w for ws, w in windows.items() if ws + window_us > watermark - horizon_us}
        return n

    while remaining:
        if time.monotonic() > deadline:
            raise SystemExit(f"error: timed out with {len(remaining)} partitions unread")
        batch = consumer.consume(num_messages=5000, timeout=0.1)
        if batch:
            uncommitted.append(1)
        for msg in batch:
            if msg.error():
                raise KafkaException(msg.error())
            messages += 1
            topic, value = msg.topic(), msg.value()
            tp = (topic, msg.partition())
            if tp in remaining and msg.offset() + 1 >= remaining[tp]:
                del remaining[tp]
            kind = kind_of[topic]
            writer = None
            if value and len(value) >= 5 and value[0] == 0:
                writer = schemas[kind].get(int.from_bytes(value[1:5], "big"))
            if writer is None:
                undecodable += 1
                continue
            try:
                e = fastavro.schemaless_reader(io.BytesIO(value[5:]), writer)
            except Exception:
                undecodable += 1
                continue
            t = e[TIME_FIELD[kind]]
            if watermark is not None and t < watermark - horizon_us:
                continue  # beyond the correction horizon
            ws = t // window_us * window_us
            w = windows.get(ws)
            if w is None:
                w = windows[ws] = Window()
            w.dirty = True
            record(w, kind, e, a.sigfig)
            if watermark is None or t - lateness_us > watermark:
                watermark = t - lateness_us
        if time.monotonic() >= next_flush:
            rows += flush()
            next_flush = time.monotonic() + a.flush_interval_s
    rows += flush()
    end = time.monotonic()
    consumer.close()
    conn.close()
    if not assigned:
        raise SystemExit("error: no assignment seen")
    seconds = end - assigned[0]
    print(json.dumps({
        "messages": messages, "expected": total, "seconds": seconds,
        "messages_per_s": messages / seconds, "rows": rows, "undecodable": undecodable,
        "watermark_us": watermark,
    }))
    return 0 if messages == total else 1


if __name__ == "__main__":
    sys.exit(main())
