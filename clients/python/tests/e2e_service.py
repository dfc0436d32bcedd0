"""A small Python service instrumented with perfstream-client, for the end-to-end test
(tests/python_client.rs): it runs a traffic plan the test wrote and reports the emitter's
counters. The test, not this script, knows what the rollups must hold.

    python e2e_service.py --bootstrap HOST:PORT --plan plan.json --out result.json

Plan (JSON): {"service", "instance", "asgi": [[method, path], ...], "wsgi": [[method, path],
...], "queries": [[query_hash or null, query_type or null, execution_time_ms, rows,
campaign_id or null, query_text or null(, trace_id)], ...], "resources": [memory_used_bytes, ...],
"queue_size", "producer_config", "flush_timeout"}.

ASGI routes (templates in scope["route"], as Starlette/FastAPI do): GET /campaigns/{id} 200,
POST /campaigns 201, GET /boom raises (500); anything else is a 404 without a route. WSGI:
GET /domains/{name} 200 (template in environ["perfstream.endpoint"]), anything else 404.
Requests and queries are interleaved; every call's return is timed, so a run against a dead
broker shows the caller was never held.
"""

import argparse
import asyncio
import json
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfstream_client import ASGIMiddleware, Emitter, WSGIMiddleware  # noqa: E402


class Route:
    def __init__(self, path_format):
        self.path_format = path_format


async def asgi_app(scope, receive, send):
    """A tiny routed ASGI app."""
    method, path = scope["method"], scope["path"]
    parts = path.strip("/").split("/")
    if method == "GET" and len(parts) == 2 and parts[0] == "campaigns":
        scope["route"] = Route("/campaigns/{id}")
        status, body = 200, json.dumps({"id": parts[1]}).encode()
    elif method == "POST" and path == "/campaigns":
        scope["route"] = Route("/campaigns")
        status, body = 201, b"{}"
    elif method == "GET" and path == "/boom":
        scope["route"] = Route("/boom")
        raise RuntimeError("handler failed")
    else:
        status, body = 404, b"not found"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    parts = environ["PATH_INFO"].strip("/").split("/")
    if environ["REQUEST_METHOD"] == "GET" and len(parts) == 2 and parts[0] == "domains":
        environ["perfstream.endpoint"] = "/domains/{name}"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


async def call_asgi(app, method, path):
    """Drives one request through the ASGI app; the status, or 500 when it raised."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": path, "raw_path": path.encode(), "query_string": b"", "headers": []}
    try:
        await app(scope, receive, send)
    except RuntimeError:
        return 500
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def call_wsgi(app, method, path):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "test", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "CONTENT_LENGTH": ""}
    status = []
    result = app(environ, lambda s, h, e=None: status.append(int(s.split()[0])))
    try:
        b"".join(result)
    finally:
        result.close()
    return status[0]


async def run(plan, emitter):
    asgi = ASGIMiddleware(asgi_app, emitter)
    wsgi = WSGIMiddleware(wsgi_app, emitter)
    calls, slowest = 0, 0.0
    statuses = {}
    steps = [("asgi", r) for r in plan["asgi"]] + [("wsgi", r) for r in plan["wsgi"]] + [("query", q) for q in plan["queries"]]
    # Interleave deterministically: requests and queries alternate as a service's would.
    steps.sort(key=lambda s: zlib.crc32(json.dumps(s).encode()) % 7)
    for kind, step in steps:
        t0 = time.monotonic()
        if kind == "asgi":
            status = await call_asgi(asgi, *step)
            statuses[f"{step[0]} {step[1]}"] = status
        elif kind == "wsgi":
            status = call_wsgi(wsgi, *step)
            statuses[f"{step[0]} {step[1]}"] = status
        else:
            query_hash, query_type, ms, rows, campaign, text, *trace = step
            emitter.record_query_performance(
                query_hash, query_type, ms, rows, campaign, query_text=text, trace_id=(trace or [None])[0]
            )
        slowest = max(slowest, time.monotonic() - t0)
        calls += 1
    for memory in plan["resources"]:
        emitter.record_resource(
            interval_us=1_000_000, cpu_utilization_ratio=0.25, memory_used_bytes=memory,
            memory_limit_bytes=1 << 30, io_read_bytes=0, io_write_bytes=0, pool_active=2,
            pool_idle=3, pool_max=10, pool_waiters=0, pool_wait_us=0,
        )
        calls += 1
    return calls, slowest, statuses


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    plan = json.loads(args.plan.read_text())
    emitter = Emitter(args.bootstrap, plan["service"], plan["instance"], queue_size=plan["queue_size"],
                      producer_config=plan.get("producer_config") or {})
    calls, slowest, statuses = asyncio.run(run(plan, emitter))
    after_calls = emitter.counters()._asdict()
    flushed = emitter.flush(plan["flush_timeout"])
    final = emitter.close(plan["close_timeout"])._asdict()
    result = {"calls": calls, "slowest_call_s": slowest, "after_calls": after_calls, "flushed": flushed,
              "final": final, "statuses": statuses}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
