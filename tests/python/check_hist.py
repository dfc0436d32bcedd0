#!/usr/bin/env python3
"""Independent check of perfstream's stored histograms.

Reads rollup rows from Postgres (through `psql`, so no Python database driver is needed),
decodes each `hist` (HdrHistogram V2 compressed bytes, sent as base64) with the Python
`hdrhistogram` package (module `hdrh`), an implementation independent of the Rust crate that
wrote them, and checks that

  * the histogram's total count equals the row's `count`, and
  * p50/p90/p95/p99/p99.9 computed from the decoded counts equal the stored
    p50_us .. p999_us columns.

Percentile definition: the canonical HdrHistogram one (Java and Rust): the value at quantile q
is the highest value equivalent to the first bucket where the running count reaches
ceil(q * total_count) (at least 1). Python `hdrh`'s own get_value_at_percentile rounds the
target count half-up instead of taking the ceiling, so it can differ by one bucket on small
counts; the script walks the decoded buckets itself with hdrh's index/value functions, and
reports (without failing) how often hdrh's own method disagrees.

Usage:
  .venv/bin/python tests/python/check_hist.py [--database-url URL] [--table query|request|all]
                                              [--resolution RES] [--limit N]
DATABASE_URL is used when --database-url is absent. Exit status 0 when every row checked
matches and at least one row was checked (--allow-empty to accept none), 1 on mismatches,
2 on usage or connection errors.
"""

import argparse
import math
import os
import subprocess
import sys

from hdrh.histogram import HdrHistogram

QUANTILES = [(0.50, "p50_us"), (0.90, "p90_us"), (0.95, "p95_us"), (0.99, "p99_us"), (0.999, "p999_us")]
KEYS = {
    "query": "service || '/' || query_hash || '/' || query_type || '/' || tenant_id",
    "request": "service || ' ' || method || ' ' || endpoint",
}


def fetch(url, table, resolution, limit):
    cols = ", ".join(c for _, c in QUANTILES)
    where = "WHERE resolution = :'res'" if resolution else ""
    sql = (
        f"SELECT resolution, window_start, {KEYS[table]}, count, {cols}, "
        f"translate(encode(hist, 'base64'), E'\\n', '') "
        f"FROM {table}_rollups {where} ORDER BY window_start DESC LIMIT {int(limit)}"
    )
    cmd = ["psql", url, "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    if resolution:
        cmd += ["-v", f"res={resolution}"]
    out = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(f"psql failed: {out.stderr}")
        sys.exit(2)
    for line in out.stdout.splitlines():
        f = line.split("\t")
        yield f[0], f[1], f[2], int(f[3]), [int(v) for v in f[4:9]], f[9]


def canonical_value_at(h, q):
    """HdrHistogram's value at quantile q (ceil of the target count), from decoded buckets."""
    target = max(int(math.ceil(q * h.get_total_count())), 1)
    total = 0
    for index in range(h.counts_len):
        total += h.get_count_at_index(index)
        if total >= target:
            return h.get_highest_equivalent_value(h.get_value_from_index(index))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--table", choices=["query", "request", "all"], default="all")
    ap.add_argument("--resolution", help="only rows of this resolution ('1m', '1h', '1d')")
    ap.add_argument("--limit", type=int, default=10000, help="rows per table, newest first")
    ap.add_argument("--allow-empty", action="store_true")
    a = ap.parse_args()
    if not a.database_url:
        ap.error("no --database-url and no DATABASE_URL")
    tables = ["query", "request"] if a.table == "all" else [a.table]
    checked = bad = hdrh_disagrees = 0
    for table in tables:
        for res, ws, key, count, stored, b64 in fetch(a.database_url, table, a.resolution, a.limit):
            checked += 1
            h = HdrHistogram.decode(b64)
            got = [canonical_value_at(h, q) for q, _ in QUANTILES]
            problems = []
            if h.get_total_count() != count:
                problems.append(f"total_count {h.get_total_count()} != count {count}")
            for (q, col), g, s in zip(QUANTILES, got, stored):
                if g != s:
                    problems.append(f"{col}: decoded {g} != stored {s}")
                if h.get_value_at_percentile(q * 100) != s:
                    hdrh_disagrees += 1
            if problems:
                bad += 1
                print(f"MISMATCH {table} {res} {ws} {key}: " + "; ".join(problems))
    print(
        f"checked {checked} rows, {bad} mismatches "
        f"({hdrh_disagrees} percentiles where hdrh's half-up rounding differs, not counted)"
    )
    if bad:
        return 1
    if checked == 0 and not a.allow_empty:
        print("no rows to check (use --allow-empty to accept)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
