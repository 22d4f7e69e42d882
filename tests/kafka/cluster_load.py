"""A librdkafka producer (acks=all, idempotent) and a consumer group of two,
through a cluster's two proxies, while the test kills a broker with SIGKILL.

Prints "half" once half the messages are acknowledged and waits for a line
on stdin (the test kills the broker, then answers); produces the rest, then
consumes until every acknowledged message was seen. Checks that every
acknowledged message was consumed at the offset it was acknowledged with and
that none is stored twice; prints "ok" (details on stderr).

Usage: cluster_load.py BOOTSTRAP TOPIC MESSAGES
"""
import collections
import sys
import threading
import time

from confluent_kafka import Consumer, Producer

bootstrap, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 150

acked = {}  # value -> (partition, offset)
failed = []
consumed = {}  # (partition, offset) -> value
seen = set()  # the values consumed
lock = threading.Condition()  # notified on every consumed message
stop = threading.Event()


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def delivered(err, msg):
    if err is not None:
        failed.append(str(err))
    else:
        acked[msg.value().decode()] = (msg.partition(), msg.offset())


def consume(name):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "cluster-group",
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
    })
    consumer.subscribe([topic])
    while not stop.is_set():
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            log(name, "consume error:", msg.error())
            continue
        with lock:
            consumed[(msg.partition(), msg.offset())] = msg.value().decode()
            seen.add(msg.value().decode())
            lock.notify_all()
        try:
            consumer.commit(msg, asynchronous=True)
        except Exception as e:  # a commit during a rebalance: at least once
            log(name, "commit:", e)
    consumer.close()


consumers = [threading.Thread(target=consume, args=(f"consumer-{i}",)) for i in range(2)]
for t in consumers:
    t.start()

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "message.timeout.ms": 90000,
})


def produce(numbers):
    for i in numbers:
        while True:
            try:
                producer.produce(topic, value=f"m-{i}".encode(), key=str(i % 64).encode(),
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)


produce(range(total // 2))
producer.flush(60)
print("half", flush=True)
sys.stdin.readline()  # the broker is dead now
produce(range(total // 2, total))
left = producer.flush(100)
log(f"acknowledged {len(acked)}, failed {len(failed)}, unflushed {left}")

with lock:
    # Cheap until every acknowledged value may be in: a count first.
    lock.wait_for(lambda: len(seen) >= len(acked) and seen.issuperset(acked),
                  timeout=max(0.0, deadline - time.monotonic()))
stop.set()
for t in consumers:
    t.join(30)

problems = []
if failed or len(acked) != total:
    problems.append(f"{len(acked)} of {total} acknowledged; failures: {failed[:5]}")
wrong = [(v, at, consumed.get(at)) for v, at in acked.items() if consumed.get(at) != v]
if wrong:
    problems.append(f"{len(wrong)} acknowledged messages not consumed where acknowledged: {wrong[:5]}")
twice = [v for v, n in collections.Counter(consumed.values()).items() if n > 1]
if twice:
    problems.append(f"{len(twice)} messages stored twice: {twice[:5]}")
log(f"consumed {len(consumed)} records, {len(set(consumed.values()))} distinct")
if problems:
    for p in problems:
        log(p)
    sys.exit(1)
print("ok", flush=True)
