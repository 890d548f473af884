"""confluent-kafka (librdkafka 2.16) against the real broker."""

import json
import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from helpers import BASE_TS, records, wait_until  # noqa: E402

TIMEOUT = 15


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, "broker.address.family": "v4"})


def producer(broker, **conf):
    base = {
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        "linger.ms": 5,
        "message.timeout.ms": TIMEOUT * 1000,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def consumer(broker, **conf):
    base = {
        "bootstrap.servers": broker.bootstrap,
        "broker.address.family": "v4",
        # group.id is required by the client, but nothing here uses the group:
        # no subscribe, no commits (groups are test_groups.py's).
        "group.id": "stele-py-confluent",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    base.update({k if k.endswith("_cb") else k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def create_topic(broker, name, partitions):
    a = admin(broker)  # must outlive its futures
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=TIMEOUT
    )
    futures[name].result(TIMEOUT)


def produce(p, topic, recs, partition=None):
    """Produces (key, value, headers, ts) records; returns delivery reports."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg))

    for key, value, headers, ts in recs:
        kwargs = dict(value=value, key=key, headers=headers, timestamp=ts, on_delivery=on_delivery)
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, "records still queued after flush"
    errors = [err for err, _ in reports if err is not None]
    assert not errors, f"delivery errors: {errors}"
    assert len(reports) == len(recs)
    return [msg for _, msg in reports]


def consume(c, count, timeout=TIMEOUT):
    """Polls until count records arrived; returns them as tuples."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"consumed {len(out)} of {count}: {out}"
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(f"consume error: {msg.error()}")
        out.append(
            (msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers() or [], msg.timestamp()[1])
        )
    return out


def drain(c, quiet=0.5):
    out = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        msg = c.poll(0.1)
        if msg is not None and not msg.error():
            out.append((msg.partition(), msg.offset()))
    return out


def expected(recs, partition, first_offset=0):
    return [(partition, first_offset + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(recs)]


# --- metadata and admin ------------------------------------------------------


def test_metadata_lists_brokers_topics_and_cluster_id(broker, topic):
    create_topic(broker, topic, 2)
    md = admin(broker).list_topics(timeout=TIMEOUT)
    assert md.cluster_id, "Metadata v2+ carries a cluster id"
    assert md.controller_id in md.brokers, "the controller is a real broker"
    (b,) = md.brokers.values()
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert topic in md.topics
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1]
    for p in t.partitions.values():
        assert p.leader == b.id and p.replicas == [b.id] and p.isrs == [b.id]
    # One topic by name, from the consumer's API too.
    c = consumer(broker)
    try:
        md = c.list_topics(topic, timeout=TIMEOUT)
        assert list(md.topics) == [topic]
    finally:
        c.close()


def test_admin_create_and_delete_topic(broker, topic):
    a = admin(broker)
    a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], operation_timeout=TIMEOUT)[
        topic
    ].result(TIMEOUT)
    md = a.list_topics(timeout=TIMEOUT)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]

    again = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=TIMEOUT)
    with pytest.raises(confluent_kafka.KafkaException) as exc:
        again[topic].result(TIMEOUT)
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    a.delete_topics([topic], operation_timeout=TIMEOUT)[topic].result(TIMEOUT)
    wait_until(lambda: topic not in a.list_topics(timeout=TIMEOUT).topics, what="topic gone from metadata")

    missing = a.delete_topics([topic], operation_timeout=TIMEOUT)
    with pytest.raises(confluent_kafka.KafkaException) as exc:
        missing[topic].result(TIMEOUT)
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_auto_topic_creation_by_producing(broker, topic):
    recs = records(3)
    p = producer(broker)
    msgs = produce(p, topic, recs)
    assert [m.offset() for m in msgs] == [0, 1, 2]
    md = admin(broker).list_topics(timeout=TIMEOUT)
    assert list(md.topics[topic].partitions) == [0], "num.partitions defaults to 1"
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert consume(c, 3) == expected(recs, 0)
    finally:
        c.close()


# --- produce ---------------------------------------------------------------


def test_keys_headers_and_explicit_partitions_round_trip_in_order(broker, topic):
    create_topic(broker, topic, 3)
    p = producer(broker)
    keyed = records(20, prefix="keyed")
    keyless = records(10, prefix="keyless", keyed=False, headers=False)
    produce(p, topic, keyed, partition=0)
    produce(p, topic, keyless, partition=2)
    produce(p, topic, keyed[:5], partition=1)

    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        got = consume(c, 35)
        assert drain(c) == []
    finally:
        c.close()
    by_partition = {p: [r for r in got if r[0] == p] for p in range(3)}
    assert by_partition[0] == expected(keyed, 0)
    assert by_partition[1] == expected(keyed[:5], 1)
    assert by_partition[2] == [(2, i, None, v, [], ts) for i, (_, v, _, ts) in enumerate(keyless)]


def test_keyed_records_are_partitioned_by_key(broker, topic):
    """Without an explicit partition the client hashes keys: same key, same partition."""
    create_topic(broker, topic, 3)
    p = producer(broker)
    recs = [(f"key-{i % 4}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(24)]
    msgs = produce(p, topic, recs)
    partition_of = {}
    for m in msgs:
        assert partition_of.setdefault(m.key(), m.partition()) == m.partition()
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        got = consume(c, 24)
    finally:
        c.close()
    for key, part in partition_of.items():
        assert [r[3] for r in got if r[2] == key] == [v for k, v, _, _ in recs if k == key]
        assert {r[0] for r in got if r[2] == key} == {part}


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, topic, acks):
    create_topic(broker, topic, 1)
    recs = records(10, prefix=f"acks{acks}")
    msgs = produce(producer(broker, acks=acks), topic, recs, partition=0)
    if acks != "0":
        assert [m.offset() for m in msgs] == list(range(10))
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert consume(c, 10) == expected(recs, 0)
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, topic, codec):
    create_topic(broker, topic, 1)
    # Compressible values, enough to make several records share a batch.
    recs = [(f"k{i}".encode(), (f"value {i} " * 50).encode(), [("c", codec.encode())], BASE_TS + i) for i in range(200)]
    msgs = produce(producer(broker, compression_type=codec, linger_ms=20), topic, recs, partition=0)
    assert [m.offset() for m in msgs] == list(range(200))
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert consume(c, 200) == expected(recs, 0)
    finally:
        c.close()


def test_idempotent_producer(broker, topic):
    create_topic(broker, topic, 2)
    p = producer(broker, enable_idempotence=True)  # acks=all, InitProducerId
    recs = records(50, prefix="idem")
    msgs = produce(p, topic, recs[:25], partition=0) + produce(p, topic, recs[25:], partition=1)
    assert [m.offset() for m in msgs] == list(range(25)) * 2
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING), TopicPartition(topic, 1, OFFSET_BEGINNING)])
        got = consume(c, 50)
        assert drain(c) == []
    finally:
        c.close()
    assert [r for r in got if r[0] == 0] == expected(recs[:25], 0)
    assert [r for r in got if r[0] == 1] == expected(recs[25:], 1)


# --- consume positions -------------------------------------------------------


def test_assign_from_latest_offset_and_times(broker, topic):
    create_topic(broker, topic, 1)
    p = producer(broker)
    recs = records(10, prefix="pos")
    produce(p, topic, recs, partition=0)

    c = consumer(broker)
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
        assert (low, high) == (0, 10)

        # From a given offset.
        c.assign([TopicPartition(topic, 0, 4)])
        assert consume(c, 6) == expected(recs[4:], 0, first_offset=4)

        # seek() back on the assigned partition.
        c.seek(TopicPartition(topic, 0, 8))
        assert consume(c, 2) == expected(recs[8:], 0, first_offset=8)

        # offsets_for_times: the first record at or after the timestamp.
        found = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 6)], timeout=TIMEOUT)
        assert found[0].offset == 6 and found[0].error is None
        found_late = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 1000)], timeout=TIMEOUT)
        assert found_late[0].offset == -1, "a timestamp after every record finds no offset (-1)"
        c.assign([TopicPartition(topic, 0, found[0].offset)])
        assert consume(c, 4) == expected(recs[6:], 0, first_offset=6)

        # From latest: only what is produced afterwards.
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        assert drain(c) == []
    finally:
        c.close()

    # From latest: only what is produced afterwards. librdkafka's position()
    # stays unset until a record arrives, so its statistics tell when the
    # "latest" lookup resolved (fetch_state active at next_offset 10).
    stats = {}

    def on_stats(raw):
        part = json.loads(raw)["topics"].get(topic, {}).get("partitions", {}).get("0", {})
        stats.update(fetch_state=part.get("fetch_state"), next_offset=part.get("next_offset"))

    c = consumer(broker, statistics_interval_ms=50, stats_cb=on_stats)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        wait_until(
            lambda: drain(c, 0.05) == [] and stats.get("fetch_state") == "active" and stats.get("next_offset") == 10,
            what=f"fetch at the end (stats {stats})",
        )
        more = records(3, prefix="late")
        produce(p, topic, more, partition=0)
        assert consume(c, 3) == expected(more, 0, first_offset=10)
    finally:
        c.close()


def test_out_of_range_offset_resets_per_auto_offset_reset(broker, topic):
    create_topic(broker, topic, 1)
    recs = records(5, prefix="oor")
    produce(producer(broker), topic, recs, partition=0)
    c = consumer(broker, auto_offset_reset="earliest")
    try:
        c.assign([TopicPartition(topic, 0, 1000)])  # OFFSET_OUT_OF_RANGE -> earliest
        assert consume(c, 5) == expected(recs, 0)
    finally:
        c.close()


def test_consumer_with_group_id_and_no_commits_needs_no_coordinator(broker, topic):
    """group.id set, enable.auto.commit=false, assign(): works without ever
    asking for a coordinator; close() must not hang either."""
    create_topic(broker, topic, 1)
    recs = records(3, prefix="grp")
    produce(producer(broker), topic, recs, partition=0)
    c = consumer(broker, group_id="some-group")
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert consume(c, 3) == expected(recs, 0)
    start = time.monotonic()
    c.close()
    assert time.monotonic() - start < 5

    # The group.id requirement is the client's own rule, not the broker's.
    with pytest.raises((ValueError, confluent_kafka.KafkaException), match="group.id must be set"):
        Consumer({"bootstrap.servers": broker.bootstrap})


# --- edge cases --------------------------------------------------------------


@pytest.mark.parametrize(
    "new_topic, code",
    [
        (lambda t: NewTopic(t + " bad!", num_partitions=1, replication_factor=1), KafkaError.TOPIC_EXCEPTION),
        (lambda t: NewTopic(t, num_partitions=0, replication_factor=1), KafkaError.INVALID_PARTITIONS),
        (lambda t: NewTopic(t, num_partitions=1, replication_factor=3), KafkaError.INVALID_REPLICATION_FACTOR),
        (lambda t: NewTopic(t, num_partitions=1, replication_factor=1, config={"no.such.config": "1"}), KafkaError.INVALID_CONFIG),
    ],
    ids=["bad-name", "zero-partitions", "replication-3", "unknown-config"],
)
def test_admin_rejects_invalid_topics(broker, topic, new_topic, code):
    a = admin(broker)
    nt = new_topic(topic)
    with pytest.raises(confluent_kafka.KafkaException) as exc:
        a.create_topics([nt], operation_timeout=TIMEOUT)[nt.topic].result(TIMEOUT)
    assert exc.value.args[0].code() == code
    assert nt.topic not in a.list_topics(timeout=TIMEOUT).topics


def test_admin_validate_only_creates_nothing(broker, topic):
    a = admin(broker)
    a.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], validate_only=True)[topic].result(TIMEOUT)
    assert topic not in a.list_topics(timeout=TIMEOUT).topics


def test_log_append_time_topic_config(broker, topic):
    a = admin(broker)
    a.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"message.timestamp.type": "LogAppendTime"})]
    )[topic].result(TIMEOUT)
    before = int(time.time() * 1000)
    (msg,) = produce(producer(broker), topic, [(b"k", b"v", [], 1000)], partition=0)
    after = int(time.time() * 1000)
    ts_type, ts = msg.timestamp()
    assert ts_type == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        (got,) = consume(c, 1)
    finally:
        c.close()
    assert got[5] == ts


def test_record_larger_than_max_message_bytes_is_refused(broker, topic):
    create_topic(broker, topic, 1)
    p = producer(broker, message_max_bytes=5_000_000)
    with pytest.raises(AssertionError, match="MSG_SIZE_TOO_LARGE"):
        produce(p, topic, [(None, b"x" * 2_000_000, [], BASE_TS)], partition=0)
    # The partition is still usable.
    produce(p, topic, [(None, b"small", [], BASE_TS)], partition=0)


def test_null_and_empty_keys_values_and_headers(broker, topic):
    create_topic(broker, topic, 1)
    recs = [
        (None, None, [], BASE_TS),  # tombstone without key
        (b"k", None, [], BASE_TS + 1),  # tombstone
        (b"", b"", [("empty", b""), ("null", None)], BASE_TS + 2),
        (None, b"v", [("dup", b"1"), ("dup", b"2")], BASE_TS + 3),
    ]
    produce(producer(broker), topic, recs, partition=0)
    c = consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert consume(c, 4) == expected(recs, 0)
    finally:
        c.close()


def test_consumer_metadata_does_not_auto_create_topics(broker, topic):
    c = consumer(broker)  # allow.auto.create.topics=false by default
    try:
        md = c.list_topics(topic, timeout=TIMEOUT)
        assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    assert topic not in admin(broker).list_topics(timeout=TIMEOUT).topics


def test_fetch_long_poll_answers_as_soon_as_data_arrives(broker, topic):
    create_topic(broker, topic, 1)
    p = producer(broker, linger_ms=0)
    produce(p, topic, records(1), partition=0)
    c = consumer(broker, fetch_wait_max_ms=5000)
    try:
        c.assign([TopicPartition(topic, 0, 1)])
        assert drain(c, 1.0) == []  # a fetch is now parked at the end
        start = time.monotonic()
        produce(p, topic, records(1, prefix="wake"), partition=0)
        consume(c, 1, timeout=10)
        elapsed = time.monotonic() - start
    finally:
        c.close()
    assert elapsed < 2.5, f"the parked fetch answered after {elapsed:.2f} s (fetch.wait.max.ms=5000)"


def test_offsets_for_times_inside_one_compressed_batch(broker, topic):
    create_topic(broker, topic, 1)
    recs = [(None, f"v{i}".encode(), [], BASE_TS + 10 * i) for i in range(200)]
    produce(producer(broker, compression_type="zstd", linger_ms=50), topic, recs, partition=0)
    c = consumer(broker)
    try:
        for ts, offset in [(BASE_TS, 0), (BASE_TS + 1500, 150), (BASE_TS + 1495, 150), (BASE_TS + 1990, 199)]:
            (found,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT)
            assert found.offset == offset, f"timestamp {ts}"
    finally:
        c.close()


def test_empty_partition_offsets(broker, topic):
    create_topic(broker, topic, 1)
    c = consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (0, 0)
        (found,) = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS)], timeout=TIMEOUT)
        assert found.offset == -1
    finally:
        c.close()


def test_many_partitions_with_small_fetch_sizes(broker, topic):
    """Partitions on both shards in one Fetch, each answer capped by
    max.partition.fetch.bytes / fetch.max.bytes."""
    create_topic(broker, topic, 8)
    p = producer(broker)
    per_partition = {part: [(None, bytes([part]) * 3000, [], BASE_TS + i) for i in range(100)] for part in range(8)}
    for part, recs in per_partition.items():
        produce(p, topic, recs, partition=part)
    c = consumer(broker, max_partition_fetch_bytes=20000, fetch_max_bytes=50000, message_max_bytes=50000)
    try:
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(8)])
        got = consume(c, 800)
    finally:
        c.close()
    for part, recs in per_partition.items():
        assert [r for r in got if r[0] == part] == expected(recs, part)


def test_recreated_topic_starts_empty(broker, topic):
    """Delete then create the same name: no old records or offsets survive."""
    create_topic(broker, topic, 2)
    p = producer(broker)
    produce(p, topic, records(5, prefix="old"), partition=1)
    a = admin(broker)
    a.delete_topics([topic], operation_timeout=TIMEOUT)[topic].result(TIMEOUT)
    create_topic(broker, topic, 3)
    c = consumer(broker)
    try:
        for part in range(3):
            assert c.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT) == (0, 0)
        new = records(1, prefix="new")
        (msg,) = produce(p, topic, new, partition=1)
        assert msg.offset() == 0
        c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(3)])
        assert consume(c, 1) == expected(new, 1)
        assert drain(c) == []
    finally:
        c.close()


def test_dynamic_broker_config_applies_to_existing_topics(fresh_broker, topic):
    # A dynamic per-broker value (BROKER "1"; librdkafka refuses the empty
    # name of the cluster-wide default client-side) is described with its
    # source, enforced at once on a topic without an override, and DELETE
    # restores the previous limit. A broker of its own: the value would
    # change every topic of the module.
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, ResourceType

    create_topic(fresh_broker, topic, 1)
    a = admin(fresh_broker)

    def alter(op, value=None):
        entry = ConfigEntry("message.max.bytes", value, incremental_operation=op)
        resource = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])
        for future in a.incremental_alter_configs([resource]).values():
            future.result(TIMEOUT)

    alter(AlterConfigOpType.SET, "2000")
    resource = ConfigResource(ResourceType.BROKER, "1")
    described = a.describe_configs([resource])[resource].result(TIMEOUT)
    entry = described["message.max.bytes"]
    assert entry.value == "2000"
    assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert not entry.is_read_only
    p = producer(fresh_broker, message_max_bytes=5_000_000)
    with pytest.raises(AssertionError, match="MSG_SIZE_TOO_LARGE"):
        produce(p, topic, [(None, b"x" * 5000, [], BASE_TS)], partition=0)

    alter(AlterConfigOpType.DELETE)
    produce(p, topic, [(None, b"x" * 5000, [], BASE_TS)], partition=0)
