"""kafka-python 3.x against the real broker.

kafka-python guesses the broker's version from ApiVersions and only writes v2
record batches and uses idempotence (its default in 3.x, with acks=all) when
the guess is at least 0.11; the tests check that it chose them.
"""

import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError  # noqa: E402

from helpers import BASE_TS, records, wait_until  # noqa: E402

TIMEOUT = 15
TIMEOUT_MS = TIMEOUT * 1000


def admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)


def producer(broker, **conf):
    conf.setdefault("linger_ms", 5)
    return KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, **conf)


def consumer(broker, **conf):
    conf.setdefault("group_id", None)  # no group: assign() only, no commits
    conf.setdefault("enable_auto_commit", False)
    conf.setdefault("auto_offset_reset", "earliest")
    conf.setdefault("fetch_max_wait_ms", 100)
    return KafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, **conf)


def create_topic(broker, name, partitions):
    a = admin(broker)
    try:
        a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)], timeout_ms=TIMEOUT_MS)
    finally:
        a.close()


def produce(p, topic, recs, partition=None):
    futures = [
        p.send(topic, value=v, key=k, headers=h, partition=partition, timestamp_ms=ts) for k, v, h, ts in recs
    ]
    p.flush(timeout=TIMEOUT)
    return [f.get(timeout=TIMEOUT) for f in futures]


def as_tuple(r):
    return (r.partition, r.offset, r.key, r.value, list(r.headers or []), r.timestamp)


def consume(c, count, timeout=TIMEOUT):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"consumed {len(out)} of {count}: {out}"
        for batch in c.poll(timeout_ms=200).values():
            out.extend(as_tuple(r) for r in batch)
    return out


def drain(c, quiet=0.5):
    out = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=100).values():
            out.extend((r.partition, r.offset) for r in batch)
    return out


def expected(recs, partition, first_offset=0):
    return [(partition, first_offset + i, k, v, h, ts) for i, (k, v, h, ts) in enumerate(recs)]


def read_partitions(broker, topic, partitions, count):
    c = consumer(broker)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = consume(c, count)
        assert drain(c) == []
        return got
    finally:
        c.close()


# --- metadata and admin ------------------------------------------------------


def test_client_sees_a_modern_broker(broker):
    """kafka-python's version guess gates v2 batches and idempotence."""
    p = producer(broker)
    try:
        version = p.config["api_version"]
        assert version is not None and version >= (2, 1), f"kafka-python guessed broker version {version}"
    finally:
        p.close()


def test_metadata_and_cluster_id(broker, topic):
    create_topic(broker, topic, 2)
    a = admin(broker)
    try:
        cluster = a.describe_cluster()
        assert cluster["cluster_id"]
        assert cluster["controller_id"] == cluster["brokers"][0]["broker_id"]
        assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", broker.port)]
        assert topic in a.list_topics()
        (described,) = a.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1]
    finally:
        a.close()
    c = consumer(broker)
    try:
        assert topic in c.topics()
        assert c.partitions_for_topic(topic) == {0, 1}
    finally:
        c.close()


def test_admin_create_and_delete_topic(broker, topic):
    a = admin(broker)
    try:
        a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], timeout_ms=TIMEOUT_MS)
        (described,) = a.describe_topics([topic])
        assert len(described["partitions"]) == 3
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=TIMEOUT_MS)
        a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        wait_until(lambda: topic not in a.list_topics(), what="topic gone")
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
    finally:
        a.close()


def test_auto_topic_creation_by_producing(broker, topic):
    recs = records(3)
    p = producer(broker)
    try:
        metas = produce(p, topic, recs)
    finally:
        p.close()
    assert [(m.partition, m.offset) for m in metas] == [(0, 0), (0, 1), (0, 2)]
    assert read_partitions(broker, topic, [0], 3) == expected(recs, 0)


# --- produce ---------------------------------------------------------------


def test_keys_headers_and_explicit_partitions_round_trip_in_order(broker, topic):
    create_topic(broker, topic, 3)
    keyed = records(20, prefix="keyed")
    keyless = records(10, prefix="keyless", keyed=False, headers=False)
    p = producer(broker)
    try:
        produce(p, topic, keyed, partition=0)
        produce(p, topic, keyless, partition=2)
        produce(p, topic, keyed[:5], partition=1)
    finally:
        p.close()
    got = read_partitions(broker, topic, [0, 1, 2], 35)
    assert [r for r in got if r[0] == 0] == expected(keyed, 0)
    assert [r for r in got if r[0] == 1] == expected(keyed[:5], 1)
    assert [r for r in got if r[0] == 2] == expected(keyless, 2)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(broker, topic, acks):
    create_topic(broker, topic, 1)
    recs = records(10, prefix=f"acks{acks}")
    # Idempotence needs acks=all; switch it off for the others.
    p = producer(broker, acks=acks, enable_idempotence=(acks == "all"))
    try:
        metas = produce(p, topic, recs, partition=0)
    finally:
        p.close()
    if acks != 0:
        assert [m.offset for m in metas] == list(range(10))
    assert read_partitions(broker, topic, [0], 10) == expected(recs, 0)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, topic, codec):
    create_topic(broker, topic, 1)
    recs = [(f"k{i}".encode(), (f"value {i} " * 50).encode(), [("c", str(codec).encode())], BASE_TS + i) for i in range(200)]
    p = producer(broker, compression_type=codec, linger_ms=20)
    try:
        metas = produce(p, topic, recs, partition=0)
    finally:
        p.close()
    assert [m.offset for m in metas] == list(range(200))
    assert read_partitions(broker, topic, [0], 200) == expected(recs, 0)


def test_idempotent_producer_is_the_default(broker, topic):
    create_topic(broker, topic, 2)
    p = producer(broker)
    try:
        assert p.config["enable_idempotence"] is True
        recs = records(40, prefix="idem")
        metas = produce(p, topic, recs[:20], partition=0) + produce(p, topic, recs[20:], partition=1)
        # InitProducerId gave it a real producer id.
        assert p._transaction_manager is not None and p._transaction_manager.producer_id_and_epoch.producer_id >= 0
    finally:
        p.close()
    assert [m.offset for m in metas] == list(range(20)) * 2
    got = read_partitions(broker, topic, [0, 1], 40)
    assert [r for r in got if r[0] == 0] == expected(recs[:20], 0)
    assert [r for r in got if r[0] == 1] == expected(recs[20:], 1)


# --- consume positions -------------------------------------------------------


def test_assign_seek_latest_offset_and_times(broker, topic):
    create_topic(broker, topic, 1)
    recs = records(10, prefix="pos")
    p = producer(broker)
    c = consumer(broker)
    tp = TopicPartition(topic, 0)
    try:
        produce(p, topic, recs, partition=0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}

        c.assign([tp])
        c.seek(tp, 4)
        assert consume(c, 6) == expected(recs[4:], 0, first_offset=4)

        found = c.offsets_for_times({tp: BASE_TS + 6})[tp]
        assert (found.offset, found.timestamp) == (6, BASE_TS + 6)
        assert c.offsets_for_times({tp: BASE_TS + 1000})[tp] is None
        c.seek(tp, found.offset)
        assert consume(c, 4) == expected(recs[6:], 0, first_offset=6)

        c.seek_to_beginning(tp)
        assert consume(c, 10) == expected(recs, 0)

        c.seek_to_end(tp)
        assert c.position(tp) == 10  # resolves the "latest" lookup now
        more = records(3, prefix="late")
        produce(p, topic, more, partition=0)
        assert consume(c, 3) == expected(more, 0, first_offset=10)
    finally:
        c.close()
        p.close()


def test_auto_offset_reset_latest(broker, topic):
    create_topic(broker, topic, 1)
    p = producer(broker)
    tp = TopicPartition(topic, 0)
    c = consumer(broker, auto_offset_reset="latest")
    try:
        produce(p, topic, records(5, prefix="old"), partition=0)
        c.assign([tp])
        assert c.position(tp) == 5
        more = records(2, prefix="new")
        produce(p, topic, more, partition=0)
        assert consume(c, 2) == expected(more, 0, first_offset=5)
    finally:
        c.close()
        p.close()


# --- edge cases --------------------------------------------------------------


def test_log_append_time_and_tombstones(broker, topic):
    a = admin(broker)
    try:
        a.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})], timeout_ms=TIMEOUT_MS
        )
    finally:
        a.close()
    before = int(time.time() * 1000)
    p = producer(broker)
    try:
        # kafka-python refuses a record with neither key nor value.
        recs = [(b"k", None, [], 1000), (b"", b"", [("empty", b"")], 2000)]
        metas = produce(p, topic, recs, partition=0)
    finally:
        p.close()
    ts = metas[0].timestamp
    assert ts >= before - 1000 and ts != 1000, "LogAppendTime: the broker's clock, not the client's"
    got = read_partitions(broker, topic, [0], 2)
    assert [(r[2], r[3], r[4]) for r in got] == [(b"k", None, []), (b"", b"", [("empty", b"")])]
    assert {r[5] for r in got} == {m.timestamp for m in metas}


def test_many_partitions_with_small_fetch_sizes(broker, topic):
    """Fetch sessions over partitions on both shards, each answer capped by
    max_partition_fetch_bytes / fetch_max_bytes."""
    create_topic(broker, topic, 8)
    per_partition = {part: [(None, bytes([part]) * 3000, [], BASE_TS + i) for i in range(100)] for part in range(8)}
    p = producer(broker)
    try:
        for part, recs in per_partition.items():
            produce(p, topic, recs, partition=part)
    finally:
        p.close()
    c = consumer(broker, max_partition_fetch_bytes=20000, fetch_max_bytes=50000)
    try:
        tps = [TopicPartition(topic, part) for part in range(8)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        got = consume(c, 800)
    finally:
        c.close()
    for part, recs in per_partition.items():
        assert [r for r in got if r[0] == part] == expected(recs, part)
