"""Consumer groups over the Kafka protocol with confluent-kafka (librdkafka)
against a real Sluice server. Run by tests/tests/kafka_clients.rs as
`groups.py SCENARIO BROKER`; prints a summary line and then "ok" when every
check passed (an AssertionError otherwise).

Every group member is a process of its own (`groups.py member ...`), so one
can be killed with SIGKILL. A member reports what happens to it as JSON
lines on stdout: each assignment with the committed offsets it starts from,
each batch of messages it consumed, each commit that succeeded or failed.
This orchestrator reads them and checks the full set: every message
consumed at least once, and a message consumed twice only when its first
consumer had not committed it (the next owner resumes from the committed
offset, not from the beginning).

Members commit by hand after processing (enable.auto.commit=False). A
commit can fail while the group rebalances (ILLEGAL_GENERATION,
REBALANCE_IN_PROGRESS, ...); a member then does what a Kafka application
does: records the failure, drops what it could not commit (the partition's
next owner reads it again: at least once) and goes on.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import (OFFSET_END, OFFSET_INVALID, Consumer,
                             ConsumerGroupState, ConsumerGroupTopicPartitions,
                             KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

# How long a wait for a condition may take before the check fails.
DEADLINE = 30.0
SESSION_TIMEOUT_MS = 6000
# Static members get longer, so a restart surely comes back within it.
STATIC_SESSION_TIMEOUT_MS = 20000

# Commit failures a rebalance causes: the application goes on, and the
# partition's next owner reads the uncommitted messages again.
REBALANCE_COMMIT_ERRORS = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._STATE,
}


# ---------------------------------------------------------------- a member


def member(broker, group, topic, name, options):
    """One group member: consumes `topic` until told "close" on stdin
    (EOF without it: the orchestrator is gone, exit at once)."""
    options = json.loads(options)
    commit_every = options.get("commit_every", 1)
    conf = {
        "bootstrap.servers": broker,
        "group.id": group,
        "client.id": name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 30000,
        "fetch.wait.max.ms": 100,
    }
    conf.update(options.get("config", {}))
    out = threading.Lock()

    def emit(**event):
        event["t"] = time.monotonic()
        line = json.dumps(event)
        with out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    stop = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "close":
                stop.set()
                return
        os._exit(3)

    threading.Thread(target=watch_stdin, daemon=True).start()

    consumer = Consumer(conf)
    # Processed and not yet committed: partition -> next offset.
    pending = {}

    def commit(partitions, reason):
        offsets = [TopicPartition(topic, p, pending[p])
                   for p in sorted(partitions) if p in pending]
        for tp in offsets:
            del pending[tp.partition]
        if not offsets:
            return
        try:
            answered = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            error = e.args[0]
            if error.code() not in REBALANCE_COMMIT_ERRORS:
                raise
            emit(ev="commit_failed", error=error.name(), reason=reason,
                 offsets={tp.partition: tp.offset for tp in offsets})
            return
        failed = [tp for tp in answered if tp.error is not None]
        for tp in failed:
            if tp.error.code() not in REBALANCE_COMMIT_ERRORS:
                raise KafkaException(tp.error)
        if failed:
            emit(ev="commit_failed", error=failed[0].error.name(),
                 reason=reason,
                 offsets={tp.partition: tp.offset for tp in failed})
        done = {tp.partition: tp.offset for tp in answered if tp.error is None}
        if done:
            emit(ev="commit", offsets=done, reason=reason)

    def on_assign(consumer, partitions):
        # Where this member starts: the group's committed offsets (-1001:
        # none, auto.offset.reset applies).
        committed = consumer.committed(partitions, timeout=10)
        emit(ev="assign", partitions=[tp.partition for tp in partitions],
             committed={tp.partition: tp.offset for tp in committed})

    def on_revoke(consumer, partitions):
        # A Kafka application commits what it processed before it lets go.
        commit([tp.partition for tp in partitions], "revoke")
        emit(ev="revoke", partitions=[tp.partition for tp in partitions])

    def on_lost(consumer, partitions):
        for tp in partitions:
            pending.pop(tp.partition, None)
        emit(ev="lost", partitions=[tp.partition for tp in partitions])

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=on_lost)
    emit(ev="started", pid=os.getpid())
    processed = 0
    while not stop.is_set():
        batch = []
        for message in consumer.consume(num_messages=200, timeout=0.2):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(message.error())
            batch.append([message.partition(), message.offset(),
                          message.value().decode()])
            pending[message.partition()] = message.offset() + 1
        if batch:
            emit(ev="batch", messages=batch)
            processed += len(batch)
        if processed >= commit_every:
            commit(list(pending), "processed")
            processed = 0
    commit(list(pending), "close")
    consumer.close()
    emit(ev="closed")


# ------------------------------------------------------- the orchestrator


def wait_until(what, condition, timeout=DEADLINE):
    """Waits until `condition` returns something true, asking it again as
    soon as any member reports (and at least every 50 ms, for conditions on
    the cluster itself); fails after `timeout` seconds, or as soon as a
    member process dies unasked."""
    deadline = time.monotonic() + timeout
    while True:
        with Member.reported:
            reports = Member.reports
        value = condition()
        if value:
            return value
        for member in Member.running:
            code = member.process.poll()
            assert code is None, f"member {member.name} exited with {code} (see its stderr)"
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        with Member.reported:
            Member.reported.wait_for(lambda: Member.reports != reports,
                                     timeout=min(left, 0.05))


class Member:
    """A member process and what it reported."""

    # Those not killed or closed.
    running = []
    # Notified on every report of any member (and when one's output ends).
    reported = threading.Condition()
    reports = 0

    def __init__(self, broker, group, topic, name, **options):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, __file__, "member", broker, group, topic, name,
             json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._events = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        Member.running.append(self)

    def _read(self):
        for line in self.process.stdout:
            event = json.loads(line)
            with Member.reported:
                self._events.append(event)
                Member.reports += 1
                Member.reported.notify_all()
        with Member.reported:
            Member.reports += 1
            Member.reported.notify_all()

    def events(self):
        with Member.reported:
            return list(self._events)

    def assignment(self, events=None):
        """The partitions it holds after `events` (default: all so far)."""
        held = set()
        for event in self.events() if events is None else events:
            if event["ev"] == "assign":
                held |= set(event["partitions"])
            elif event["ev"] in ("revoke", "lost"):
                held -= set(event["partitions"])
        return held

    def consumed(self):
        return [m for e in self.events() if e["ev"] == "batch"
                for m in e["messages"]]

    def uncommitted(self):
        """Messages of the partitions it holds consumed after its last
        commit (or after the offset it started from)."""
        committed, consumed = {}, {}
        for event in self.events():
            if event["ev"] == "assign":
                for p in event["partitions"]:
                    committed[p] = max(0, event["committed"][str(p)])
                    consumed[p] = committed[p]
            elif event["ev"] in ("revoke", "lost"):
                for p in event["partitions"]:
                    del committed[p], consumed[p]
            elif event["ev"] == "commit":
                for p, o in event["offsets"].items():
                    if int(p) in committed:
                        committed[int(p)] = o
            elif event["ev"] == "batch":
                for p, o, _ in event["messages"]:
                    consumed[p] = o + 1
        return sum(consumed[p] - committed[p] for p in consumed)

    def kill(self):
        """SIGKILL: no commit, no LeaveGroup."""
        Member.running.remove(self)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join(timeout=10)
        return time.monotonic()

    def close(self):
        """A clean close: commits and leaves the group."""
        Member.running.remove(self)
        self.process.stdin.write("close\n")
        self.process.stdin.close()
        code = self.process.wait(timeout=DEADLINE)
        self._reader.join(timeout=10)
        assert code == 0, f"member {self.name} exited with {code}"
        assert self.events()[-1]["ev"] == "closed", self.events()[-1]

    def stop(self):
        """Cleanup: kills the process if it still runs."""
        if self in Member.running:
            Member.running.remove(self)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def create_topic(admin, topic, partitions):
    admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                  replication_factor=1)])[topic].result(timeout=30)
    wait_until(f"{topic} in the metadata", lambda: len(
        admin.list_topics(topic, timeout=10).topics[topic].partitions) == partitions)


class Numbers:
    """An idempotent producer (acks=all) of numbered messages, message i
    to partition i % partitions."""

    def __init__(self, broker, topic, partitions):
        self.topic = topic
        self.partitions = partitions
        self.producer = Producer({"bootstrap.servers": broker, "acks": "all",
                                  "enable.idempotence": True,
                                  "linger.ms": 5})
        self.produced = []
        self.errors = []

    def produce(self, numbers):
        def delivered(error, message):
            if error is not None:
                self.errors.append(error)
            else:
                self.produced.append(int(message.value()))

        for i in numbers:
            self.producer.produce(self.topic, str(i).encode(),
                                  partition=i % self.partitions,
                                  on_delivery=delivered)
            self.producer.poll(0)
        assert self.producer.flush(30) == 0, "messages left unsent"
        assert not self.errors, self.errors


def consumed_values(members):
    return {int(v) for m in members for _, _, v in m.consumed()}


def check_stints(members, partitions):
    """Follows each partition from owner to owner ("stints": from the
    assignment that gave it to the revocation, loss, kill or close that
    took it away). Within a stint the offsets consumed are consecutive; a
    stint starts at the committed offset it was handed (the first one at
    0); that offset is not behind any commit an earlier owner reported (the
    group resumes from committed offsets, not from the beginning) and not
    past anything consumed before (no loss). A stint that ended in a
    revocation with its commit done leaves nothing to read again.

    Returns how many messages were consumed again after each member,
    "NAME" for its stints that ended in a kill or a close, "NAME (revoke)"
    or "NAME (lost)" for the others: what it consumed after its last
    commit."""
    stints = {p: [] for p in range(partitions)}
    for member in members:
        open_stints = {}
        for event in member.events():
            if event["ev"] == "assign":
                for p in event["partitions"]:
                    open_stints[p] = {"member": member.name, "consumed": [],
                                      "commits": [], "failed": False,
                                      "ended": None,
                                      "committed": event["committed"][str(p)]}
                    stints[p].append(open_stints[p])
            elif event["ev"] in ("revoke", "lost"):
                for p in event["partitions"]:
                    if p in open_stints:
                        open_stints.pop(p)["ended"] = event["ev"]
            elif event["ev"] == "batch":
                for p, o, _ in event["messages"]:
                    assert p in open_stints, (member.name, p, o, "not assigned")
                    open_stints[p]["consumed"].append((event["t"], o))
            elif event["ev"] in ("commit", "commit_failed"):
                for p, o in event["offsets"].items():
                    if int(p) in open_stints:
                        if event["ev"] == "commit":
                            open_stints[int(p)]["commits"].append(o)
                        else:
                            open_stints[int(p)]["failed"] = True
    again = {}
    for p, all_stints in stints.items():
        used = sorted((s for s in all_stints if s["consumed"]),
                      key=lambda s: s["consumed"][0][0])
        reported_commit, end, previous = 0, -1, None
        for i, stint in enumerate(used):
            offsets = [o for _, o in stint["consumed"]]
            start = offsets[0]
            who = f"partition {p}, stint {i} of {stint['member']}"
            assert offsets == list(range(start, start + len(offsets))), \
                f"{who}: offsets not consecutive: {offsets}"
            handed = stint["committed"]
            expected_start = 0 if handed == OFFSET_INVALID else handed
            assert start == expected_start, \
                f"{who}: started at {start}, not at the committed offset {handed}"
            assert start >= reported_commit, \
                f"{who}: started at {start}, behind the commit of {reported_commit} an earlier owner reported"
            assert start <= end + 1, \
                f"{who}: started at {start}, past {end + 1}: messages lost"
            if start <= end:
                assert previous["ended"] != "revoke" or previous["failed"], \
                    f"{who}: read from {start} again, though {previous['member']} committed up to {end + 1} when it let go"
                owner = previous["member"] + (f" ({previous['ended']})" if previous["ended"] else "")
                again[owner] = again.get(owner, 0) + end + 1 - start
            if offsets[-1] >= end:
                end, previous = offsets[-1], stint
            reported_commit = max([reported_commit] + stint["commits"])
    return again


def balanced(members, partitions, each):
    held = [m.assignment() for m in members]
    union = set().union(*held)
    return (all(len(h) == each for h in held)
            and union == set(range(partitions))
            and sum(len(h) for h in held) == partitions)


def covering(members, partitions):
    """Members hold every partition, each exactly once."""
    held = [m.assignment() for m in members]
    return (set().union(*held) == set(range(partitions))
            and sum(len(h) for h in held) == partitions)


def group_under_failure(broker, strategy, fourth_joins):
    """Scenarios 1 and 2: a balanced group of 3 processes, (a 4th joining,)
    one killed with SIGKILL while messages are produced; the survivors take
    over its partitions after the session timeout and nothing is lost."""
    topic, group, partitions = "numbers", f"numbers-{strategy}", 6
    admin = AdminClient({"bootstrap.servers": broker})
    create_topic(admin, topic, partitions)
    numbers = Numbers(broker, topic, partitions)
    numbers.produce(range(0, 3000))
    options = {"config": {"partition.assignment.strategy": strategy},
               "commit_every": 150}
    members = [Member(broker, group, topic, name, **options)
               for name in ("a", "b", "c")]
    everyone = list(members)
    summary = {}
    try:
        wait_until("3 members with 2 partitions each",
                   lambda: balanced(members, partitions, 2))
        wait_until("the first 3000 messages consumed",
                   lambda: consumed_values(members) >= set(range(3000)))

        if fourth_joins:
            # Cooperative: the 4th takes partitions from the others, who
            # keep the rest all along (no revocation of everything).
            before = {m.name: (m.assignment(), len(m.events())) for m in members}
            d = Member(broker, group, topic, "d", **options)
            everyone.append(d)
            members.append(d)
            wait_until("the 4th member to get partitions",
                       lambda: d.assignment() and covering(members, partitions))
            numbers.produce(range(3000, 4000))
            wait_until("messages 3000..4000 consumed by 4 members",
                       lambda: consumed_values(members) >= set(range(4000)))
            for m in members[:3]:
                held, seen = before[m.name]
                lowest = len(held)
                for i in range(seen, len(m.events()) + 1):
                    lowest = min(lowest, len(m.assignment(m.events()[:i])))
                assert lowest >= 1, f"{m.name} lost all its partitions when d joined"
                assert m.assignment() <= held, \
                    f"{m.name} got new partitions {m.assignment() - held}"
            summary["after_d"] = {m.name: sorted(m.assignment()) for m in members}

        # Kill one member mid-consumption, while messages are produced.
        victim = members[2]
        survivors = [m for m in members if m is not victim]
        first = 4000 if fourth_joins else 3000
        last = first + 3000
        producing = threading.Thread(
            target=produce_paced, args=(numbers, first, last))
        producing.start()
        wait_until("the victim to consume new messages and hold uncommitted ones",
                   lambda: any(int(v) >= first for _, _, v in victim.consumed()[-50:])
                   and victim.uncommitted() > 0)
        survivor_events = {m.name: len(m.events()) for m in survivors}
        victim_partitions = victim.assignment()
        killed_at = victim.kill()
        summary["victim"] = victim.name
        summary["uncommitted_by_victim"] = victim.uncommitted()
        wait_until("the survivors to hold every partition",
                   lambda: covering(survivors, partitions),
                   timeout=SESSION_TIMEOUT_MS / 1000 + DEADLINE)
        taken_at = max(e["t"] for m in survivors for e in m.events()
                       if e["ev"] == "assign"
                       and set(e["partitions"]) & victim_partitions)
        summary["rebalance_after_kill_s"] = round(taken_at - killed_at, 2)
        # Sessions end at the session timeout after the last heartbeat (at
        # most heartbeat.interval.ms before the kill).
        assert taken_at - killed_at >= SESSION_TIMEOUT_MS / 1000 - 1, summary
        if strategy == "cooperative-sticky":
            for m in survivors:
                later = m.events()[survivor_events[m.name]:]
                assert not [e for e in later if e["ev"] in ("revoke", "lost")], \
                    f"{m.name} gave up partitions when the victim died: {later}"
        else:
            assert balanced(survivors, partitions, 3), \
                [m.assignment() for m in survivors]

        producing.join()
        assert numbers.ok, "the paced producer failed"
        wait_until(f"all {last} messages consumed",
                   lambda: consumed_values(everyone) >= set(range(last)))
        for m in survivors:
            m.close()
    finally:
        for m in everyone:
            m.stop()

    check_full_set(everyone, numbers, partitions, summary)


def produce_paced(numbers, first, last):
    """Produces [first, last) in rounds of 100, a little apart, so the
    victim dies while messages still come."""
    numbers.ok = False
    for start in range(first, last, 100):
        numbers.produce(range(start, min(start + 100, last)))
        time.sleep(0.1)  # pacing the load, not waiting for anything
    numbers.ok = True


def check_full_set(members, numbers, partitions, summary):
    produced = sorted(numbers.produced)
    assert produced == list(range(len(produced))), "the producer lost or duplicated"
    consumed = [int(v) for m in members for _, _, v in m.consumed()]
    assert set(consumed) == set(produced), \
        f"not consumed: {sorted(set(produced) - set(consumed))[:20]}..."
    again = check_stints(members, partitions)
    duplicates = sum(again.values())
    assert len(consumed) - len(produced) == duplicates, (len(consumed), duplicates)
    # The killed member's stints: at most what it had not committed.
    victim = summary.get("victim")
    if victim is not None:
        assert again.get(victim, 0) <= summary["uncommitted_by_victim"], (again, summary)
    failures = {}
    for e in (e for m in members for e in m.events() if e["ev"] == "commit_failed"):
        failures[e["error"]] = failures.get(e["error"], 0) + 1
    summary.update(produced=len(produced), consumed=len(consumed),
                   duplicates=duplicates, consumed_again_after=again,
                   commit_failures=failures)
    print(json.dumps(summary))


def scenario_eager(broker):
    group_under_failure(broker, "range", fourth_joins=False)


def scenario_cooperative(broker):
    group_under_failure(broker, "cooperative-sticky", fourth_joins=True)


def static_member_restart(broker, strategy):
    """A static member (group.instance.id) killed and restarted within the
    session timeout gets its partitions back; the others never rebalance
    (whatever the assignor puts in the members' metadata)."""
    topic, group, partitions = "statics", f"statics-{strategy}", 6
    admin = AdminClient({"bootstrap.servers": broker})
    create_topic(admin, topic, partitions)
    numbers = Numbers(broker, topic, partitions)
    numbers.produce(range(0, 1200))

    # Commits every 150 messages: b is killed while it holds uncommitted
    # ones, which must not hinge on catching a short window between a
    # batch and its commit (paced rounds reach b ~35 messages at a time).
    def start(name, instance=None):
        return Member(broker, group, topic, name, commit_every=150,
                      config={"group.instance.id": instance or name,
                              "partition.assignment.strategy": strategy,
                              "session.timeout.ms": STATIC_SESSION_TIMEOUT_MS})

    members = [start(name) for name in ("a", "b", "c")]
    everyone = list(members)
    summary = {}
    try:
        wait_until("3 static members with 2 partitions each",
                   lambda: balanced(members, partitions, 2))
        wait_until("the first 1200 messages consumed",
                   lambda: consumed_values(members) >= set(range(1200)))
        a, b, c = members
        before = describe(admin, group)
        assert before.state == ConsumerGroupState.STABLE, before.state
        ids = {m.group_instance_id: m.member_id for m in before.members}
        assert set(ids) == {"a", "b", "c"}, ids
        held = b.assignment()
        quiet = {m.name: len(m.events()) for m in (a, c)}

        # Killed mid-consumption, while messages are produced.
        producing = threading.Thread(target=produce_paced,
                                     args=(numbers, 1200, 2400))
        producing.start()
        wait_until("b to consume new messages and hold uncommitted ones",
                   lambda: any(int(v) >= 1200 for _, _, v in b.consumed()[-50:])
                   and b.uncommitted() > 0)
        killed_at = b.kill()
        summary["victim"] = b.name
        summary["uncommitted_by_victim"] = b.uncommitted()
        b2 = start("b2", instance="b")
        everyone.append(b2)
        members = [a, b2, c]
        wait_until("the restarted member to be assigned", b2.assignment)
        back_at = next(e["t"] for e in b2.events() if e["ev"] == "assign")
        summary["restart_to_assignment_s"] = round(back_at - killed_at, 2)
        assert back_at - killed_at < STATIC_SESSION_TIMEOUT_MS / 1000, summary
        assert b2.assignment() == held, (b2.assignment(), held)

        producing.join()
        assert numbers.ok, "the paced producer failed"
        wait_until("messages 1200..2400 consumed",
                   lambda: consumed_values(everyone) >= set(range(2400)))
        for m in (a, c):
            later = [e for e in m.events()[quiet[m.name]:]
                     if e["ev"] in ("assign", "revoke", "lost")]
            assert not later, f"{m.name} rebalanced when b came back: {later}"
        after = describe(admin, group)
        assert after.state == ConsumerGroupState.STABLE, after.state
        new_ids = {m.group_instance_id: m.member_id for m in after.members}
        assert set(new_ids) == {"a", "b", "c"}, new_ids
        assert new_ids["a"] == ids["a"] and new_ids["c"] == ids["c"], (ids, new_ids)
        assert new_ids["b"] != ids["b"], "b's new incarnation kept the old member id"
        assigned = {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions}
                    for m in after.members}
        assert assigned["b"] == held, (assigned, held)
        for m in members:
            m.close()
    finally:
        for m in everyone:
            m.stop()
    check_full_set(everyone, numbers, partitions, summary)


def scenario_static(broker):
    static_member_restart(broker, "range")


def scenario_static_cooperative(broker):
    static_member_restart(broker, "cooperative-sticky")


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(timeout=30)


def scenario_offsets_for_times(broker):
    """Consumer.offsets_for_times answers the first offset whose timestamp
    is at or after the one asked, and consuming from there starts there."""
    topic, partitions = "stamped", 2
    admin = AdminClient({"bootstrap.servers": broker})
    create_topic(admin, topic, partitions)
    # Whole seconds a day ago; message i at base + i s, to partition i % 2
    # (offset i // 2). One batch per partition: the lookup finds a record
    # inside a batch.
    base = (int(time.time()) - 86400) * 1000
    producer = Producer({"bootstrap.servers": broker, "acks": "all",
                         "linger.ms": 200})
    for i in range(100):
        producer.produce(topic, str(i).encode(), partition=i % 2,
                         timestamp=base + i * 1000)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": broker, "group.id": "times",
                         "enable.auto.commit": False})

    def lookup(partition, timestamp):
        [answer] = consumer.offsets_for_times(
            [TopicPartition(topic, partition, timestamp)], timeout=10)
        assert answer.error is None, answer.error
        return answer.offset

    # Between two messages: the later one.
    assert lookup(0, base + 37_500) == 19  # message 38
    assert lookup(1, base + 37_500) == 19  # message 39
    # Exactly a message's timestamp: that message.
    assert lookup(0, base + 40_000) == 20  # message 40
    assert lookup(1, base + 41_000) == 20  # message 41
    # Before the first: the first; after the last: the end (-1).
    assert lookup(0, base - 5_000) == 0
    assert lookup(1, base + 1_000_000) == OFFSET_END

    # Consume from the offset found: message 38 first, then the rest of
    # partition 0 in order, each with its own timestamp.
    start = lookup(0, base + 37_500)
    consumer.assign([TopicPartition(topic, 0, start)])
    got = drain(consumer, 31)
    assert [int(m.value()) for m in got] == list(range(38, 100, 2)), \
        [int(m.value()) for m in got]
    assert [m.timestamp()[1] for m in got] == [base + i * 1000 for i in range(38, 100, 2)]
    # Seek there on a partition already being read.
    consumer.assign([TopicPartition(topic, 1, 0)])
    [first] = drain(consumer, 1)
    assert int(first.value()) == 1
    consumer.seek(TopicPartition(topic, 1, lookup(1, base + 80_500)))
    got = drain(consumer, 10)
    assert [int(m.value()) for m in got] == list(range(81, 100, 2)), \
        [int(m.value()) for m in got]
    consumer.close()


def drain(consumer, count):
    got = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < count:
        assert time.monotonic() < deadline, f"got {len(got)} of {count} messages"
        for message in consumer.consume(num_messages=count - len(got), timeout=0.5):
            if message.error():
                raise KafkaException(message.error())
            got.append(message)
    return got


def scenario_admin(broker):
    """AdminClient's group APIs: list, describe (members, assignments,
    state), committed offsets, and delete (refused while members are live,
    done once they left)."""
    topic, group, partitions = "ledger", "ledger-readers", 4
    admin = AdminClient({"bootstrap.servers": broker})
    create_topic(admin, topic, partitions)
    numbers = Numbers(broker, topic, partitions)
    numbers.produce(range(400))
    members = [Member(broker, group, topic, name,
                      config={"partition.assignment.strategy": "range"})
               for name in ("a", "b")]
    try:
        wait_until("2 members with 2 partitions each",
                   lambda: balanced(members, partitions, 2))
        wanted = {p: 100 for p in range(partitions)}
        wait_until("every message committed",
                   lambda: committed(admin, group) == wanted)

        listed = admin.list_consumer_groups().result(timeout=30)
        assert not listed.errors, listed.errors
        ours = [g for g in listed.valid if g.group_id == group]
        assert len(ours) == 1, listed.valid
        assert ours[0].state == ConsumerGroupState.STABLE, ours[0].state
        assert not ours[0].is_simple_consumer_group
        stable = admin.list_consumer_groups(
            states={ConsumerGroupState.STABLE}).result(timeout=30).valid
        assert group in {g.group_id for g in stable}, stable
        empty = admin.list_consumer_groups(
            states={ConsumerGroupState.EMPTY}).result(timeout=30).valid
        assert group not in {g.group_id for g in empty}, empty

        described = describe(admin, group)
        assert described.group_id == group
        assert described.state == ConsumerGroupState.STABLE, described.state
        assert described.partition_assignor == "range", described.partition_assignor
        assert not described.is_simple_consumer_group
        assert sorted(m.client_id for m in described.members) == ["a", "b"]
        by_client = {}
        for m in described.members:
            assert m.member_id and m.host, m
            by_client[m.client_id] = {(tp.topic, tp.partition)
                                      for tp in m.assignment.topic_partitions}
        for m in members:
            assert by_client[m.name] == {(topic, p) for p in m.assignment()}, by_client

        some = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, 1), TopicPartition(topic, 3)])])
        answer = some[group].result(timeout=30)
        assert [(tp.partition, tp.offset) for tp in answer.topic_partitions] == \
            [(1, 100), (3, 100)], answer.topic_partitions

        refused = admin.delete_consumer_groups([group])[group]
        try:
            refused.result(timeout=30)
            raise AssertionError("a group with live members was deleted")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.NON_EMPTY_GROUP, e

        for m in members:
            m.close()
        wait_until("the group to be empty",
                   lambda: describe(admin, group).state == ConsumerGroupState.EMPTY)
        assert committed(admin, group) == wanted, "offsets survive the members"
        admin.delete_consumer_groups([group])[group].result(timeout=30)
        listed = admin.list_consumer_groups().result(timeout=30).valid
        assert group not in {g.group_id for g in listed}, listed
        assert committed(admin, group) == {}, "the offsets went with the group"
        try:
            gone = describe(admin, group)
            assert gone.state == ConsumerGroupState.DEAD, gone.state
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
        try:
            admin.delete_consumer_groups(["nosuch"])["nosuch"].result(timeout=30)
            raise AssertionError("an unknown group was deleted")
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
    finally:
        for m in members:
            m.stop()


def committed(admin, group):
    """The group's committed offsets, by partition (all of them)."""
    answer = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    return {tp.partition: tp.offset for tp in answer.topic_partitions
            if tp.offset >= 0}


SCENARIOS = {
    "eager": scenario_eager,
    "cooperative": scenario_cooperative,
    "static": scenario_static,
    "static-cooperative": scenario_static_cooperative,
    "offsets-for-times": scenario_offsets_for_times,
    "admin": scenario_admin,
}

if __name__ == "__main__":
    if sys.argv[1] == "member":
        member(*sys.argv[2:])
    else:
        SCENARIOS[sys.argv[1]](sys.argv[2])
        print("ok")
