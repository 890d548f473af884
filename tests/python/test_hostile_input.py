"""Malformed and hostile input over raw sockets: each closes only that
connection; a real client connected beside it keeps working, and the broker
keeps accepting new connections."""

import random
import socket
import struct

import pytest

from helpers import (
    closed_by_peer,
    connect,
    parse_api_versions_v0,
    read_frame,
    records,
    request_frame,
)

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

TIMEOUT_MS = 15000
API_VERSIONS = 18
METADATA = 3


@pytest.fixture(scope="module")
def bystander(broker):
    """A kafka-python producer connected before any hostile input and kept
    across the module: its connection must survive everything below."""
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS, linger_ms=0)
    p.send("hostile-bystander", b"warm-up").get(timeout=15)
    yield p
    p.close()


def assert_real_client_works(broker, bystander, topic):
    recs = records(3, prefix=topic)
    metas = [bystander.send(topic, key=k, value=v, headers=h, partition=0).get(timeout=15) for k, v, h, _ in recs]
    c = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS,
        fetch_max_wait_ms=100,
    )
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, metas[0].offset)
        got = []
        for _ in range(50):
            for batch in c.poll(timeout_ms=200).values():
                got.extend((r.key, r.value) for r in batch)
            if len(got) >= 3:
                break
        assert got == [(k, v) for k, v, _, _ in recs]
    finally:
        c.close()
    assert_api_versions_v0_answers(broker)


def assert_api_versions_v0_answers(broker):
    with connect(broker) as s:
        s.sendall(request_frame(API_VERSIONS, 0, 4242))
        correlation_id, error_code, apis, _ = parse_api_versions_v0(read_frame(s))
    assert (correlation_id, error_code) == (4242, 0)
    assert API_VERSIONS in apis


def test_api_versions_v0_over_a_raw_socket(broker):
    with connect(broker) as s:
        s.sendall(request_frame(API_VERSIONS, 0, 7))
        frame = read_frame(s)
        correlation_id, error_code, apis, end = parse_api_versions_v0(frame)
        assert end == len(frame), "a v0 body has no throttle time or tagged fields"
        assert (correlation_id, error_code) == (7, 0)
        lo, hi = apis[API_VERSIONS]
        assert lo == 0 and hi >= 3
        for key in (0, 1, 2, 3):  # Produce, Fetch, ListOffsets, Metadata
            assert key in apis
        # The connection stays usable: a second request on it is answered.
        s.sendall(request_frame(API_VERSIONS, 0, 8))
        assert parse_api_versions_v0(read_frame(s))[0] == 8


def test_api_versions_from_the_future_gets_v0_unsupported_version_and_the_list(broker):
    with connect(broker) as s:
        # v99: the body is unknown to the broker; the answer is a v0 body.
        s.sendall(request_frame(API_VERSIONS, 99, 9, body=b"\x00\x00\x00"))
        correlation_id, error_code, apis, _ = parse_api_versions_v0(read_frame(s))
    assert (correlation_id, error_code) == (9, 35)  # UNSUPPORTED_VERSION
    assert API_VERSIONS in apis


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_close_only_that_connection(broker, bystander, topic, seed):
    rng = random.Random(seed)
    body = rng.randbytes(rng.randint(1, 200))
    with connect(broker) as s:
        if seed % 2:
            # A well-formed size prefix around random bytes.
            s.sendall(struct.pack(">i", len(body)) + body)
        else:
            # Random bytes from the first byte on; the broker either rejects
            # the "size" outright or waits for it, and then sees EOF.
            s.sendall(rng.randbytes(4) + body)
            s.shutdown(socket.SHUT_WR)
        assert closed_by_peer(s), "the broker kept a connection open after garbage"
    assert_real_client_works(broker, bystander, topic)


def test_lying_size_prefix_is_refused_without_waiting_for_2_gib(broker, bystander, topic):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 2**31 - 1) + request_frame(API_VERSIONS, 0, 1)[4:])
        assert closed_by_peer(s), "a 2 GiB request size should be refused at once"
    assert_real_client_works(broker, bystander, topic)


def test_negative_size_closes_the_connection(broker, bystander, topic):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", -1) + b"\x00" * 16)
        assert closed_by_peer(s)
    assert_real_client_works(broker, bystander, topic)


def test_zero_size_closes_the_connection(broker, bystander, topic):
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 0))
        assert closed_by_peer(s)
    assert_real_client_works(broker, bystander, topic)


def test_unknown_api_key_closes_the_connection(broker, bystander, topic):
    with connect(broker) as s:
        s.sendall(request_frame(9999, 0, 11, body=b"\x00" * 8))
        assert closed_by_peer(s)
    assert_real_client_works(broker, bystander, topic)


def test_unsupported_version_of_a_known_api_closes_the_connection(broker, bystander, topic):
    with connect(broker) as s:
        s.sendall(request_frame(METADATA, 99, 12, body=b"\x00" * 8))
        assert closed_by_peer(s)
    assert_real_client_works(broker, bystander, topic)


def test_truncated_body_of_a_known_api_closes_the_connection(broker, bystander, topic):
    with connect(broker) as s:
        # Metadata v1 whose topic array claims 1000 entries and holds none.
        s.sendall(request_frame(METADATA, 1, 13, body=struct.pack(">i", 1000)))
        assert closed_by_peer(s)
    assert_real_client_works(broker, bystander, topic)


def test_many_half_open_connections_do_not_block_others(broker, bystander, topic):
    sockets = [connect(broker) for _ in range(50)]
    try:
        for i, s in enumerate(sockets):
            s.sendall(struct.pack(">i", 100) + b"\x00" * (i % 10))  # half a frame
        assert_real_client_works(broker, bystander, topic)
    finally:
        for s in sockets:
            s.close()
