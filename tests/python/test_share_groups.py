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
