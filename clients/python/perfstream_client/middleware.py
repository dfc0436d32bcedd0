"""ASGI and WSGI middleware recording every request: endpoint template, method, status, time.

The endpoint must be the route *template* (``/campaigns/{id}``), never the raw path, which
would make one series per id. Frameworks put it in different places, so each middleware takes
``endpoint=``, a function of the ASGI scope (or WSGI environ) returning the template or None,
and by default looks where common frameworks put it:

- ASGI: ``scope["route"].path_format`` or ``.path`` (FastAPI puts the matched route there), then
  ``scope["perfstream.endpoint"]`` (set it yourself in a router or a dependency).
- WSGI: the Flask/Werkzeug rule (``environ["werkzeug.request"].url_rule.rule``), then
  ``environ["perfstream.endpoint"]``.

Requests whose template is unknown are recorded as ``UNMATCHED`` (``(unmatched)``, as the Rust
layer does). The time runs from the request entering the middleware to the end of the response
body (ASGI: the last body message; WSGI: the ``close`` of the response iterable). An app that
raises is recorded with status 500 and the exception propagates.
"""

import time
from typing import Any, Callable, Dict, Optional

from .emitter import Emitter, now_us, traceparent_trace_id

__all__ = ["ASGIMiddleware", "WSGIMiddleware", "UNMATCHED"]

UNMATCHED = "(unmatched)"


def _elapsed_us(start: float) -> int:
    return int((time.perf_counter() - start) * 1_000_000)


def asgi_endpoint(scope: Dict[str, Any]) -> Optional[str]:
    """The default ASGI template lookup (see the module doc)."""
    route = scope.get("route")
    if route is not None:
        for attr in ("path_format", "path"):
            template = getattr(route, attr, None)
            if isinstance(template, str):
                return template
    template = scope.get("perfstream.endpoint")
    return template if isinstance(template, str) else None


def wsgi_endpoint(environ: Dict[str, Any]) -> Optional[str]:
    """The default WSGI template lookup (see the module doc)."""
    request = environ.get("werkzeug.request")
    rule = getattr(getattr(request, "url_rule", None), "rule", None)
    if isinstance(rule, str):
        return rule
    template = environ.get("perfstream.endpoint")
    return template if isinstance(template, str) else None


def _content_length(value: Any) -> Optional[int]:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


class ASGIMiddleware:
    """Wraps an ASGI app: ``app = ASGIMiddleware(app, emitter)``. Other scope types
    (websocket, lifespan) pass through unrecorded."""

    def __init__(self, app, emitter: Emitter, endpoint: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None):
        self.app = app
        self.emitter = emitter
        self.endpoint = endpoint or asgi_endpoint

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        occurred_at_us = now_us()
        start = time.perf_counter()
        state = {"status": 500, "bytes": 0}

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            state["status"] = 500
            raise
        finally:
            headers = dict(scope.get("headers") or [])
            self.emitter.record_request(
                self.endpoint(scope) or UNMATCHED,
                scope.get("method", "GET"),
                state["status"],
                _elapsed_us(start),
                request_bytes=_content_length(headers.get(b"content-length")),
                response_bytes=state["bytes"],
                occurred_at_us=occurred_at_us,
                trace_id=traceparent_trace_id(headers.get(b"traceparent")),
            )


class _Recorded:
    """The WSGI response iterable, recording the request when the server closes it."""

    def __init__(self, result, record: Callable[[], None]):
        self._result = result
        self._record = record
        self._done = False

    def __iter__(self):
        return iter(self._result)

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                self._record()


class WSGIMiddleware:
    """Wraps a WSGI app: ``app.wsgi_app = WSGIMiddleware(app.wsgi_app, emitter)`` (Flask)."""

    def __init__(self, app, emitter: Emitter, endpoint: Optional[Callable[[Dict[str, Any]], Optional[str]]] = None):
        self.app = app
        self.emitter = emitter
        self.endpoint = endpoint or wsgi_endpoint

    def __call__(self, environ, start_response):
        occurred_at_us = now_us()
        start = time.perf_counter()
        state = {"status": 500, "bytes": None}

        def start_and_watch(status, headers, exc_info=None):
            state["status"] = int(str(status).split(" ", 1)[0])
            for name, value in headers:
                if name.lower() == "content-length":
                    state["bytes"] = _content_length(value)
            return start_response(status, headers, exc_info)

        def record():
            self.emitter.record_request(
                self.endpoint(environ) or UNMATCHED,
                environ.get("REQUEST_METHOD", "GET"),
                state["status"],
                _elapsed_us(start),
                request_bytes=_content_length(environ.get("CONTENT_LENGTH")),
                response_bytes=state["bytes"],
                occurred_at_us=occurred_at_us,
                trace_id=traceparent_trace_id(environ.get("HTTP_TRACEPARENT")),
            )

        try:
            result = self.app(environ, start_and_watch)
        except Exception:
            state["status"] = 500
            record()
            raise
        return _Recorded(result, record)
