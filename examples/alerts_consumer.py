#!/usr/bin/env python3
"""Reads perfstream's alert transitions from Kafka and acts on each one once.

Delivery on `perf.alerts` is at-least-once: a transition can arrive twice (a relay crashed after
the broker acknowledged it). `(alert_id, state, severity)` identifies a transition (an escalation
is a second `firing` of the same alert at `critical`), and a repeat carries identical bytes, so
this consumer drops repeats by that triple. It commits an offset only after
the transitions before it were handled (at-least-once on our side too).

    pip install 'confluent-kafka==2.16.1' 'fastavro==1.13.1'
    python examples/alerts_consumer.py --bootstrap localhost:9092 --schema schemas/alert_event.avsc

The dedup set is in memory and bounded (the last `--remember` transitions); keep it in a database if
repeats across restarts matter (a repeat comes soon after the original, so a bounded set
catches almost all).
"""
import argparse
import io
import json
from collections import OrderedDict

import fastavro
from confluent_kafka import Consumer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="localhost:9092")
    ap.add_argument("--topic", default="perf.alerts")
    ap.add_argument("--group", default="alerts-consumer-py")
    ap.add_argument("--schema", default="schemas/alert_event.avsc")
    ap.add_argument("--remember", type=int, default=100_000)
    args = ap.parse_args()

    schema = fastavro.parse_schema(json.load(open(args.schema)))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic])
    seen = OrderedDict()  # (alert_id, state, severity) -> None, oldest first
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                raise SystemExit(str(msg.error()))
            value = msg.value()
            # Confluent wire format: magic byte 0, 4-byte schema id, Avro body.
            if not value or value[0] != 0:
                raise SystemExit(f"not the Confluent wire format at offset {msg.offset()}")
            alert = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)
            key = (alert["alert_id"], alert["state"], alert["severity"])
            if key not in seen:
                seen[key] = None
                if len(seen) > args.remember:
                    seen.popitem(last=False)
                handle(alert)
            consumer.commit(message=msg, asynchronous=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def handle(alert):
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
    print(f"{alert['state']:8} {alert['severity']:8} {alert['rule']:20} {labels}: {alert['message']}")


if __name__ == "__main__":
    main()
