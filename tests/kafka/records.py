"""DeleteRecords, DescribeConfigs and DescribeCluster over the Kafka
protocol with confluent-kafka's AdminClient (librdkafka). Run by
tests/tests/kafka_admin.rs as `records.py BROKER before` against a fresh
server, then `records.py BROKER after` once the server restarted; prints
"ok" when every check passed.

`before` writes 100 records to events/0 and 10 to events/1, deletes the
records of events/0 before offset 40 and all of events/1, and checks what a
Kafka user sees: the low watermarks, ListOffsets, consumption from the
beginning, a fetch below the log start, the refusals, and the configs and
cluster as described. `after` checks that the deletions survived."""

import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource,
                                   NewTopic, OffsetSpec, ResourceType)

broker, phase = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": broker})
DEADLINE = 30


def result(future):
    """The future's result, or its KafkaError."""
    try:
        return future.result(timeout=DEADLINE)
    except KafkaException as e:
        return e.args[0]


def delete(topic, partition, offset):
    """delete_records of one partition: its DeletedRecords or KafkaError."""
    futures = admin.delete_records([TopicPartition(topic, partition, offset)],
                                   operation_timeout=DEADLINE)
    [future] = futures.values()
    return result(future)


def offsets(topic, partition):
    """(earliest, latest) by list_offsets."""
    tp = TopicPartition(topic, partition)
    out = []
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        [future] = admin.list_offsets({tp: spec}).values()
        out.append(result(future).offset)
    return tuple(out)


def consume_from(topic, partition, offset, count, reset="earliest"):
    """The first `count` messages from `offset` (a partition assigned
    directly, no group), or the first error."""
    consumer = Consumer({
        "bootstrap.servers": broker,
        "group.id": "records-py",
        "enable.auto.commit": False,
        "auto.offset.reset": reset,
    })
    consumer.assign([TopicPartition(topic, partition, offset)])
    got = []
    deadline = time.monotonic() + DEADLINE
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                return message.error()
            got.append((message.offset(), message.value().decode()))
    finally:
        consumer.close()
    return got


def check_consumption_starts_at_40():
    got = consume_from("events", 0, OFFSET_BEGINNING, 60)
    assert [offset for offset, _ in got] == list(range(40, 100)), got
    assert [value for _, value in got] == [f"event-{i}" for i in range(40, 100)], got


if phase == "before":
    created = admin.create_topics([
        NewTopic("events", num_partitions=2, replication_factor=1,
                 config={"retention.ms": "3600000"}),
    ])
    assert result(created["events"]) is None

    producer = Producer({"bootstrap.servers": broker, "acks": "all"})
    for i in range(100):
        producer.produce("events", value=f"event-{i}", partition=0)
    for i in range(10):
        producer.produce("events", value=f"other-{i}", partition=1)
    assert producer.flush(DEADLINE) == 0
    assert offsets("events", 0) == (0, 100)

    # Delete below 40: the low watermark, ListOffsets and consumers agree.
    deleted = delete("events", 0, 40)
    assert deleted.low_watermark == 40, deleted
    assert offsets("events", 0) == (40, 100)
    check_consumption_starts_at_40()
    # A fetch below the log start is out of range.
    error = consume_from("events", 0, 10, 1, reset="error")
    assert isinstance(error, KafkaError), error
    assert error.code() == KafkaError._AUTO_OFFSET_RESET, error
    assert "out of range" in error.str().lower(), error

    # Lower than the start: nothing changes. -1: up to the high watermark.
    assert delete("events", 0, 20).low_watermark == 40
    assert delete("events", 1, -1).low_watermark == 10
    assert offsets("events", 1) == (10, 10)

    # Refusals.
    past = delete("events", 0, 1000)
    assert isinstance(past, KafkaError), past
    assert past.code() == KafkaError.OFFSET_OUT_OF_RANGE, past
    # librdkafka finds no leader for an unknown topic and does not ask.
    unknown = delete("nosuch", 0, 1)
    assert isinstance(unknown, KafkaError), unknown
    assert unknown.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._NOENT), unknown
    assert offsets("events", 0) == (40, 100)

    # The cluster as DescribeCluster presents it: this server alone.
    cluster = result(admin.describe_cluster())
    assert cluster.cluster_id == "sluice", cluster
    host, port = broker.rsplit(":", 1)
    assert [(n.host, n.port) for n in cluster.nodes] == [(host, int(port))], cluster.nodes
    node = cluster.nodes[0].id
    assert cluster.controller.id == node, cluster

    # The topic's configs: its own retention.ms, defaults, fixed behaviour.
    topic = ConfigResource(ResourceType.TOPIC, "events")
    missing = ConfigResource(ResourceType.TOPIC, "nosuch")
    described = admin.describe_configs([topic, missing])
    configs = result(described[topic])
    retention = configs["retention.ms"]
    assert retention.value == "3600000", retention
    assert retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, retention
    assert configs["retention.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_read_only
    for name in ("segment.bytes", "segment.ms", "max.message.bytes"):
        assert int(configs[name].value) > 0, configs[name]
    error = result(described[missing])
    assert isinstance(error, KafkaError), error
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, error

    # The broker's: the server defaults, read-only.
    broker_resource = ConfigResource(ResourceType.BROKER, str(node))
    broker_configs = result(admin.describe_configs([broker_resource])[broker_resource])
    assert int(broker_configs["log.segment.bytes"].value) > 0, broker_configs
    assert broker_configs["auto.create.topics.enable"].value == "true", broker_configs
    assert all(entry.is_read_only for entry in broker_configs.values())
elif phase == "after":
    assert offsets("events", 0) == (40, 100)
    assert offsets("events", 1) == (10, 10)
    check_consumption_starts_at_40()
else:
    raise SystemExit(f"unknown phase {phase!r}")

print("ok")
