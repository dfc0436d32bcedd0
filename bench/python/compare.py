#!/usr/bin/env python3
"""Checks that the baseline's rollups equal perfstream's, row by row.

Compares every window both sides had closed at the end of their runs (window end at or before
the smaller of perfstream's lowest committed `applied_watermark` and the baseline's watermark),
for the three kinds: the same set of (window, key) rows; count, sum, min, max, rows, status
counts and every resource gauge's samples, sum, min, max and last exactly; the percentiles
p50..p99.9 within the HDR precision (|a - b| <= max(a, b) * 10^-sigfig, both sides being
HDR readings of the same values). perfstream's rows are its base tier (`--resolution`).

Prints a one-line JSON summary; exit status 0 when everything agrees and rows were compared,
1 with the first differences on stderr otherwise.

    compare.py --database-url URL [--schema baseline] [--resolution 1m] [--sigfig 2]
"""

import argparse
import json
import os
import sys

import psycopg

from baseline import FIGURE_COLS, KEY_COLS, KINDS, PCT_COLS


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--schema", default="baseline")
    ap.add_argument("--resolution", default="1m")
    ap.add_argument("--sigfig", type=int, default=2)
    ap.add_argument("--group", default="perfstream", help="perfstream's consumer group")
    ap.add_argument("--closed-us", type=int, default=0,
                    help="fail unless both sides closed every window ending at or before this")
    a = ap.parse_args()
    conn = psycopg.connect(a.database_url)
    cur = conn.cursor()
    cur.execute(
        "SELECT to_timestamp(least(extract(epoch FROM min(o.applied_watermark)) * 1e6, "
        f"(SELECT watermark_us FROM {a.schema}.progress)) / 1e6) "
        "FROM consumer_offsets o WHERE o.group_id = %s",
        (a.group,),
    )
    (cutoff,) = cur.fetchone()
    if cutoff is None:
        print("compare: no watermark on one side (nothing flushed)", file=sys.stderr)
        return 1
    if cutoff.timestamp() * 1e6 < a.closed_us:
        print(f"compare: windows up to {a.closed_us} us should be closed; one side is at {cutoff}", file=sys.stderr)
        return 1
    diffs, summary = [], {"cutoff": cutoff.isoformat()}
    for kind in KINDS:
        keys = ("window_start",) + KEY_COLS[kind]
        figs = FIGURE_COLS[kind]
        exact = [c for c in figs if c not in PCT_COLS]
        on = " AND ".join(f"p.{k} = b.{k}" for k in keys)
        present = (
            "p.window_start IS NULL AS only_baseline, b.window_start IS NULL AS only_perfstream"
        )
        exact_bad = " OR ".join(f"p.{c} IS DISTINCT FROM b.{c}" for c in exact)
        tol = 10.0 ** -a.sigfig
        pct_bad = " OR ".join(
            f"abs(p.{c} - b.{c}) > greatest(p.{c}, b.{c}) * {tol}" for c in PCT_COLS if c in figs
        ) or "false"
        pct_equal = " + ".join(f"(p.{c} = b.{c})::int" for c in PCT_COLS if c in figs) or "0"
        sel = ", ".join(f"coalesce(p.{k}, b.{k})::text" for k in keys)
        cur.execute(
            f"""
            WITH p AS (SELECT * FROM {kind}_rollups WHERE resolution = %(res)s AND window_end <= %(cut)s),
                 b AS (SELECT * FROM {a.schema}.{kind}_rollups WHERE window_end <= %(cut)s)
            SELECT {sel}, {present}, ({exact_bad}) AS exact_bad, ({pct_bad}) AS pct_bad,
                   ({pct_equal}) AS pct_equal, coalesce(p.{figs[0]}, 0), coalesce(b.{figs[0]}, 0)
            FROM p FULL JOIN b ON {on}
            """,
            {"res": a.resolution, "cut": cutoff},
        )
        rows = cur.fetchall()
        n_keys = len(keys)
        stats = {"rows": len(rows), "events": 0, "percentiles_equal": 0, "percentiles": 0}
        for r in rows:
            key, (only_b, only_p, exact_bad, pct_bad, pct_equal, count_p, count_b) = r[:n_keys], r[n_keys:]
            stats["events"] += count_p
            if only_b or only_p:
                diffs.append(f"{kind} {key}: only in {'the baseline' if only_b else 'perfstream'}")
            elif exact_bad or pct_bad:
                diffs.append(f"{kind} {key}: figures differ ({'exact' if exact_bad else 'percentiles'})")
            else:
                stats["percentiles_equal"] += pct_equal
                stats["percentiles"] += sum(1 for c in PCT_COLS if c in figs)
        summary[kind] = stats
    if diffs:
        print(f"compare: DISAGREE ({len(diffs)} rows differ)", file=sys.stderr)
        for d in diffs[:20]:
            print("  " + d, file=sys.stderr)
        print(json.dumps(summary))
        return 1
    if sum(summary[k]["rows"] for k in KINDS) == 0:
        print("compare: no closed windows to compare", file=sys.stderr)
        print(json.dumps(summary))
        return 1
    summary["agree"] = True
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
