"""Share groups (KIP-932) end to end with confluent-kafka's ShareConsumer
(librdkafka 2.16) against the real broker: ShareGroupHeartbeat for
membership, ShareFetch/ShareAcknowledge for records.

Each test gets its own broker with `group.share.enable` and short share
timeouts (1 s heartbeats, 6 s sessions, 2 s record locks, delivery limit
3), and its own group set to `share.auto.offset.reset=earliest`, so that
records produced before the consumers join are delivered. Deadlines are
generous; nothing asserts on elapsed time."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from conftest import Broker

LOCK_MS = 2000
DELIVERY_LIMIT = 3
SHARE_CONFIG = (
    '"group.share.enable" = true\n'
    '"group.share.min.session.timeout.ms" = 6000\n'
    '"group.share.session.timeout.ms" = 6000\n'
    '"group.share.min.heartbeat.interval.ms" = 1000\n'
    '"group.share.heartbeat.interval.ms" = 1000\n'
    '"group.share.min.record.lock.duration.ms" = 1000\n'
    f'"group.share.record.lock.duration.ms" = {LOCK_MS}\n'
    f'"group.share.delivery.count.limit" = {DELIVERY_LIMIT}\n'
)
DEADLINE_S = 60


@pytest.fixture
def share_broker(request):
    b = Broker("share_" + request.node.name[:30].replace("[", "_").replace("]", "_"), extra_config=SHARE_CONFIG)
    yield b
    b.close(keep=getattr(request.node, "_stele_failed", False))


@pytest.fixture
def group():
    return f"share-{uuid.uuid4().hex[:8]}"


def create_topic(broker, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=30)


def set_group_configs(broker, group, configs):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()],
    )
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(timeout=30)


def produce(broker, topic, values):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


def share_consumer(broker, group, explicit=False, **extra):
    conf = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
    }
    conf.update(extra)
    c = ShareConsumer(conf)
    return c


def poll_messages(consumer, timeout=1.0):
    return [m for m in consumer.poll(timeout) if m.error() is None]


def setup(broker, group, topic, values, partitions=1):
    create_topic(broker, topic, partitions)
    set_group_configs(broker, group, {"share.auto.offset.reset": "earliest"})
    produce(broker, topic, values)


def test_share_consumer_receives_records(share_broker, group, topic):
    """One ShareConsumer in implicit mode receives every record once."""
    values = [f"v{i}".encode() for i in range(20)]
    setup(share_broker, group, topic, values)
    c = share_consumer(share_broker, group)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < len(values) and time.monotonic() < deadline:
        got.extend(m.value() for m in poll_messages(c))
    c.close()
    assert sorted(got) == sorted(values)


def drain(consumer, want, deadline_s=DEADLINE_S, on_message=None):
    """Polls until `want(got)` holds; returns the messages polled."""
    got = []
    deadline = time.monotonic() + deadline_s
    while not want(got) and time.monotonic() < deadline:
        for m in poll_messages(consumer):
            got.append(m)
            if on_message:
                on_message(m)
    return got


def test_three_consumers_share_one_partition_exactly_once(share_broker, group, topic):
    """Three members on a one-partition topic all receive records, and
    together receive every record exactly once (implicit acknowledgement)."""
    create_topic(share_broker, topic)
    set_group_configs(share_broker, group, {"share.auto.offset.reset": "earliest"})
    consumers = [share_consumer(share_broker, group) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    p = Producer({"bootstrap.servers": share_broker.bootstrap, "acks": "all", "linger.ms": 0})
    produced, got = [], [[] for _ in consumers]
    deadline = time.monotonic() + 120
    # Small batches keep coming until every member got some: acquisition is
    # per batch, so no one member can take everything at once.
    while time.monotonic() < deadline and not (all(got) and len(produced) >= 60):
        if len(produced) < 3000:
            for _ in range(5):
                v = f"r{len(produced)}".encode()
                produced.append(v)
                p.produce(topic, value=v)
            p.flush(30)
        for i, c in enumerate(consumers):
            got[i].extend(m.value() for m in poll_messages(c, 0.2))
    assert all(got), f"each member gets records: {[len(g) for g in got]}"
    while time.monotonic() < deadline and sum(map(len, got)) < len(produced):
        for i, c in enumerate(consumers):
            got[i].extend(m.value() for m in poll_messages(c, 0.2))
    for c in consumers:
        c.close()
    everything = [v for g in got for v in g]
    assert sorted(everything) == sorted(produced), "every record exactly once"


def test_release_redelivers_with_higher_delivery_count(share_broker, group, topic):
    """A released record comes back, its delivery count one higher."""
    setup(share_broker, group, topic, [b"only"])
    c = share_consumer(share_broker, group, explicit=True)
    c.subscribe([topic])
    first = drain(c, lambda g: len(g) >= 1)
    assert [m.value() for m in first] == [b"only"]
    assert first[0].delivery_count() == 1
    c.acknowledge(first[0], AcknowledgeType.RELEASE)
    c.commit_sync()
    again = drain(c, lambda g: len(g) >= 1)
    assert [(m.value(), m.offset()) for m in again] == [(b"only", first[0].offset())]
    assert again[0].delivery_count() == 2
    c.acknowledge(again[0], AcknowledgeType.ACCEPT)
    c.commit_sync()
    c.close()


def test_rejected_record_is_never_redelivered(share_broker, group, topic):
    """A rejected record is archived: later records arrive, it never does."""
    setup(share_broker, group, topic, [b"bad", b"good"])
    c = share_consumer(share_broker, group, explicit=True)
    c.subscribe([topic])
    seen = []

    def ack(m):
        seen.append(m.value())
        c.acknowledge(m, AcknowledgeType.REJECT if m.value() == b"bad" else AcknowledgeType.ACCEPT)

    drain(c, lambda g: b"good" in [m.value() for m in g], on_message=ack)
    c.commit_sync()
    produce(share_broker, topic, [b"sentinel"])
    drain(c, lambda g: b"sentinel" in [m.value() for m in g], on_message=ack)
    c.close()
    other = share_consumer(share_broker, group, explicit=True)
    other.subscribe([topic])
    produce(share_broker, topic, [b"sentinel2"])
    late = drain(other, lambda g: b"sentinel2" in [m.value() for m in g])
    other.close()
    assert seen.count(b"bad") == 1, seen
    assert b"bad" not in [m.value() for m in late]


def test_unacknowledged_records_go_to_another_consumer_after_the_lock(share_broker, group, topic):
    """A member that holds records without acknowledging loses them once
    the lock lapses; another member gets them, delivery count 2."""
    values = [f"held{i}".encode() for i in range(5)]
    setup(share_broker, group, topic, values)
    holder = share_consumer(share_broker, group, explicit=True)
    holder.subscribe([topic])
    held = drain(holder, lambda g: len(g) >= len(values))
    assert sorted(m.value() for m in held) == sorted(values)
    other = share_consumer(share_broker, group, explicit=True)
    other.subscribe([topic])
    taken = drain(other, lambda g: len(g) >= len(values))
    assert sorted(m.value() for m in taken) == sorted(values)
    assert all(m.delivery_count() >= 2 for m in taken)
    for m in taken:
        other.acknowledge(m, AcknowledgeType.ACCEPT)
    other.commit_sync()
    other.close()
    holder.close()


def test_delivery_count_limit_archives_a_poison_record(share_broker, group, topic):
    """A record released on every delivery is delivered exactly
    `delivery.count.limit` times, then archived."""
    setup(share_broker, group, topic, [b"poison"])
    c = share_consumer(share_broker, group, explicit=True)
    c.subscribe([topic])
    counts = []

    def handle(m):
        if m.value() == b"poison":
            counts.append(m.delivery_count())
            c.acknowledge(m, AcknowledgeType.RELEASE)
        else:
            c.acknowledge(m, AcknowledgeType.ACCEPT)
        c.commit_sync()

    drain(c, lambda g: len(counts) >= DELIVERY_LIMIT, on_message=handle)
    produce(share_broker, topic, [b"sentinel"])
    drain(c, lambda g: b"sentinel" in [m.value() for m in g], on_message=handle)
    c.close()
    assert counts == list(range(1, DELIVERY_LIMIT + 1))


CRASHING_CONSUMER = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import ShareConsumer
    c = ShareConsumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                       "share.acknowledgement.mode": "explicit"})
    c.subscribe([sys.argv[3]])
    got = 0
    while got == 0:
        got += sum(1 for m in c.poll(1.0) if m.error() is None)
    print("got", got, flush=True)
    time.sleep(3600)
    """
)


def test_crashed_consumer_frees_its_records(share_broker, group, topic):
    """A consumer SIGKILLed while holding records: they go to another."""
    values = [f"c{i}".encode() for i in range(10)]
    setup(share_broker, group, topic, values)
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_CONSUMER, share_broker.bootstrap, group, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = crashing.stdout.readline()
        assert line.startswith("got "), line
    finally:
        os.kill(crashing.pid, signal.SIGKILL)
        crashing.wait()
    c = share_consumer(share_broker, group)
    c.subscribe([topic])
    got = drain(c, lambda g: len({m.value() for m in g}) >= len(values))
    c.close()
    assert {m.value() for m in got} == set(values)


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_share_progress_survives_restart(share_broker, group, topic, how):
    """Acknowledged records are not delivered again after a restart (clean
    or kill -9); records produced afterwards are."""
    before = [f"b{i}".encode() for i in range(10)]
    setup(share_broker, group, topic, before)
    c = share_consumer(share_broker, group, explicit=True)
    c.subscribe([topic])
    got = drain(c, lambda g: len(g) >= len(before), on_message=lambda m: c.acknowledge(m, AcknowledgeType.ACCEPT))
    assert sorted(m.value() for m in got) == sorted(before)
    c.commit_sync()
    c.close()
    if how == "sigterm":
        share_broker.stop()
    else:
        share_broker.kill()
    share_broker.restart()
    after = [f"a{i}".encode() for i in range(5)]
    produce(share_broker, topic, after)
    c = share_consumer(share_broker, group)
    c.subscribe([topic])
    got = drain(c, lambda g: len(g) >= len(after))
    # Anything acknowledged before would have come first (lower offsets).
    c.close()
    assert sorted(m.value() for m in got) == sorted(after)
