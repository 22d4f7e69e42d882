"""Topic administration over the Kafka protocol with confluent-kafka's
AdminClient (librdkafka): create (with configs), grow, list, delete, and
the refusals a Kafka user expects. Run by tests/tests/kafka.rs with the
broker address; prints "ok" when every check passed."""

import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

broker = sys.argv[1]
admin = AdminClient({"bootstrap.servers": broker})


def wait(futures):
    """Each future's exception (None when it succeeded), by name."""
    out = {}
    for name, future in futures.items():
        try:
            future.result(timeout=30)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


created = wait(admin.create_topics([
    NewTopic("orders", num_partitions=3, replication_factor=1),
    NewTopic("audit", num_partitions=2, replication_factor=3,
             config={"retention.ms": "3600000", "segment.bytes": "1048576"}),
]))
assert created == {"orders": None, "audit": None}, created

topics = admin.list_topics(timeout=10).topics
assert len(topics["orders"].partitions) == 3, topics["orders"].partitions
assert len(topics["audit"].partitions) == 2, topics["audit"].partitions

again = wait(admin.create_topics([NewTopic("orders", num_partitions=3)]))
assert again["orders"].code() == KafkaError.TOPIC_ALREADY_EXISTS, again

bad = wait(admin.create_topics([
    NewTopic("badconf", num_partitions=1, config={"cleanup.policy": "compact"}),
    NewTopic("bad/name", num_partitions=1),
]))
assert bad["badconf"].code() == KafkaError.INVALID_CONFIG, bad
assert "cleanup.policy" in bad["badconf"].str(), bad
assert bad["bad/name"].code() == KafkaError.TOPIC_EXCEPTION, bad

grown = wait(admin.create_partitions([NewPartitions("orders", 5)]))
assert grown == {"orders": None}, grown
assert len(admin.list_topics(timeout=10).topics["orders"].partitions) == 5

deleted = wait(admin.delete_topics(["audit", "nosuch"]))
assert deleted["audit"] is None, deleted
assert deleted["nosuch"].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, deleted
assert "audit" not in admin.list_topics(timeout=10).topics

print("ok")
