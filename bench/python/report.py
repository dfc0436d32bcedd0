#!/usr/bin/env python3
"""The report of scripts/bench-throughput.sh: reads the run's files in `--work` and prints a
Markdown block (the table appended to BENCHMARKS.md, "Throughput side by side").

Files read: raw.json, perfstream.json, baseline.json (each stage's messages and seconds),
compare.json, fresh.json (first-seen times of each window's rows), *.time (`/usr/bin/time -v` of
each process: peak RSS, user + system CPU), load.txt (load average at each stage), emit logs.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys


def time_v(path):
    """Peak RSS (MiB) and CPU seconds (user + system) from `/usr/bin/time -v` output."""
    text = open(path).read()

    def num(label):
        m = re.search(re.escape(label) + r":\s*([0-9.]+)", text)
        return float(m.group(1)) if m else float("nan")

    return num("Maximum resident set size (kbytes)") / 1024, num("User time (seconds)") + num(
        "System time (seconds)"
    )


def nearest_rank(values, q):
    v = sorted(values)
    return v[max(1, math.ceil(q * len(v))) - 1]


def versions(bin_path):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return "?"

    import confluent_kafka
    import fastavro
    import hdrh
    import psycopg

    return {
        "perfstream": out(["git", "rev-parse", "--short", "HEAD"])
        + (" (uncommitted changes)" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""),
        "rustc": out(["rustc", "--version"]).replace("rustc ", ""),
        "librdkafka": confluent_kafka.libversion()[0],
        "python": platform.python_version(),
        "confluent-kafka": confluent_kafka.__version__,
        "fastavro": fastavro.__version__,
        "hdrhistogram": getattr(hdrh, "__version__", "0.10.8"),
        "psycopg": psycopg.__version__,
    }


def freshness_line(a, load):
    """The freshness figures of the live phase (fresh.json), one Markdown bullet."""
    fresh = load("fresh.json")
    first_seen = {int(k): v for k, v in fresh["first_seen_us"].items()}
    rows = {int(k): v for k, v in fresh["rows"].items()}
    # Windows that closed before the pipeline claimed its partitions, plus 1 s to catch up with
    # what was produced meanwhile, are skipped.
    close = lambda ws: ws + a.fresh_window_us + a.fresh_lateness_us  # noqa: E731
    live = [ws for ws in sorted(first_seen) if fresh["claimed_us"] and close(ws) >= fresh["claimed_us"] + 1_000_000]
    lags_ms = [(first_seen[ws] - close(ws)) / 1000 for ws in live]
    series = sorted(rows[ws] for ws in live)
    if lags_ms:
        return (
            f"- Freshness (live, {a.fresh_rate:,} events/s paced for {a.fresh_seconds} s, 1 s windows, 100 ms"
            f" lateness, `flush_interval_ms = 100`): window close to rows visible p50 **{nearest_rank(lags_ms, 0.5):.0f} ms**,"
            f" p99 **{nearest_rank(lags_ms, 0.99):.0f} ms**, max {max(lags_ms):.0f} ms over {len(lags_ms)} windows"
            f" [target p99 < 100 ms at 10 k live series]; series per window (rows) median {nearest_rank(series, 0.5):,},"
            f" max {max(series):,}."
        )
    return "- Freshness: no window was written during the live phase."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for a in ("--work", "--profile", "--bin", "--command"):
        ap.add_argument(a, required=True)
    for a in ("--events", "--partitions", "--seed", "--fresh-rate", "--fresh-seconds"):
        ap.add_argument(a, type=int, required=True)
    ap.add_argument("--fresh-window-us", type=int, default=1_000_000)
    ap.add_argument("--fresh-lateness-us", type=int, default=100_000)
    ap.add_argument("--fresh-only", action="store_true", help="only the freshness phase ran")
    ap.add_argument("--processes", type=int, default=1, help="perfstream processes in the group")
    a = ap.parse_args()
    w = lambda name: os.path.join(a.work, name)  # noqa: E731
    load = lambda name: json.load(open(w(name)))  # noqa: E731
    if a.fresh_only:
        print(freshness_line(a, load))
        return 0

    stages = {}
    for name in ("raw", "perfstream", "baseline"):
        r = load(f"{name}.json")
        rss, cpu = time_v(w(f"{name}.time"))
        if name == "perfstream":  # --processes N: CPU summed, RSS the largest member's
            for i in range(2, a.processes + 1):
                rss_i, cpu_i = time_v(w(f"perfstream-{i}.time"))
                rss, cpu = max(rss, rss_i), cpu + cpu_i
        stages[name] = {"messages": r["messages"], "seconds": r["seconds"], "rss": rss, "cpu": cpu}
        stages[name]["rate"] = r["messages"] / r["seconds"]
    cmp = load("compare.json")

    meminfo = open("/proc/meminfo").read()
    mem_gib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) / 1024 / 1024
    cpu_model = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    loads = open(w("load.txt")).read().strip().splitlines()
    v = versions(a.bin)

    ps, raw, base = stages["perfstream"], stages["raw"], stages["baseline"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = []
    out.append(f"### Run of {now}: {ps['messages']:,} messages, {a.partitions} partitions per topic"
               + (f", {a.processes} perfstream processes" if a.processes > 1 else "") + "\n")
    out.append(f"`{a.command}` (perfstream {a.profile} build; seed {a.seed}). Machine: {os.cpu_count()} cores"
               f" ({cpu_model.group(1) if cpu_model else '?'}), {mem_gib:.1f} GiB; load average (1, 5, 15 min)"
               " at each stage: " + "; ".join(f"{l.split(' | ')[0].split(':')[0]} {l.split(' | ')[1]}" for l in loads) + ".\n")
    out.append("| stage | messages | seconds | events/s | peak RSS | CPU s per M events |")
    out.append("|---|---|---|---|---|---|")
    labels = {
        "raw": "raw consume (`raw-consume`, pipeline consumer settings)",
        "perfstream": "`perfstream run`, claim to last committed progress",
        "baseline": "Python baseline (`bench/python/baseline.py`)",
    }
    for name in ("raw", "perfstream", "baseline"):
        s = stages[name]
        out.append(
            f"| {labels[name]} | {s['messages']:,} | {s['seconds']:.2f} | {s['rate']:,.0f} | "
            f"{s['rss']:.0f} MiB | {s['cpu'] / s['messages'] * 1e6:.2f} |"
        )
    out.append("")
    out.append(
        f"- perfstream / raw = **{ps['rate'] / raw['rate']:.2f}** [target ≥ 0.8]; "
        f"perfstream / baseline = **{ps['rate'] / base['rate']:.1f}** [target ≥ 20]."
    )
    cpu_m = {k: v["cpu"] / v["messages"] * 1e6 for k, v in stages.items()}
    out.append(
        f"- By CPU time (less sensitive to a shared machine): perfstream {cpu_m['perfstream']:.2f} CPU s per M events"
        f" against raw {cpu_m['raw']:.2f} (ratio raw/perfstream {cpu_m['raw'] / cpu_m['perfstream']:.2f}) and baseline"
        f" {cpu_m['baseline']:.1f} (baseline/perfstream {cpu_m['baseline'] / cpu_m['perfstream']:.1f}); the broker's and"
        " Postgres's CPU are in none of them."
    )
    ps_closed = load("perfstream.json").get("closed_written_seconds")
    if ps_closed:
        out.append(
            f"- perfstream, all closed windows written (the committed watermark past the last closable window):"
            f" {ps_closed:.2f} s, {ps['messages'] / ps_closed:,.0f} events/s."
        )
    out.append(
        "- Rollups: baseline = perfstream on "
        + ", ".join(f"{cmp[k]['rows']:,} {k} rows" for k in ("query", "request", "resource"))
        + f" (windows closed on both sides, up to {cmp['cutoff']}); percentiles equal in "
        + f"{cmp['query']['percentiles_equal'] + cmp['request']['percentiles_equal']:,} of "
        + f"{cmp['query']['percentiles'] + cmp['request']['percentiles']:,}, the rest within the HDR precision."
    )
    out.append(freshness_line(a, load))
    out.append("- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
