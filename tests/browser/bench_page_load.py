"""Page load of the dashboard in headless Chromium: time to the first chart drawn.

    python3 tests/browser/bench_page_load.py --url http://127.0.0.1:PORT [--runs 5]

For each view and span, loads the page `runs` times cold (a custom range ending at a new
millisecond each time, so the server's cache never has the answer) and `runs` times warm (the
preset range, loaded once before, so the answer comes from the cache), and prints the median of `__dash.firstChartMs` (performance.now() when the
first chart was drawn, from navigation start) and of the whole load (all charts drawn).
BENCHMARKS.md, "Dashboard", has the numbers and the setup.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Cdp  # noqa: E402
from dashboard_test import Browser, start_chromium  # noqa: E402

# (route, preset, span in ms)
PAGES = [
    ("overview", "1h", 3_600_000),
    ("overview", "7d", 7 * 86_400_000),
    ("service/svc-01", "1h", 3_600_000),
    ("service/svc-01", "7d", 7 * 86_400_000),
]


def load(b, page):
    b.cdp.call("Page.navigate", b.s, url="about:blank")
    b.open(page)
    view = page.split("/")[1].split("?")[0]
    b.cdp.poll(b.s, f"window.__dash && __dash.ready && __dash.view === '{view}'", 30, page)
    return b.eval("[__dash.firstChartMs, Math.round(performance.now()), __dash.tier]")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--chromium", default="chromium")
    args = p.parse_args()
    proc, ws = start_chromium(args.chromium, tempfile.mkdtemp(prefix="perfstream-bench-"))
    try:
        b = Browser(Cdp(ws), args.url, tempfile.mkdtemp())
        print(f"{'page':32} {'tier':5} {'cold first chart':>17} {'cold all':>9} {'warm first chart':>17} {'warm all':>9}")
        for route, preset, span in PAGES:
            page = f"#/{route}?range={preset}"
            results = {"cold": [], "warm": []}
            for _ in range(args.runs):
                to = int(time.time() * 1000)
                results["cold"].append(load(b, f"#/{route}?from={to - span}&to={to}"))
            load(b, page)
            for _ in range(args.runs):
                results["warm"].append(load(b, page))
            tier = results["cold"][0][2]
            med = lambda rs, i: statistics.median(r[i] for r in rs)  # noqa: E731
            print(f"{page:32} {tier:5} {med(results['cold'], 0):>14.0f} ms {med(results['cold'], 1):>6.0f} ms"
                  f" {med(results['warm'], 0):>14.0f} ms {med(results['warm'], 1):>6.0f} ms")
        print(json.dumps({"runs": args.runs}))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
