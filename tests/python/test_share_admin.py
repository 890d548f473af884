"""Share group GROUP configs (KIP-932) through confluent-kafka's AdminClient:
describe_configs and incremental_alter_configs on GROUP resources, which
librdkafka 2.10+ sends as ConfigResource type 32. The values are validated
against the broker's group.share.* bounds (INVALID_CONFIG), shown with
their source, and durable across a kill -9. GROUP configs need no share
group, nor group.share.enable: as in Kafka they are keyed by the group id."""

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

TIMEOUT = 15
# Kafka's DYNAMIC_GROUP_CONFIG (8) and DEFAULT_CONFIG (5).
DYNAMIC_GROUP_CONFIG = ConfigSource.GROUP_CONFIG.value
DEFAULT_CONFIG = ConfigSource.DEFAULT_CONFIG.value


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def alter(a, group, entries):
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[ConfigEntry(name, value, incremental_operation=op) for name, op, value in entries],
    )
    for future in a.incremental_alter_configs([resource]).values():
        future.result(TIMEOUT)


def described(a, group):
    resource = ConfigResource(ResourceType.GROUP, group)
    return a.describe_configs([resource])[resource].result(TIMEOUT)


def test_share_group_configs_are_set_described_validated_and_durable(fresh_broker):
    # Proves the admin client's view: every share key is described with
    # the broker's value as DEFAULT_CONFIG; set values come back as
    # DYNAMIC_GROUP_CONFIG; values outside the broker's bounds and unknown
    # names fail with INVALID_CONFIG and change nothing; a kill -9 keeps
    # what was set; DELETE goes back to the broker's value.
    a = admin(fresh_broker)
    group = "py-share-configs"
    configs = described(a, group)
    assert {
        "share.session.timeout.ms",
        "share.heartbeat.interval.ms",
        "share.record.lock.duration.ms",
        "share.delivery.count.limit",
        "share.auto.offset.reset",
        "share.isolation.level",
    } == set(configs)
    assert configs["share.record.lock.duration.ms"].value == "30000"
    assert configs["share.auto.offset.reset"].source == DEFAULT_CONFIG

    alter(
        a,
        group,
        [
            ("share.auto.offset.reset", AlterConfigOpType.SET, "earliest"),
            ("share.delivery.count.limit", AlterConfigOpType.SET, "4"),
            ("share.record.lock.duration.ms", AlterConfigOpType.SET, "45000"),
        ],
    )
    for name, value in [
        ("share.delivery.count.limit", "11"),
        ("share.record.lock.duration.ms", "70000"),
        ("share.isolation.level", "serializable"),
        ("consumer.session.timeout.ms", "50000"),
    ]:
        with pytest.raises(KafkaException) as refused:
            alter(a, group, [(name, AlterConfigOpType.SET, value)])
        assert refused.value.args[0].name() == "INVALID_CONFIG", refused.value
        assert name in refused.value.args[0].str()

    configs = described(a, group)
    assert configs["share.auto.offset.reset"].value == "earliest"
    assert configs["share.auto.offset.reset"].source == DYNAMIC_GROUP_CONFIG
    assert configs["share.delivery.count.limit"].value == "4"

    fresh_broker.kill()
    fresh_broker.restart()
    a = admin(fresh_broker)
    configs = described(a, group)
    assert configs["share.record.lock.duration.ms"].value == "45000"
    assert configs["share.record.lock.duration.ms"].source == DYNAMIC_GROUP_CONFIG

    alter(a, group, [("share.delivery.count.limit", AlterConfigOpType.DELETE, None)])
    configs = described(a, group)
    assert configs["share.delivery.count.limit"].value == "5"
    assert configs["share.delivery.count.limit"].source == DEFAULT_CONFIG
