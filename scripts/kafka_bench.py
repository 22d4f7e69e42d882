#!/usr/bin/env python3
"""Kafka-client benchmark: confluent-kafka (librdkafka) producing and then
consuming one topic through a Sluice Kafka listener, the figures printed like
`sluice bench`'s so they can be read side by side.

    scripts/kafka_bench.py BOOTSTRAP TOPIC [--messages N] [--size BYTES]
                           [--compression none|gzip|snappy|lz4|zstd]
                           [--partitions P] [--acks all|1] [--rate-mb R] [--no-consume]

Produce: linger.ms=5, batch.size=1 MiB; throughput over the whole run and
delivery latency (send to acknowledgement) percentiles, sampled every 100th
message. Consume: the topic from the beginning with one consumer, assigned
every partition (no group), fetches of up to 4 MB a partition.
"""
import argparse
import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--compression", default="none")
    parser.add_argument("--acks", default="all")
    parser.add_argument("--rate-mb", type=float, default=0,
                        help="produce at this many MB/s (latency at a steady load); 0: flat out")
    parser.add_argument("--no-consume", action="store_true")
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for future in admin.create_topics([NewTopic(args.topic, args.partitions)]).values():
        future.result()

    # Random bytes (compressible only in the repeated half), like sluice bench's.
    payload = os.urandom(args.size // 2) + b"x" * (args.size - args.size // 2)
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "compression.type": args.compression,
        "queue.buffering.max.kbytes": 256 * 1024,
        "enable.idempotence": args.acks == "all",
    })
    latencies = []

    def delivered(err, _msg, sent=None):
        if err is not None:
            raise SystemExit(f"delivery failed: {err}")

    # Connections, metadata and the producer id first, outside the clock.
    producer.produce(args.topic, payload)
    producer.flush()
    start = time.monotonic()
    for i in range(args.messages):
        if i % 100 == 0:
            # Delivery callbacks run inside poll: serve them as they come.
            ahead = 0.0
            if args.rate_mb:
                ahead = i * args.size / (args.rate_mb * 1e6) - (time.monotonic() - start)
            producer.poll(0)
            while ahead > 0:
                producer.poll(ahead)
                ahead = i * args.size / (args.rate_mb * 1e6) - (time.monotonic() - start)
        sent = time.monotonic()
        callback = None
        if i % 100 == 0:  # sample latencies: no per-message Python work on the rest
            callback = (lambda s: lambda err, msg: (delivered(err, msg),
                        latencies.append(time.monotonic() - s)))(sent)
        while True:
            try:
                producer.produce(args.topic, payload, on_delivery=callback)
                break
            except BufferError:
                producer.poll(0.001)
    producer.flush()
    elapsed = time.monotonic() - start
    mb = args.messages * args.size / 1e6
    latencies.sort()
    paced = f", paced at {args.rate_mb:g} MB/s" if args.rate_mb else ""
    print(f"kafka produce ({args.compression}, acks={args.acks}{paced}): {args.messages} messages of "
          f"{args.size} B in {elapsed:.2f} s: {mb / elapsed:.1f} MB/s, "
          f"{args.messages / elapsed:.0f} msg/s; latency p50 {percentile(latencies, 0.5) * 1e3:.1f} ms "
          f"p99 {percentile(latencies, 0.99) * 1e3:.1f} ms", flush=True)

    if args.no_consume:
        return
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"bench-{args.topic}",
        "enable.auto.commit": False,
        # Large fetches, as for producing: 4 MB a partition, 32 MB a
        # fetch. Measured here, librdkafka's defaults (1 MB, 50 MB) halve
        # the lz4 rate, and 16 MB / 128 MB is several times slower.
        "max.partition.fetch.bytes": 4 << 20,
        "fetch.max.bytes": 32 << 20,
        "fetch.wait.max.ms": 100,
    })
    consumer.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    received = 0
    received_bytes = 0
    start = time.monotonic()
    while received < args.messages:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error():
                raise SystemExit(f"consume failed: {msg.error()}")
            received += 1
            received_bytes += len(msg.value())
    elapsed = time.monotonic() - start
    consumer.close()
    print(f"kafka consume: {received} messages in {elapsed:.2f} s: "
          f"{received_bytes / 1e6 / elapsed:.1f} MB/s, {received / elapsed:.0f} msg/s", flush=True)


if __name__ == "__main__":
    main()
