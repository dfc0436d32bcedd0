#!/usr/bin/env python3
"""Watches a running `perfstream run` through its Postgres tables (polls every `--poll-ms`).

`progress`: the end-to-end interval. Starts the clock when the first partition is claimed (a row
in `consumer_offsets`: the group join is over) and stops it when the committed
`applied_through_offset` of every partition adds up to `--total` (each partition read from
offset 0 to its end and that progress committed with the rollups): `seconds`. Then waits until
the committed watermark reaches `--watermark-us` (every window that can close is written; empty
partitions hold it back until the pipeline's idle timeout): `closed_written_seconds`. Prints
one JSON line.

`freshness`: records when the pipeline first claimed partitions and, for every base-tier window,
the first poll at which its rows were visible, and how many rows (series) each window got; run it while a paced producer feeds a live
pipeline, stop it with SIGTERM or `--duration-s`; prints one JSON line with the raw samples
(`{window_start_us: first_seen_us}`) and the row counts.

    watch.py progress --database-url URL --total N [--group perfstream] [--timeout-s 600]
    watch.py freshness --database-url URL --duration-s S
"""

import argparse
import json
import signal
import sys
import time

import psycopg


def progress(a, cur):
    deadline = time.monotonic() + a.timeout_s
    t0 = t_read = None
    done = 0
    while True:
        if time.monotonic() > deadline:
            raise SystemExit(f"error: progress reached {done} of {a.total} before the deadline")
        try:
            cur.execute(
                "SELECT count(*), coalesce(sum(applied_through_offset), 0),"
                " coalesce(extract(epoch FROM min(applied_watermark)) * 1e6, 0)::bigint"
                " FROM consumer_offsets WHERE group_id = %s",
                (a.group,),
            )
            claimed, done, watermark_us = cur.fetchone()
        except psycopg.errors.UndefinedTable:  # not migrated yet
            claimed = 0
        now = time.time()
        if claimed and t0 is None:
            t0 = now
        if t0 is not None and done >= a.total and t_read is None:
            t_read = now
        if t_read is not None and watermark_us >= a.watermark_us:
            print(json.dumps({
                "start": t0, "end": t_read, "seconds": t_read - t0, "messages": int(done),
                "closed_written_seconds": now - t0, "watermark_us": watermark_us,
            }))
            return 0
        time.sleep(a.poll_ms / 1000)


TABLES = ("query_rollups", "request_rollups", "resource_rollups")


def freshness(a, cur):
    """First-seen wall time of each base-tier window, over the three tables. Each poll reads only
    the windows after the newest one seen (a range of the primary key), so polling stays cheap
    for Postgres however many rows the run writes; a window's rows arrive in one flush."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    deadline = time.monotonic() + a.duration_s
    first_seen, claimed_us = {}, None
    newest = {t: 0 for t in TABLES}
    while not stop and time.monotonic() < deadline:
        try:
            if claimed_us is None:
                cur.execute("SELECT count(*) FROM consumer_offsets")
                if cur.fetchone()[0]:
                    claimed_us = int(time.time() * 1e6)
            seen = []
            for t in TABLES:
                cur.execute(
                    f"SELECT DISTINCT (extract(epoch FROM window_start) * 1e6)::bigint FROM {t}"
                    " WHERE resolution = %s AND window_start > to_timestamp(%s / 1e6)",
                    (a.resolution, newest[t]),
                )
                seen += [(t, w) for (w,) in cur.fetchall()]
        except psycopg.errors.UndefinedTable:  # not migrated yet
            time.sleep(a.poll_ms / 1000)
            continue
        now_us = int(time.time() * 1e6)
        for t, w in seen:
            first_seen.setdefault(w, now_us)
            newest[t] = max(newest[t], w)
        time.sleep(a.poll_ms / 1000)
    # Rows (series) per window, counted once at the end.
    rows = {}
    for t in TABLES:
        cur.execute(
            f"SELECT (extract(epoch FROM window_start) * 1e6)::bigint, count(*) FROM {t}"
            " WHERE resolution = %s GROUP BY 1",
            (a.resolution,),
        )
        for w, n in cur.fetchall():
            rows[w] = rows.get(w, 0) + n
    print(json.dumps({"claimed_us": claimed_us, "first_seen_us": first_seen, "rows": rows}))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("progress")
    p.add_argument("--total", type=int, required=True)
    p.add_argument("--group", default="perfstream")
    p.add_argument("--watermark-us", type=int, default=0,
                   help="also wait until the committed watermark reaches this (windows closed and written)")
    p.add_argument("--timeout-s", type=float, default=1800)
    f = sub.add_parser("freshness")
    f.add_argument("--duration-s", type=float, default=3600)
    f.add_argument("--resolution", default="1s")
    for s in (p, f):
        s.add_argument("--database-url", required=True)
        s.add_argument("--poll-ms", type=float, default=10)
    a = ap.parse_args()
    with psycopg.connect(a.database_url, autocommit=True) as conn:
        cur = conn.cursor()
        return progress(a, cur) if a.cmd == "progress" else freshness(a, cur)


if __name__ == "__main__":
    sys.exit(main())
