"""aiokafka 0.14 against the real broker (ApiVersions v0 only, v2 batches).

Each test runs its own event loop with asyncio.run: no plugin needed.
"""

import asyncio
import functools
import time

import pytest

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from helpers import BASE_TS, records  # noqa: E402

TIMEOUT = 15
TIMEOUT_MS = TIMEOUT * 1000
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3


def run_async(fn):
    """Runs an async test function in a fresh event loop, with a deadline."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 45))

    return wrapper


class Admin:
    def __init__(self, broker):
        self.client = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)

    async def __aenter__(self):
        await self.client.start()
        return self.client

    async def __aexit__(self, *exc):
        await self.client.close()


def producer(broker, **conf):
    conf.setdefault("linger_ms", 5)
    # aiokafka defaults to acks=1, which Stele acknowledges before the fsync;
    # until that completes the records sit above the high watermark (durable
    # offset), so ListOffsets(latest) right after the ack may still say 0.
    # Kafka allows that for acks=1 too; tests that read "latest" right after
    # producing need acks=all (the other clients' default).
    conf.setdefault("acks", "all")
    return AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, **conf)


def consumer(broker, **conf):
    conf.setdefault("group_id", None)  # no group: assign() only, no commits
    conf.setdefault("enable_auto_commit", False)
    conf.setdefault("auto_offset_reset", "earliest")
    conf.setdefault("fetch_max_wait_ms", 100)
    return AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, **conf)


def topic_errors(response):
    """{topic: error_code} from a CreateTopics/DeleteTopics response."""
    obj = response.to_object()
    rows = obj.get("topic_errors", obj.get("topic_error_codes"))
    return {row["topic"]: row["error_code"] for row in rows}


async def create_topic(broker, name, partitions):
    async with Admin(broker) as a:
        response = await a.create_topics([NewTopic(name, partitions, 1)], timeout_ms=TIMEOUT_MS)
    assert topic_errors(response) == {name: 0}


async def produce(p, topic, recs, partition=None):
    futures = [
        await p.send(topic, value=v, key=k, headers=h, partition=partition, timestamp_ms=ts) for k, v, h, ts in recs
    ]
    await p.flush()
    return [await f for f in futures]


def as_tuple(r):
    return (r.partition, r.offset, r.key, r.value, list(r.headers or []), r.timestamp)


async def consume(c, count, timeout=TIMEOUT):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"consumed {len(out)} of {count}: {out}"
        for batch in (await c.getmany(timeout_ms=200)).values():
            out.extend(as_tuple(r) for r in batch)
    return out


async def drain(c, quiet=0.5):
    out = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        for batch in (await c.getmany(timeout_ms=100)).values():
            out.extend((r.partition, r.offset) for r in batch)
    return out


def expected(recs, partition, first_offset=0):
    # aiokafka returns headers as a tuple of (str, bytes) pairs.
    return [(partition, first_offset + i, k, v, list(h), ts) for i, (k, v, h, ts) in enumerate(recs)]


async def read_partitions(broker, topic, partitions, count):
    c = consumer(broker)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = await consume(c, count)
        assert await drain(c) == []
        return got
    finally:
        await c.stop()


async def produce_with(broker, topic, recs, partition=None, **conf):
    p = producer(broker, **conf)
    await p.start()
    try:
        return await produce(p, topic, recs, partition)
    finally:
        await p.stop()


# --- metadata and admin ------------------------------------------------------


@run_async
async def test_metadata_and_cluster_id(broker, topic):
    await create_topic(broker, topic, 2)
    async with Admin(broker) as a:
        cluster = await a.describe_cluster()
        assert cluster["cluster_id"]
        assert cluster["controller_id"] == 1
        assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", broker.port)]
        assert topic in await a.list_topics()
        (described,) = await a.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1]
    c = consumer(broker)
    await c.start()
    try:
        assert topic in await c.topics()
        # The consumer's own cache only holds topics it uses; ask for all.
        cluster = await c._client.fetch_all_metadata()
        assert cluster.partitions_for_topic(topic) == {0, 1}
        assert cluster.leader_for_partition(TopicPartition(topic, 1)) == 1
    finally:
        await c.stop()


@run_async
async def test_admin_create_and_delete_topic(broker, topic):
    async with Admin(broker) as a:
        response = await a.create_topics([NewTopic(topic, 3, 1)], timeout_ms=TIMEOUT_MS)
        assert topic_errors(response) == {topic: 0}
        (described,) = await a.describe_topics([topic])
        assert len(described["partitions"]) == 3
        response = await a.create_topics([NewTopic(topic, 1, 1)], timeout_ms=TIMEOUT_MS)
        assert topic_errors(response) == {topic: TOPIC_ALREADY_EXISTS}
        response = await a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        assert topic_errors(response) == {topic: 0}
        deadline = time.monotonic() + 10
        while topic in await a.list_topics():
            assert time.monotonic() < deadline, "topic still listed after delete"
            await asyncio.sleep(0.05)
        response = await a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        assert topic_errors(response) == {topic: UNKNOWN_TOPIC_OR_PARTITION}


@run_async
async def test_auto_topic_creation_by_producing(broker, topic):
    recs = records(3)
    metas = await produce_with(broker, topic, recs)
    assert [(m.partition, m.offset) for m in metas] == [(0, 0), (0, 1), (0, 2)]
    assert await read_partitions(broker, topic, [0], 3) == expected(recs, 0)


# --- produce ---------------------------------------------------------------


@run_async
async def test_keys_headers_and_explicit_partitions_round_trip_in_order(broker, topic):
    await create_topic(broker, topic, 3)
    keyed = records(20, prefix="keyed")
    keyless = records(10, prefix="keyless", keyed=False, headers=False)
    p = producer(broker)
    await p.start()
    try:
        await produce(p, topic, keyed, partition=0)
        await produce(p, topic, keyless, partition=2)
        await produce(p, topic, keyed[:5], partition=1)
    finally:
        await p.stop()
    got = await read_partitions(broker, topic, [0, 1, 2], 35)
    assert [r for r in got if r[0] == 0] == expected(keyed, 0)
    assert [r for r in got if r[0] == 1] == expected(keyed[:5], 1)
    assert [r for r in got if r[0] == 2] == expected(keyless, 2)


@pytest.mark.parametrize("acks", [0, 1, "all"])
@run_async
async def test_acks(broker, topic, acks):
    await create_topic(broker, topic, 1)
    recs = records(10, prefix=f"acks{acks}")
    metas = await produce_with(broker, topic, recs, partition=0, acks=acks)
    if acks != 0:
        assert [m.offset for m in metas] == list(range(10))
    assert await read_partitions(broker, topic, [0], 10) == expected(recs, 0)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
@run_async
async def test_compression(broker, topic, codec):
    await create_topic(broker, topic, 1)
    recs = [(f"k{i}".encode(), (f"value {i} " * 50).encode(), [("c", str(codec).encode())], BASE_TS + i) for i in range(200)]
    metas = await produce_with(broker, topic, recs, partition=0, compression_type=codec, linger_ms=20)
    assert [m.offset for m in metas] == list(range(200))
    assert await read_partitions(broker, topic, [0], 200) == expected(recs, 0)


@run_async
async def test_idempotent_producer(broker, topic):
    await create_topic(broker, topic, 2)
    recs = records(40, prefix="idem")
    p = producer(broker, enable_idempotence=True)
    await p.start()
    try:
        metas = await produce(p, topic, recs[:20], partition=0) + await produce(p, topic, recs[20:], partition=1)
        assert p._txn_manager is not None and p._txn_manager.producer_id >= 0
    finally:
        await p.stop()
    assert [m.offset for m in metas] == list(range(20)) * 2
    got = await read_partitions(broker, topic, [0, 1], 40)
    assert [r for r in got if r[0] == 0] == expected(recs[:20], 0)
    assert [r for r in got if r[0] == 1] == expected(recs[20:], 1)


# --- consume positions -------------------------------------------------------


@run_async
async def test_assign_seek_latest_offset_and_times(broker, topic):
    await create_topic(broker, topic, 1)
    recs = records(10, prefix="pos")
    tp = TopicPartition(topic, 0)
    p = producer(broker)
    c = consumer(broker)
    await p.start()
    await c.start()
    try:
        await produce(p, topic, recs, partition=0)
        assert await c.beginning_offsets([tp]) == {tp: 0}
        assert await c.end_offsets([tp]) == {tp: 10}

        c.assign([tp])
        c.seek(tp, 4)
        assert await consume(c, 6) == expected(recs[4:], 0, first_offset=4)

        found = (await c.offsets_for_times({tp: BASE_TS + 6}))[tp]
        assert (found.offset, found.timestamp) == (6, BASE_TS + 6)
        assert (await c.offsets_for_times({tp: BASE_TS + 1000}))[tp] is None
        c.seek(tp, found.offset)
        assert await consume(c, 4) == expected(recs[6:], 0, first_offset=6)

        await c.seek_to_beginning(tp)
        assert await consume(c, 10) == expected(recs, 0)

        await c.seek_to_end(tp)
        assert await c.position(tp) == 10
        more = records(3, prefix="late")
        await produce(p, topic, more, partition=0)
        assert await consume(c, 3) == expected(more, 0, first_offset=10)
    finally:
        await c.stop()
        await p.stop()


@run_async
async def test_auto_offset_reset_latest(broker, topic):
    await create_topic(broker, topic, 1)
    tp = TopicPartition(topic, 0)
    await produce_with(broker, topic, records(5, prefix="old"), partition=0)
    c = consumer(broker, auto_offset_reset="latest")
    await c.start()
    try:
        c.assign([tp])
        assert await c.position(tp) == 5
        more = records(2, prefix="new")
        await produce_with(broker, topic, more, partition=0)
        assert await consume(c, 2) == expected(more, 0, first_offset=5)
    finally:
        await c.stop()


# --- edge cases --------------------------------------------------------------


@run_async
async def test_log_append_time_and_tombstones(broker, topic):
    async with Admin(broker) as a:
        response = await a.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})], timeout_ms=TIMEOUT_MS
        )
    assert topic_errors(response) == {topic: 0}
    before = int(time.time() * 1000)
    recs = [(b"k", None, [], 1000), (b"", b"", [("empty", b"")], 2000)]
    metas = await produce_with(broker, topic, recs, partition=0)
    ts = metas[0].timestamp
    assert ts >= before - 1000 and ts != 1000, "LogAppendTime: the broker's clock, not the client's"
    got = await read_partitions(broker, topic, [0], 2)
    assert [(r[2], r[3], r[4]) for r in got] == [(b"k", None, []), (b"", b"", [("empty", b"")])]
    assert {r[5] for r in got} == {m.timestamp for m in metas}


@run_async
async def test_many_partitions_with_small_fetch_sizes(broker, topic):
    await create_topic(broker, topic, 8)
    per_partition = {part: [(None, bytes([part]) * 3000, [], BASE_TS + i) for i in range(100)] for part in range(8)}
    p = producer(broker)
    await p.start()
    try:
        for part, recs in per_partition.items():
            await produce(p, topic, recs, partition=part)
    finally:
        await p.stop()
    c = consumer(broker, max_partition_fetch_bytes=20000, fetch_max_bytes=50000)
    await c.start()
    try:
        tps = [TopicPartition(topic, part) for part in range(8)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = await consume(c, 800)
    finally:
        await c.stop()
    for part, recs in per_partition.items():
        assert [r for r in got if r[0] == part] == expected(recs, part)
