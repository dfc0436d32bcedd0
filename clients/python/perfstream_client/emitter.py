"""The emitter: ``record_*`` never blocks the caller.

Design (the same as the Rust ``Emitter``): the caller's only work is building a dict and a
``put_nowait`` into a bounded queue; when the queue is full the event is dropped and counted.
One daemon thread drains the queue, fingerprints query text, encodes (Confluent wire format,
perfstream's static schema ids) and hands the messages to an idempotent confluent-kafka
producer, keyed by the series key. When the broker is away the producer's own queue fills, the
thread waits on it, the bounded queue fills, and callers keep going while ``dropped`` grows.
"""

import io
import json
import os
import queue
import socket
import struct
import threading
import time
from importlib import resources
from typing import Any, Dict, NamedTuple, Optional

import fastavro
from confluent_kafka import KafkaException, Producer

from .fingerprint import Fingerprint, fingerprint

__all__ = ["Counters", "Emitter", "series_key", "traceparent_trace_id"]

# Static schema ids (schemas/ids.json) and default topics, per event kind.
_KINDS = {
    "query": (1, "query_event.avsc", "perf.query", ("service", "query_hash")),
    "request": (2, "request_event.avsc", "perf.request", ("service", "endpoint", "method")),
    "resource": (3, "resource_event.avsc", "perf.resource", ("service", "instance")),
}
# Version 2 of the query and request events (version 1 plus trace_id): an event with a trace id
# is written in it, any other in version 1, as the Rust encoder does, so untraced events stay
# readable by every perfstream release.
_V2 = {
    "query": (6, "query_event_v2.avsc"),
    "request": (7, "request_event_v2.avsc"),
}
# Longest trace id perfstream accepts (docs/producers.md, field rules).
MAX_TRACE_ID_BYTES = 128
# How often one hash's normalised text is sent again (perfstream keeps one text per hash).
TEXT_EVERY_S = 300.0
_MAX_REMEMBERED = 100_000
# Characters of raw query text whose fingerprints are cached; beyond it the cache is cleared.
# A service with placeholders has few distinct texts, and fingerprinting in pure Python costs
# about 0.3 ms a statement, under the GIL.
_CACHE_CHARS = 4_000_000
# Longest duration perfstream accepts (docs/producers.md, field rules).
_MAX_DURATION_US = 4_000_000_000_000


class Counters(NamedTuple):
    accepted: int
    """Events taken into the queue."""
    sent: int
    """Events the broker acknowledged."""
    dropped: int
    """Events dropped: queue full, or still queued when ``close`` gave up."""
    failed: int
    """Events the producer could not deliver (delivery error, encoding error, purged at close)."""


def now_us() -> int:
    """Microseconds since the Unix epoch, now."""
    return time.time_ns() // 1000


def series_key(kind: str, record: Dict[str, Any]) -> bytes:
    """The Kafka key: the series' fields joined by NUL (docs/producers.md, "The key")."""
    return "\0".join(record[f] for f in _KINDS[kind][3]).encode("utf-8")


def traceparent_trace_id(value: Any) -> Optional[str]:
    """The trace id of a W3C ``traceparent`` header value (``00-<32 hex>-<16 hex>-<2 hex>``,
    str or bytes), or None when it is absent or malformed (as the Rust ``RequestLayer``)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    parts = str(value).strip().split("-")
    if len(parts) < 4:
        return None
    version, trace, span, flags = parts[:4]

    def hex_of(s: str, n: int) -> bool:
        return len(s) == n and all(c in "0123456789abcdef" for c in s)

    ok = (
        hex_of(version, 2)
        and version != "ff"
        and hex_of(trace, 32)
        and hex_of(span, 16)
        and hex_of(flags, 2)
        and trace != "0" * 32
        and (version != "00" or len(parts) == 4)
    )
    return trace if ok else None


def _load_schema(file: str):
    text = resources.files(__package__).joinpath("schemas", file).read_text(encoding="utf-8")
    return fastavro.parse_schema(json.loads(text))


class Emitter:
    """Sends perfstream events from one service instance without ever blocking the caller.

    ``bootstrap``: Kafka bootstrap servers. ``service``: the logical service name.
    ``instance``: this process (default: the host name, as a pod name would be).
    ``queue_size``: events held between callers and the producer (default 10 000); beyond it
    events are dropped and counted. ``producer_config``: confluent-kafka settings applied over
    the defaults (idempotence on, ``acks=all``, ``linger.ms=5``), e.g. SASL/TLS.
    ``topics``: ``{"query": ..., "request": ..., "resource": ...}`` to rename topics.
    """

    def __init__(
        self,
        bootstrap: str,
        service: str,
        instance: Optional[str] = None,
        *,
        queue_size: int = 10_000,
        producer_config: Optional[Dict[str, Any]] = None,
        topics: Optional[Dict[str, str]] = None,
    ):
        self.service = service
        self.instance = instance or os.environ.get("HOSTNAME") or socket.gethostname()
        self._topics = {kind: spec[2] for kind, spec in _KINDS.items()}
        self._topics.update(topics or {})
        self._schemas = {kind: (spec[0], _load_schema(spec[1])) for kind, spec in _KINDS.items()}
        self._schemas_v2 = {kind: (spec[0], _load_schema(spec[1])) for kind, spec in _V2.items()}
        config = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
        config.update(producer_config or {})
        self._producer = Producer(config)
        self._queue: "queue.Queue[tuple]" = queue.Queue(maxsize=max(1, queue_size))
        self._lock = threading.Lock()
        self._accepted = self._sent = self._dropped = self._failed = 0
        # Accepted events dropped later (still queued at the close deadline), for `flush`.
        self._dropped_after_accept = 0
        self._closing = threading.Event()
        self._deadline: Optional[float] = None
        self._text_sent: Dict[str, float] = {}
        self._fingerprints: Dict[str, Fingerprint] = {}
        self._fingerprint_chars = 0
        self._thread = threading.Thread(target=self._run, name="perfstream-emitter", daemon=True)
        self._thread.start()

    # ----- the caller's side -------------------------------------------------------------

    def record_query(
        self,
        query_text: Optional[str] = None,
        execution_time_us: int = 0,
        rows_affected: int = 0,
        *,
        query_hash: Optional[str] = None,
        query_type: Optional[str] = None,
        tenant_id: Optional[str] = None,
        executed_at_us: Optional[int] = None,
        trace_id: Optional[str] = None,
    ) -> bool:
        """Records one executed query; False when it was dropped (queue full).

        Give the statement's text as it ran (literals and all) and leave ``query_hash`` out:
        the emitter computes the shared fingerprint (docs/producers.md, "Query fingerprint"),
        sends the normalised text instead of yours (once per hash every 5 minutes), and takes
        ``query_type`` from the text unless given. With ``query_hash`` given, the event is sent
        as is. ``executed_at_us`` (default now) is when the query started. ``trace_id``: the
        distributed trace the query ran in (at most 128 bytes; schema version 2), shown with
        the query's samples; None or "" sends none.
        """
        return self._put("query", {
            "service": self.service,
            "instance": self.instance,
            "query_hash": query_hash,
            "query_type": query_type,
            "query_text": query_text,
            "execution_time_us": int(execution_time_us),
            "rows_affected": int(rows_affected),
            "tenant_id": tenant_id,
            "executed_at_us": now_us() if executed_at_us is None else int(executed_at_us),
            "trace_id": trace_id or None,
        })

    def record_query_performance(
        self,
        query_hash: Optional[str],
        query_type: Optional[str],
        execution_time_ms: float,
        rows_affected: int = 0,
        campaign_id: Optional[str] = None,
        *,
        query_text: Optional[str] = None,
        executed_at: Optional[float] = None,
        trace_id: Optional[str] = None,
    ) -> bool:
        """The seed's ``record_query_performance(query_hash, query_type, execution_time_ms,
        rows_affected, campaign_id)``, as ``record_query``: milliseconds become microseconds,
        ``campaign_id`` is the tenant, ``executed_at`` is a Unix time in seconds (default now).
        Pass ``query_hash=None, query_text=sql`` to get the shared fingerprint instead of a
        hash of your own.
        """
        return self.record_query(
            query_text,
            execution_time_us=round(float(execution_time_ms) * 1000),
            rows_affected=rows_affected,
            query_hash=query_hash,
            query_type=query_type,
            tenant_id=None if campaign_id is None else str(campaign_id),
            executed_at_us=None if executed_at is None else round(executed_at * 1_000_000),
            trace_id=trace_id,
        )

    def record_request(
        self,
        endpoint: str,
        method: str,
        status_code: int,
        response_time_us: int,
        *,
        request_bytes: Optional[int] = None,
        response_bytes: Optional[int] = None,
        occurred_at_us: Optional[int] = None,
        trace_id: Optional[str] = None,
    ) -> bool:
        """Records one served request. ``endpoint`` is the route template (``/campaigns/{id}``,
        never ``/campaigns/42``); ``occurred_at_us`` (default now) is when it was received;
        ``trace_id`` as in ``record_query`` (the middlewares take it from ``traceparent``)."""
        return self._put("request", {
            "service": self.service,
            "instance": self.instance,
            "endpoint": endpoint,
            "method": method.upper(),
            "status_code": int(status_code),
            "response_time_us": min(int(response_time_us), _MAX_DURATION_US),
            "request_bytes": request_bytes,
            "response_bytes": response_bytes,
            "occurred_at_us": now_us() if occurred_at_us is None else int(occurred_at_us),
            "trace_id": trace_id or None,
        })

    def record_resource(self, **fields: Any) -> bool:
        """Records one resource sample of this instance: the fields of ``ResourceEvent``
        (schemas/resource_event.avsc) other than ``service`` and ``instance``;
        ``observed_at_us`` defaults to now, the optional ones (``heap_bytes``, ``gc_pause_us``,
        ``gc_count``, ``caches``) to None. docs/producers.md maps common pool and runtime
        statistics onto them."""
        record = {"heap_bytes": None, "gc_pause_us": None, "gc_count": None, "caches": None}
        record.update(fields)
        record.setdefault("observed_at_us", now_us())
        record["service"] = self.service
        record["instance"] = self.instance
        return self._put("resource", record)

    def counters(self) -> Counters:
        """The counters now."""
        with self._lock:
            return Counters(self._accepted, self._sent, self._dropped, self._failed)

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits up to ``timeout`` seconds until every accepted event is acknowledged or has
        failed; True if it came to that. Blocks: for tests and shutdown, not request paths."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                settled = self._sent + self._failed + self._dropped_after_accept >= self._accepted
            if settled and self._queue.empty():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def close(self, timeout: float = 10.0) -> Counters:
        """Stops taking events, sends what is queued and waits for acknowledgements, for at
        most ``timeout`` seconds. What is still queued then counts as dropped, what the
        producer still holds as failed. Returns the final counters."""
        self._deadline = time.monotonic() + max(0.0, timeout)
        self._closing.set()
        self._thread.join()
        return self.counters()

    def _put(self, kind: str, record: Dict[str, Any]) -> bool:
        if not self._closing.is_set():
            try:
                self._queue.put_nowait((kind, record))
                with self._lock:
                    self._accepted += 1
                return True
            except queue.Full:
                pass
        with self._lock:
            self._dropped += 1
        return False

    # ----- the background thread ---------------------------------------------------------

    def _on_delivery(self, err, _msg) -> None:
        with self._lock:
            if err is None:
                self._sent += 1
            else:
                self._failed += 1

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _fill_query(self, record: Dict[str, Any]) -> None:
        text = record["query_text"]
        if record["query_hash"] is None and text is not None:
            f = self._fingerprint(text)
            record["query_hash"] = f.hash
            if record["query_type"] is None:
                record["query_type"] = f.query_type
            now = time.monotonic()
            last = self._text_sent.get(f.hash)
            due = last is None or now - last >= TEXT_EVERY_S
            if due:
                if len(self._text_sent) >= _MAX_REMEMBERED:
                    self._text_sent.clear()
                self._text_sent[f.hash] = now
            record["query_text"] = f.normalized if due else None
        if record["query_type"] is None:
            record["query_type"] = "other"

    def _fingerprint(self, text: str) -> Fingerprint:
        f = self._fingerprints.get(text)
        if f is None:
            f = fingerprint(text)
            if self._fingerprint_chars + len(text) > _CACHE_CHARS:
                self._fingerprints.clear()
                self._fingerprint_chars = 0
            self._fingerprints[text] = f
            self._fingerprint_chars += len(text)
        return f

    def _encode(self, kind: str, record: Dict[str, Any]) -> bytes:
        traced = record.get("trace_id") is not None
        schema_id, schema = (self._schemas_v2 if traced else self._schemas)[kind]
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", schema_id))
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def _send(self, kind: str, record: Dict[str, Any]) -> None:
        try:
            if kind == "query":
                self._fill_query(record)
            key = series_key(kind, record)
            value = self._encode(kind, record)
        except Exception:  # a record fastavro refuses: the caller's data, counted, not raised
            with self._lock:
                self._failed += 1
            return
        while True:
            try:
                self._producer.produce(self._topics[kind], key=key, value=value, on_delivery=self._on_delivery)
                return
            except BufferError:
                # The broker is slow or away: wait on the producer, never on the caller.
                if self._past_deadline():
                    with self._lock:
                        self._dropped += 1
                        self._dropped_after_accept += 1
                    return
                self._producer.poll(0.05)
            except KafkaException:
                with self._lock:
                    self._failed += 1
                return

    def _run(self) -> None:
        while True:
            try:
                kind, record = self._queue.get(timeout=0.05)
            except queue.Empty:
                self._producer.poll(0)
                if self._closing.is_set():
                    break
                continue
            self._send(kind, record)
            self._producer.poll(0)
        remaining = 0.0 if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        self._producer.flush(remaining)
        if len(self._producer) > 0:
            # Purged messages get their delivery report (an error): they count as failed.
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(0)
