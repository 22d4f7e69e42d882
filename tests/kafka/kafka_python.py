"""kafka-python (a pure-Python Kafka client) against a real Sluice server:
it infers a modern broker version from ApiVersions, produces with headers
(v2 record batches), consumes in a group, commits what it processed, and a
new consumer of the group resumes exactly at the committed offsets. Run by
tests/tests/kafka_clients.rs with the broker address; prints "ok" when
every check passed."""

import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

broker = sys.argv[1]
topic, group, partitions, count = "kp", "kp-readers", 3, 300
DEADLINE = 30.0

admin = KafkaAdminClient(bootstrap_servers=broker)
admin.create_topics([NewTopic(topic, num_partitions=partitions,
                              replication_factor=1)])
admin.close()

# api_version is not given: the client asks the broker (ApiVersions) and
# must find at least Kafka 2.0 (headers need 0.11, v2 batches).
producer = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=5)
assert producer.config["api_version"] >= (2, 0), producer.config["api_version"]


def headers(i):
    return [("seq", str(i).encode()), ("origin", b"kafka-python"), ("empty", b"")]


sent = [producer.send(topic, key=f"k{i}".encode(), value=str(i).encode(),
                      headers=headers(i), partition=i % partitions)
        for i in range(count)]
producer.flush(timeout=DEADLINE)
for i, future in enumerate(sent):
    metadata = future.get(timeout=DEADLINE)
    assert (metadata.partition, metadata.offset) == (i % partitions, i // partitions), \
        (i, metadata)
producer.close()


def consumer():
    c = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      max_poll_records=40, session_timeout_ms=10000,
                      heartbeat_interval_ms=1000)
    assert c.config["api_version"] >= (2, 0), c.config["api_version"]
    assert c._client.check_version() >= (2, 0), c._client.check_version()
    return c


def check(record):
    i = int(record.value)
    assert record.key == f"k{i}".encode(), record
    assert list(record.headers) == headers(i), record.headers
    assert (record.partition, record.offset) == (i % partitions, i // partitions), record
    return i


# The first consumer processes 150 messages, commits exactly those and
# closes; the rest of what it fetched is not processed.
first = consumer()
processed, last = [], {}
deadline = time.monotonic() + DEADLINE
while len(processed) < count // 2:
    assert time.monotonic() < deadline, f"consumed {len(processed)} of {count // 2}"
    for tp, records in first.poll(timeout_ms=500).items():
        for record in records:
            if len(processed) == count // 2:
                break
            processed.append(check(record))
            last[tp] = record.offset
first.commit({tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()})
for tp, offset in last.items():
    assert first.committed(tp) == offset + 1, (tp, first.committed(tp), offset)
first.close()

# A new member of the group starts at the committed offsets: nothing
# processed twice, nothing skipped.
second = consumer()
rest, starts = [], {}
deadline = time.monotonic() + DEADLINE
while len(processed) + len(rest) < count:
    assert time.monotonic() < deadline, f"consumed {len(processed) + len(rest)} of {count}"
    for tp, records in second.poll(timeout_ms=500).items():
        for record in records:
            starts.setdefault(tp.partition, record.offset)
            rest.append(check(record))
for p in range(partitions):
    tp = TopicPartition(topic, p)
    expected = last[tp] + 1 if tp in last else 0
    assert starts.get(p, expected) == expected, (p, starts, last)
assert not set(processed) & set(rest), sorted(set(processed) & set(rest))
assert sorted(processed + rest) == list(range(count))
second.commit()
for p in range(partitions):
    assert second.committed(TopicPartition(topic, p)) == count // partitions
second.close()
print("ok")
