#!/usr/bin/env python3
"""Issue 14: trace ids in the Python client. ``traceparent_trace_id`` reads W3C headers as the
Rust ``RequestLayer`` does; the ASGI and WSGI middlewares pass the trace id to
``record_request``; the encoder writes schema version 2 (ids 6, 7) exactly when a trace id is
given. Runs without a broker (tests/ci/05-fastavro.sh).

    python clients/python/tests/test_trace.py
"""

import asyncio
import io
import struct
import sys
from pathlib import Path

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfstream_client import ASGIMiddleware, WSGIMiddleware, traceparent_trace_id  # noqa: E402
from perfstream_client import emitter as client  # noqa: E402

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HEADER = f"00-{TRACE}-00f067aa0ba902b7-01"


class Recorder:
    """Stands in for the Emitter: keeps what record_request was called with."""

    def __init__(self):
        self.calls = []

    def record_request(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return True


def test_traceparent():
    assert traceparent_trace_id(HEADER) == TRACE
    assert traceparent_trace_id(HEADER.encode()) == TRACE
    assert traceparent_trace_id(f"01-{TRACE}-00f067aa0ba902b7-01-later") == TRACE
    for bad in [None, "", f"{HEADER}-x", f"ff-{TRACE}-00f067aa0ba902b7-01",
                "00-" + "0" * 32 + "-00f067aa0ba902b7-01", HEADER.upper(), f"00-{TRACE}-00f067aa0ba902b7"]:
        assert traceparent_trace_id(bad) is None, bad


def test_asgi():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(_message):
        pass

    rec = Recorder()
    mw = ASGIMiddleware(app, rec, endpoint=lambda scope: "/a")
    for headers in ([(b"traceparent", HEADER.encode())], []):
        scope = {"type": "http", "method": "GET", "path": "/a", "headers": headers}
        asyncio.run(mw(scope, receive, send))
    assert [kw["trace_id"] for _, kw in rec.calls] == [TRACE, None], rec.calls


def test_wsgi():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    rec = Recorder()
    mw = WSGIMiddleware(app, rec, endpoint=lambda environ: "/a")
    for environ in ({"REQUEST_METHOD": "GET", "HTTP_TRACEPARENT": HEADER}, {"REQUEST_METHOD": "GET"}):
        result = mw(environ, lambda *a, **k: None)
        list(result)
        result.close()
    assert [kw["trace_id"] for _, kw in rec.calls] == [TRACE, None], rec.calls


def test_encoder_versions():
    em = client.Emitter.__new__(client.Emitter)  # the encoder only: no producer, no thread
    em._schemas = {k: (s[0], client._load_schema(s[1])) for k, s in client._KINDS.items()}
    em._schemas_v2 = {k: (s[0], client._load_schema(s[1])) for k, s in client._V2.items()}
    request = {"service": "s", "instance": "i", "endpoint": "/a", "method": "GET", "status_code": 200,
               "response_time_us": 5, "request_bytes": None, "response_bytes": None, "occurred_at_us": 1}
    for trace, want_id in ((TRACE, 7), (None, 2)):
        data = em._encode("request", dict(request, trace_id=trace))
        assert struct.unpack(">I", data[1:5])[0] == want_id, (trace, data[:5])
        schema = em._schemas_v2["request"][1] if want_id == 7 else em._schemas["request"][1]
        got = fastavro.schemaless_reader(io.BytesIO(data[5:]), schema, None)
        assert got.get("trace_id") == trace, got


if __name__ == "__main__":
    tests = [test_traceparent, test_asgi, test_wsgi, test_encoder_versions]
    for t in tests:
        t()
    print(f"test_trace: {len(tests)} passed")
