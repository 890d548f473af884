"""Persistence across a clean restart: produce with every client, stop the
broker with SIGTERM (exit code 0), start it again on the same data dir and
port, and read everything back with every client."""

import asyncio
import shutil
import subprocess
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import test_aiokafka as aio
import test_confluent_kafka as ck
import test_kafka_python as kp
from helpers import records

KCAT = shutil.which("kcat")


def stop_and_restart(broker):
    code = broker.stop()
    assert code == 0, f"stele exited with {code} on SIGTERM:\n{broker.log_tail()}"
    assert "ready: accepting Kafka clients" in broker.log()
    broker.restart()


def test_everything_survives_a_sigterm_restart(fresh_broker, topic):
    b = fresh_broker
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    doomed = f"{topic}-deleted"
    futures = a.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1), NewTopic(doomed, num_partitions=2, replication_factor=1)],
        operation_timeout=15,
    )
    for f in futures.values():
        f.result(15)

    by_confluent = records(30, prefix="confluent")
    by_kafka_python = records(20, prefix="kafka-python")
    by_aiokafka = records(10, prefix="aiokafka")
    ck.produce(ck.producer(b, enable_idempotence=True, compression_type="gzip"), topic, by_confluent, partition=0)
    kp_producer = kp.producer(b, compression_type="lz4")
    try:
        kp.produce(kp_producer, topic, by_kafka_python, partition=1)
    finally:
        kp_producer.close()
    asyncio.run(aio.produce_with(b, topic, by_aiokafka, partition=2, compression_type="zstd"))
    ck.produce(ck.producer(b), doomed, records(3), partition=0)
    a.delete_topics([doomed], operation_timeout=15)[doomed].result(15)
    auto = f"{topic}-auto"
    ck.produce(ck.producer(b), auto, records(4, prefix="auto"))
    if KCAT:
        subprocess.run(
            [KCAT, "-b", b.bootstrap, "-P", "-t", f"{topic}-kcat"], input=b"k1\nk2\n", check=True, timeout=30
        )

    stop_and_restart(b)

    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=15)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]
    assert sorted(md.topics[auto].partitions) == [0]
    assert doomed not in md.topics, "a deleted topic came back after restart"

    want = {0: ck.expected(by_confluent, 0), 1: ck.expected(by_kafka_python, 1), 2: ck.expected(by_aiokafka, 2)}

    c = ck.consumer(b)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
        got = ck.consume(c, 60)
        assert ck.drain(c) == []
        c.assign([TopicPartition(auto, 0, OFFSET_BEGINNING)])
        assert ck.consume(c, 4) == ck.expected(records(4, prefix="auto"), 0)
    finally:
        c.close()
    assert {p: [r for r in got if r[0] == p] for p in range(3)} == want

    got = kp.read_partitions(b, topic, [0, 1, 2], 60)
    assert {p: [r for r in got if r[0] == p] for p in range(3)} == want

    got = asyncio.run(aio.read_partitions(b, topic, [0, 1, 2], 60))
    assert {p: [r for r in got if r[0] == p] for p in range(3)} == want

    if KCAT:
        out = subprocess.run(
            [KCAT, "-b", b.bootstrap, "-C", "-t", f"{topic}-kcat", "-o", "beginning", "-e", "-q", "-f", "%s\n"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        assert out.decode().splitlines() == ["k1", "k2"]

    # Appends continue after the recovered end.
    more = records(5, prefix="after")
    msgs = ck.produce(ck.producer(b, enable_idempotence=True), topic, more, partition=0)
    assert [m.offset() for m in msgs] == list(range(30, 35))


def test_live_clients_ride_through_a_restart(fresh_broker, topic):
    """An idempotent producer and an assigned consumer stay open while the
    broker restarts: they reconnect, and the producer's next sequence numbers
    are accepted (the broker rebuilds producer state from the log)."""
    b = fresh_broker
    p = Producer(
        {
            "bootstrap.servers": b.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        }
    )
    before = records(5, prefix="before")
    ck.produce(p, topic, before, partition=0)
    c = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": "stele-py-restart",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        }
    )
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert ck.consume(c, 5) == ck.expected(before, 0)

        stop_and_restart(b)

        after = records(5, prefix="after")
        msgs = ck.produce(p, topic, after, partition=0)
        assert [m.offset() for m in msgs] == list(range(5, 10))
        assert ck.consume(c, 5, timeout=30) == ck.expected(after, 0, first_offset=5)
    finally:
        c.close()


def test_stop_is_prompt_with_idle_connections_open(fresh_broker):
    """SIGTERM with clients still connected still exits 0, promptly."""
    b = fresh_broker
    p = Producer({"bootstrap.servers": b.bootstrap})
    p.list_topics(timeout=15)
    start = time.monotonic()
    code = b.stop()
    assert code == 0
    assert time.monotonic() - start < 10
    del p


def test_kafka_python_idempotent_producer_rides_through_a_restart(fresh_broker, topic):
    """kafka-python 3 (idempotent by default) keeps its producer id and
    sequences across the broker's restart."""
    b = fresh_broker
    p = kp.producer(b, reconnect_backoff_ms=50, reconnect_backoff_max_ms=200, delivery_timeout_ms=30000)
    try:
        before = records(5, prefix="before")
        assert [m.offset for m in kp.produce(p, topic, before, partition=0)] == list(range(5))
        stop_and_restart(b)
        after = records(5, prefix="after")
        assert [m.offset for m in kp.produce(p, topic, after, partition=0)] == list(range(5, 10))
    finally:
        p.close()
    assert kp.read_partitions(b, topic, [0], 10) == kp.expected(before + after, 0)
