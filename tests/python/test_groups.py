"""Classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup,
OffsetCommit/OffsetFetch) with every client's own group consumer.

Members run in processes of their own (group_member.py, through the
`members` fixture), so a test can SIGKILL or SIGSTOP one: a member that
vanishes or freezes without leaving. Each member commits what it polled
before reporting it, and a record counts as processed only once committed:
then no record may be processed twice, across rebalances and restarts, and
none may be missing.
"""

import collections
import time

import pytest

import test_confluent_kafka as ck
from helpers import split_of, wait_split, wait_until

PARTITIONS = 6
CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]
# Joins, rebalances and evictions take seconds (6 s session timeouts).
pytestmark = pytest.mark.timeout(120)


def produced(broker, topic, per_partition, tag, partitions=None):
    """Produces per_partition records to each of the topic's partitions;
    returns their (partition, offset, value)."""
    out = set()
    p = ck.producer(broker)
    for part in range(partitions or PARTITIONS):
        recs = [(None, f"{tag}-{part}-{i}".encode(), [], ck.BASE_TS + i) for i in range(per_partition)]
        for m in ck.produce(p, topic, recs, partition=part):
            out.add((m.partition(), m.offset(), m.value().decode()))
    return out


def processed(group):
    """Counter of (partition, offset, value) over every member of group."""
    return collections.Counter(r for m in group for r in m.processed())


def wait_processed(group, want, timeout=30):
    """Waits until the members processed every record of want; returns the
    Counter of everything they processed."""
    try:
        return wait_until(
            lambda: (lambda got: got if want <= set(got) else None)(processed(group)), timeout=timeout, interval=0.1
        )
    except AssertionError:
        missing = sorted(want - set(processed(group)))
        raise AssertionError(
            f"timed out after {timeout} s: {len(missing)} of {len(want)} records not processed "
            f"(first: {missing[:5]}); members: {group}"
        ) from None


def sizes(split):
    """The sorted sizes of a split's parts."""
    return sorted(len(parts) for parts in split.values())


def even(members, partitions=None):
    """The sizes of a balanced split of the topic's partitions over members."""
    q, r = divmod(partitions or PARTITIONS, members)
    return [q] * (members - r) + [q + 1] * r


def assert_exactly_once(group, want):
    got = processed(group)
    twice = {r: n for r, n in got.items() if n > 1}
    assert not twice, f"processed more than once: {sorted(twice)[:20]}"
    assert set(got) == want, f"missing {sorted(want - set(got))[:20]}, unexpected {sorted(set(got) - want)[:20]}"


@pytest.mark.parametrize("client", CLIENTS)
def test_members_joining_and_leaving_rebalance_without_loss_or_duplicates(broker, topic, members, client):
    """One member, then two, then three members of CLIENT's group consumer
    share a 6-partition topic: each rebalance gives a full, non-overlapping
    assignment (2 partitions each with three members); two leave cleanly
    (LeaveGroup) and the last one holds everything. Records are produced
    just before each change, so rebalances happen with records in flight:
    every record is processed exactly once (committed offsets carry the
    position from each owner to the next)."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    everything = set()
    all_parts = set(range(PARTITIONS))

    everything |= produced(broker, topic, 10, "a")
    m1 = members(client, broker, group, topic, "m1")
    assert wait_split([m1], all_parts) == {"m1": all_parts}
    wait_processed([m1], everything)

    everything |= produced(broker, topic, 10, "b")
    m2 = members(client, broker, group, topic, "m2")
    split = wait_split([m1, m2], all_parts)
    assert sizes(split) == even(2)
    everything |= produced(broker, topic, 10, "c")
    wait_processed([m1, m2], everything)

    m3 = members(client, broker, group, topic, "m3")
    split = wait_split([m1, m2, m3], all_parts)
    assert sizes(split) == even(3)
    batch = produced(broker, topic, 10, "d")
    everything |= batch
    wait_processed([m1, m2, m3], everything)
    # With the group stable, each partition's new records went to its owner.
    for m in (m1, m2, m3):
        assert {r[0] for r in batch if r in set(m.processed())} == split[m.name]

    everything |= produced(broker, topic, 10, "e")
    m1.close()
    split = wait_split([m2, m3], all_parts)
    assert sizes(split) == even(2)
    everything |= produced(broker, topic, 10, "f")
    wait_processed([m1, m2, m3], everything)

    m2.close()
    assert wait_split([m3], all_parts) == {"m3": all_parts}
    everything |= produced(broker, topic, 10, "g")
    wait_processed([m1, m2, m3], everything)
    assert_exactly_once([m1, m2, m3], everything)


@pytest.mark.parametrize("client", CLIENTS)
def test_killed_and_frozen_members_are_evicted_after_their_session_timeout(broker, topic, members, client):
    """Of three members, one is SIGKILLed (gone without LeaveGroup) and one
    frozen with SIGSTOP (heartbeats stop, its connections stay open). They
    keep their partitions until their 6 s session timeout runs out, not
    before; then the broker removes both, the survivor gets every partition
    and resumes each moved one from its previous owner's last commit.
    Thawed, the frozen member finds itself out of the group, rejoins, and
    the group splits again. Nothing is lost or processed twice."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    all_parts = set(range(PARTITIONS))
    killed = members(client, broker, group, topic, "killed")
    frozen = members(client, broker, group, topic, "frozen")
    survivor = members(client, broker, group, topic, "survivor")
    group_members = [killed, frozen, survivor]
    split = wait_split(group_members, all_parts)
    everything = produced(broker, topic, 10, "a")
    wait_processed(group_members, everything)

    killed.kill()
    frozen.freeze()
    stopped_at = time.monotonic()
    everything |= produced(broker, topic, 10, "b")
    assert wait_split([survivor], all_parts, timeout=45) == {"survivor": all_parts}
    evicted_after = time.monotonic() - stopped_at
    # Their last heartbeats were at most 500 ms before: an earlier eviction
    # would not have waited for the session timeout.
    assert evicted_after >= 5.0, f"partitions moved {evicted_after:.1f} s after the kill"
    assert "session timeout: members removed" in broker.log()
    wait_processed(group_members, everything)
    moved = {r for r in everything if r[0] not in split["survivor"] and r[2].startswith("b-")}
    assert moved <= set(survivor.processed()), "the moved partitions' new records went to the survivor"

    frozen.thaw()
    split = wait_split([frozen, survivor], all_parts, timeout=45)
    assert sizes(split) == even(2)
    everything |= produced(broker, topic, 10, "c")
    wait_processed(group_members, everything)
    assert_exactly_once(group_members, everything)


def test_mixed_group_of_confluent_kafka_and_kafka_python(broker, topic, members):
    """librdkafka and kafka-python both offer the `consumer` protocol type
    with range first, then roundrobin: in one group the broker picks range
    (each member's first choice), so each gets a consecutive half; when the
    confluent-kafka member leaves, the kafka-python one takes over from its
    commits."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    all_parts = set(range(PARTITIONS))
    a = members("confluent-kafka", broker, group, topic, "ck")
    b = members("kafka-python", broker, group, topic, "kp")
    split = wait_split([a, b], all_parts)
    assert sorted(map(sorted, split.values())) == [[0, 1, 2], [3, 4, 5]], f"not range: {split}"
    everything = produced(broker, topic, 10, "a")
    wait_processed([a, b], everything)
    for m in (a, b):
        assert {r[0] for r in m.processed()} == split[m.name]

    a.close()
    assert wait_split([b], all_parts) == {"kp": all_parts}
    everything |= produced(broker, topic, 10, "b")
    wait_processed([a, b], everything)
    assert_exactly_once([a, b], everything)


def test_mixed_group_of_all_three_clients_agrees_on_roundrobin(broker, topic, members):
    """aiokafka offers only roundrobin; confluent-kafka and kafka-python
    prefer range but also offer roundrobin, the one protocol all three
    have: the broker must choose it (round robin gives member i the
    partitions i and i+3 of six). A fourth member offering only range has
    nothing in common with the group: it is refused (INCONSISTENT_GROUP_PROTOCOL)
    and the group stays as it was."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    all_parts = set(range(PARTITIONS))
    trio = [members(c, broker, group, topic, c) for c in CLIENTS]
    split = wait_split(trio, all_parts)
    assert sorted(map(sorted, split.values())) == [[0, 3], [1, 4], [2, 5]], f"not roundrobin: {split}"
    everything = produced(broker, topic, 10, "a")
    wait_processed(trio, everything)

    odd = members("kafka-python", broker, group, topic, "range-only", assignor="range")
    wait_until(
        lambda: any("InconsistentGroupProtocol" in e["error"] for e in odd.of("error")),
        timeout=30,
        what="INCONSISTENT_GROUP_PROTOCOL for the range-only member",
    )
    assert not odd.assignment()
    assert split_of(trio, all_parts) == split
    everything |= produced(broker, topic, 10, "b")
    wait_processed(trio, everything)
    assert_exactly_once(trio + [odd], everything)


def committed_offsets(broker, group, topic, partitions=None):
    """{partition: committed offset, or None} read with kafka-python's admin
    client (OffsetFetch). Not confluent-kafka's: see CONFLUENT_METADATA."""
    import kafka

    import test_kafka_python as kp

    tps = [kafka.TopicPartition(topic, p) for p in range(partitions or PARTITIONS)]
    a = kp.admin(broker)
    try:
        got = a.list_group_offsets({group: tps})[group]
    finally:
        a.close()
    return {tp.partition: (got[tp].offset if tp in got and got[tp].offset >= 0 else None) for tp in tps}


def end_offsets(broker, topic, partitions=None):
    c = ck.consumer(broker)
    try:
        parts = range(partitions or PARTITIONS)
        return {p: c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=ck.TIMEOUT)[1] for p in parts}
    finally:
        c.close()


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_committed_offsets_survive_a_broker_restart(fresh_broker, topic, members, client, how):
    """Two members ride through a broker restart (SIGTERM, or SIGKILL with
    no shutdown at all): the group's membership is durable like its
    offsets, so they keep their partitions without a rebalance (as after a
    coordinator move in Kafka) and go on, processing nothing twice.
    A member started afterwards in the same group resumes at the committed
    offsets too, which equal the log end offsets."""
    b = fresh_broker
    ck.create_topic(b, topic, PARTITIONS)
    group = f"{topic}-g"
    all_parts = set(range(PARTITIONS))
    riders = [members(client, b, group, topic, f"rider{i}") for i in range(2)]
    wait_split(riders, all_parts)
    everything = produced(b, topic, 10, "a")
    wait_processed(riders, everything)

    joins = [len(m.rebalances()) for m in riders]
    if how == "sigterm":
        assert b.stop() == 0, "SIGTERM stops the broker cleanly"
    else:
        b.kill()
    b.restart()
    assert committed_offsets(b, group, topic) == {p: 10 for p in all_parts}

    everything |= produced(b, topic, 10, "b")
    wait_processed(riders, everything, timeout=45)
    wait_split(riders, all_parts)
    for m, before in zip(riders, joins):
        assert m.rebalances()[before:] == [], f"{m.name} rebalanced although the group was restored"
    assert_exactly_once(riders, everything)
    for m in riders:
        m.close()

    late = members(client, b, group, topic, "late")
    assert wait_split([late], all_parts) == {"late": all_parts}
    everything |= produced(b, topic, 5, "c")
    wait_processed(riders + [late], everything)
    assert_exactly_once(riders + [late], everything)
    assert committed_offsets(b, group, topic) == end_offsets(b, topic) == {p: 25 for p in all_parts}


# --- committed offsets and their metadata, through each client's API ----------


# CONFLUENT_METADATA: confluent-kafka 2.16 sends offset metadata with its C
# string's NUL (OffsetCommit v8 compact length 7 for "HELLO": seen on the
# wire), and turns what librdkafka fetched back into a str as a C string.
# Metadata without a NUL of its own (what any other client commits, or "")
# is then read on past its end: "from kafka-python-1" came back as
# "from kafka-python-1$r\x7f", or the read raised UnicodeDecodeError, while
# the OffsetFetch response on the wire was exact and kafka-python read it
# exactly. So confluent-kafka only reads metadata here that ends in a NUL,
# as its own does.


def test_commit_metadata_round_trips_through_every_client(broker, topic):
    """Each client commits an offset with metadata (and a leader epoch where
    its OffsetCommit version carries one) to a partition of its own, with
    the group's simple-commit path (assign(), no membership); every client
    then reads all three back with its committed() API: the offsets
    everywhere, the metadata and epochs wherever the API shows them, byte
    for byte (NUL included: see CONFLUENT_METADATA)."""
    import asyncio

    import kafka
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTP
    from confluent_kafka import TopicPartition

    import test_aiokafka as aio
    import test_kafka_python as kp

    ck.create_topic(broker, topic, 3)
    produced(broker, topic, 10, "x", partitions=3)
    group = f"{topic}-g"
    # What each client puts on the wire: confluent-kafka adds a NUL; the
    # others send theirs as given, ended with a NUL so confluent-kafka can
    # read them.
    wire = {0: "by confluent-kafka ✓\0", 1: "by kafka-python " + "m" * 4000 + "\0", 2: "by aiokafka\0"}
    # librdkafka and kafka-python send OffsetCommit v8 with the epoch; aiokafka's v2/v3 has none.
    epochs = {0: 0, 1: 0, 2: None}
    offsets = {0: 3, 1: 5, 2: 7}

    c = ck.consumer(broker, group_id=group)
    try:
        c.assign([TopicPartition(topic, 0)])
        c.commit(offsets=[TopicPartition(topic, 0, 3, wire[0][:-1], 0)], asynchronous=False)
    finally:
        c.close()
    k = kp.consumer(broker, group_id=group)
    try:
        k.assign([kafka.TopicPartition(topic, 1)])
        k.commit({kafka.TopicPartition(topic, 1): kafka.OffsetAndMetadata(5, wire[1], 0)})
    finally:
        k.close()

    async def aio_commit_and_read():
        a = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False, request_timeout_ms=aio.TIMEOUT_MS
        )
        await a.start()
        try:
            a.assign([AioTP(topic, p) for p in range(3)])
            await a.commit({AioTP(topic, 2): (7, wire[2])})
            return {p: await a.committed(AioTP(topic, p)) for p in range(3)}
        finally:
            await a.stop()

    # aiokafka's committed() shows offsets only.
    assert asyncio.run(asyncio.wait_for(aio_commit_and_read(), 45)) == offsets

    c = ck.consumer(broker, group_id=group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=ck.TIMEOUT)
    finally:
        c.close()
    # confluent-kafka reads up to the NUL.
    assert {tp.partition: (tp.offset, tp.metadata, tp.leader_epoch, tp.error) for tp in got} == {
        p: (offsets[p], wire[p][:-1], epochs[p], None) for p in range(3)
    }

    k = kp.consumer(broker, group_id=group)
    try:
        got = {p: k.committed(kafka.TopicPartition(topic, p), metadata=True) for p in range(3)}
    finally:
        k.close()
    assert {p: (o.offset, o.metadata, None if o.leader_epoch == -1 else o.leader_epoch) for p, o in got.items()} == {
        p: (offsets[p], wire[p], epochs[p]) for p in range(3)
    }


def test_commit_metadata_over_4096_bytes_is_refused(broker, topic):
    """Kafka's offset.metadata.max.bytes (4096): one byte more is refused
    with OFFSET_METADATA_TOO_LARGE and leaves the committed offset as it
    was; exactly 4096 bytes is accepted."""
    import kafka
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    import test_kafka_python as kp

    ck.create_topic(broker, topic, 1)
    group = f"{topic}-g"
    largest = "x" * 4095 + "\0"  # 4096 bytes, readable by confluent-kafka too
    k = kp.consumer(broker, group_id=group)
    try:
        tp = kafka.TopicPartition(topic, 0)
        k.assign([tp])
        k.commit({tp: kafka.OffsetAndMetadata(1, largest, -1)})
        with pytest.raises(kafka.errors.OffsetMetadataTooLargeError):
            k.commit({tp: kafka.OffsetAndMetadata(2, "y" * 4097, -1)})
        assert k.committed(tp, metadata=True)[:2] == (1, largest)
    finally:
        k.close()

    # confluent-kafka adds a NUL to what it sends (CONFLUENT_METADATA):
    # 4095 characters are 4096 bytes on the wire, 4096 are one too many.
    c = ck.consumer(broker, group_id=group)
    try:
        c.assign([TopicPartition(topic, 0)])
        with pytest.raises(KafkaException) as exc:
            c.commit(offsets=[TopicPartition(topic, 0, 3, "z" * 4096)], asynchronous=False)
        assert exc.value.args[0].code() == KafkaError.OFFSET_METADATA_TOO_LARGE
        (got,) = c.committed([TopicPartition(topic, 0)], timeout=ck.TIMEOUT)
        assert (got.offset, got.metadata) == (1, "x" * 4095)
        c.commit(offsets=[TopicPartition(topic, 0, 4, "z" * 4095)], asynchronous=False)
        (got,) = c.committed([TopicPartition(topic, 0)], timeout=ck.TIMEOUT)
        assert (got.offset, got.metadata) == (4, "z" * 4095)
    finally:
        c.close()
