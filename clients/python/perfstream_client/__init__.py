"""perfstream-client: emit query, request and resource events to perfstream.

- ``Emitter``: ``record_query`` (and the seed's ``record_query_performance``),
  ``record_request``, ``record_resource``; never blocks the caller (bounded queue, drops
  counted), keys and wire format as docs/producers.md says.
- ``fingerprint``: the shared query fingerprint (the same as the Rust emitter's).
- ``ASGIMiddleware``, ``WSGIMiddleware``: record every request by its route template.
"""

from .emitter import Counters, Emitter, series_key, traceparent_trace_id
from .fingerprint import Fingerprint, fingerprint
from .middleware import UNMATCHED, ASGIMiddleware, WSGIMiddleware

__all__ = [
    "ASGIMiddleware",
    "Counters",
    "Emitter",
    "Fingerprint",
    "UNMATCHED",
    "WSGIMiddleware",
    "fingerprint",
    "series_key",
    "traceparent_trace_id",
]
