"""Consumer-group administration through confluent-kafka's AdminClient and
kafka-python's KafkaAdminClient.

Committed offsets are listed with OffsetFetch and altered with simple
commits (OffsetCommit, generation -1); groups are listed, described and
deleted with ListGroups, DescribeGroups and DeleteGroups, and offsets
deleted with OffsetDelete. confluent-kafka 2.16 has no binding for
DeleteConsumerGroupOffsets: OffsetDelete is tested with kafka-python only.

Groups with members use group_member.py processes (the `members` fixture),
as in test_groups.py.
"""

import pytest
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    KafkaError,
    KafkaException,
    TopicPartition,
)

import kafka
import kafka.errors
from kafka.admin import MemberToRemove

import test_confluent_kafka as ck
import test_kafka_python as kp
from helpers import connect, parse_api_versions_v0, read_frame, request_frame, wait_split, wait_until
from test_groups import PARTITIONS, committed_offsets, produced, wait_processed

pytestmark = pytest.mark.timeout(120)
ALL = set(range(PARTITIONS))
OFFSET_INVALID = -1001  # librdkafka: no committed offset
DELETE_GROUPS = 42


def live_group(broker, topic, members, client="kafka-python", count=2, metadata=None):
    """A stable group of count members that processed (and committed) 10
    records per partition, with the metadata "from <member name>"; returns
    (group, members). confluent-kafka reads only what confluent-kafka
    members commit (test_groups.CONFLUENT_METADATA)."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    started = [
        members(client, broker, group, topic, f"{client}-{i}", metadata=metadata or f"from {client}-{i}")
        for i in range(count)
    ]
    wait_split(started, ALL)
    wait_processed(started, produced(broker, topic, 10, "a"))
    return group, started


def simple_commit(broker, group, topic, offsets, metadata=""):
    """Commits {partition: offset} for group without joining it."""
    c = kp.consumer(broker, group_id=group)
    try:
        tps = {kafka.TopicPartition(topic, p): o for p, o in offsets.items()}
        c.assign(list(tps))
        c.commit({tp: kafka.OffsetAndMetadata(o, metadata, -1) for tp, o in tps.items()})
    finally:
        c.close()


def owners(started):
    """{partition: member name} from the members' current assignments."""
    return {p: m.name for m in started for p in (m.assignment() or ())}


def advertised_apis(broker):
    """{api key: (min, max)} from an ApiVersions v0 request on a raw socket."""
    with connect(broker) as s:
        s.sendall(request_frame(18, 0, 1))
        _, error, apis, _ = parse_api_versions_v0(read_frame(s))
    assert error == 0
    return apis


def kp_admin(broker):
    return kp.admin(broker)


# --- committed offsets: OffsetFetch and OffsetCommit (implemented) -----------


def test_confluent_lists_the_committed_offsets_of_a_live_group(broker, topic, members):
    """list_consumer_group_offsets (OffsetFetch) of a group with members:
    every partition at the offset its owner committed, with its metadata;
    asked for named partitions, one never committed comes back without an
    offset (-1001) and without an error; an unknown group has none."""
    group, (m0, m1) = live_group(broker, topic, members, client="confluent-kafka")
    a = ck.admin(broker)
    owner = {p: m.name for m in (m0, m1) for p in m.assignment()}

    result = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=ck.TIMEOUT)
    got = result[group].result(ck.TIMEOUT)
    assert got.group_id == group
    assert {(tp.topic, tp.partition): (tp.offset, tp.metadata, tp.error) for tp in got.topic_partitions} == {
        (topic, p): (10, f"from {owner[p]}", None) for p in ALL
    }

    other = f"{topic}-other"
    ck.create_topic(broker, other, 1)
    named = [TopicPartition(topic, 0), TopicPartition(other, 0)]
    result = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, named)], request_timeout=ck.TIMEOUT)
    got = result[group].result(ck.TIMEOUT)
    assert [(tp.topic, tp.partition, tp.offset, tp.error) for tp in got.topic_partitions] == [
        (topic, 0, 10, None),
        (other, 0, OFFSET_INVALID, None),
    ]

    unknown = f"{topic}-never"
    result = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(unknown)], request_timeout=ck.TIMEOUT)
    assert result[unknown].result(ck.TIMEOUT).topic_partitions == []


def test_confluent_alters_the_offsets_of_an_empty_group(broker, topic, members):
    """alter_consumer_group_offsets (a simple commit) on a group whose
    members have left: the new offsets and metadata are listed back, and a
    member joining afterwards resumes exactly there (rewound partitions are
    processed again from the altered offset, the others not at all)."""
    group, started = live_group(broker, topic, members, client="confluent-kafka")
    names = owners(started)
    for m in started:
        m.close()
    a = ck.admin(broker)
    rewind = [TopicPartition(topic, p, 4 + p % 2, "rewound") for p in range(3)]
    request = ConsumerGroupTopicPartitions(group, rewind)
    got = a.alter_consumer_group_offsets([request], request_timeout=ck.TIMEOUT)[group].result(ck.TIMEOUT)
    assert [(tp.partition, tp.offset, tp.error) for tp in got.topic_partitions] == [(0, 4, None), (1, 5, None), (2, 4, None)]
    listed = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=ck.TIMEOUT)
    listed = listed[group].result(ck.TIMEOUT).topic_partitions
    want = {
        0: (4, "rewound"),
        1: (5, "rewound"),
        2: (4, "rewound"),
        **{p: (10, f"from {names[p]}") for p in range(3, PARTITIONS)},
    }
    assert {tp.partition: (tp.offset, tp.metadata) for tp in listed} == want

    late = members("confluent-kafka", broker, group, topic, "late")
    wait_split([late], ALL)
    again = {(p, o, f"a-{p}-{o}") for p in range(3) for o in range(4 + p % 2, 10)}
    wait_processed([late], again)
    assert sorted(late.processed()) == sorted(again)


def test_confluent_altering_offsets_of_a_group_with_members_is_refused(broker, topic, members):
    """A simple commit (generation -1, no member id) to a group that has
    members is refused with UNKNOWN_MEMBER_ID, as in Kafka: the admin
    client cannot move offsets under a live consumer. The offsets stay."""
    group, started = live_group(broker, topic, members)
    a = ck.admin(broker)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])
    future = a.alter_consumer_group_offsets([request], request_timeout=ck.TIMEOUT)[group]
    with pytest.raises(KafkaException) as exc:
        got = future.result(ck.TIMEOUT)
        # librdkafka may report it per partition instead of failing the call.
        raise KafkaException(got.topic_partitions[0].error)
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID
    assert committed_offsets(broker, group, topic) == {p: 10 for p in ALL}


def test_kafka_python_lists_alters_and_resets_group_offsets(broker, topic, members):
    """KafkaAdminClient.list_group_offsets asks for two groups in one
    OffsetFetch v8; alter_group_offsets commits on an empty group;
    reset_group_offsets resolves EARLIEST/LATEST with ListOffsets and
    commits the result (keeping the metadata)."""
    group, started = live_group(broker, topic, members)
    names = owners(started)
    for m in started:
        m.close()
    second = f"{topic}-second"
    simple_commit(broker, second, topic, {0: 7}, metadata="second")
    a = kp_admin(broker)
    try:
        listed = a.list_group_offsets([group, second])
        assert {g: {(tp.topic, tp.partition): o[:2] for tp, o in offs.items()} for g, offs in listed.items()} == {
            group: {(topic, p): (10, f"from {names[p]}") for p in ALL},
            second: {(topic, 0): (7, "second")},
        }

        tp0, tp1 = kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)
        result = a.alter_group_offsets(group, {tp0: kafka.OffsetAndMetadata(3, "altered", -1)})
        assert result == {tp0: kafka.errors.NoError}
        result = a.reset_group_offsets(group, {tp1: kafka.admin.OffsetSpec.EARLIEST})
        assert result == {tp1: {"error": kafka.errors.NoError, "offset": 0}}
        listed = a.list_group_offsets(group)[group]
        assert (listed[tp0].offset, listed[tp0].metadata) == (3, "altered")
        assert (listed[tp1].offset, listed[tp1].metadata) == (0, f"from {names[1]}")
        result = a.reset_group_offsets(group, {tp0: kafka.admin.OffsetSpec.LATEST})
        assert result == {tp0: {"error": kafka.errors.NoError, "offset": 10}}
        assert a.list_group_offsets(group)[group][tp0].offset == 10
    finally:
        a.close()


def test_kafka_python_removes_a_member_with_a_batched_leave_group(broker, topic, members):
    """KafkaAdminClient.remove_group_members sends one LeaveGroup v3+ with
    a list of members: the named member is removed (NoError) and the group
    rebalances, a made-up member id gets UNKNOWN_MEMBER_ID. The removed
    consumer finds out at its next heartbeat and rejoins with a new
    member id, and the group is split over both again."""
    group, (m0, m1) = live_group(broker, topic, members)
    member_id = wait_until(lambda: m0.of("member") and m0.of("member")[-1]["member_id"], what="m0's member id")
    a = kp_admin(broker)
    try:
        result = a.remove_group_members(group, [MemberToRemove(member_id=member_id), MemberToRemove(member_id="no-such-member")])
    finally:
        a.close()
    assert result == {member_id: kafka.errors.NoError, "no-such-member": kafka.errors.UnknownMemberIdError}
    wait_until(
        lambda: any(e["member_id"] != member_id for e in m0.of("member")),
        timeout=30,
        what="the removed member to rejoin with a new member id",
    )
    wait_split([m0, m1], ALL)


# --- not implemented yet: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete


def test_confluent_lists_consumer_groups_by_state_and_type(broker, topic, members):
    """list_consumer_groups (ListGroups v5) lists a group with members as
    Stable and a group that only has committed offsets as Empty and simple;
    the states filter (v4) picks each, the types filter (v5) finds both
    classic groups."""
    group, _ = live_group(broker, topic, members, count=1)
    offsets_only = f"{topic}-offsets-only"
    simple_commit(broker, offsets_only, topic, {0: 1})
    a = ck.admin(broker)

    def listed(**filters):
        result = a.list_consumer_groups(request_timeout=ck.TIMEOUT, **filters).result(ck.TIMEOUT)
        assert not result.errors, result.errors
        return {g.group_id: g for g in result.valid if g.group_id in (group, offsets_only)}

    every = listed()
    assert set(every) == {group, offsets_only}
    assert (every[group].state, every[group].is_simple_consumer_group) == (ConsumerGroupState.STABLE, False)
    assert (every[offsets_only].state, every[offsets_only].is_simple_consumer_group) == (ConsumerGroupState.EMPTY, True)
    assert set(listed(states={ConsumerGroupState.STABLE})) == {group}
    assert set(listed(states={ConsumerGroupState.EMPTY})) == {offsets_only}
    assert set(listed(states={ConsumerGroupState.PREPARING_REBALANCING})) == set()
    classic = listed(types={ConsumerGroupType.CLASSIC})
    assert set(classic) == {group, offsets_only}
    assert {g.type for g in classic.values()} == {ConsumerGroupType.CLASSIC}
    assert set(listed(types={ConsumerGroupType.CONSUMER})) == set()


def test_confluent_describes_a_consumer_group(broker, topic, members):
    """describe_consumer_groups (DescribeGroups) of a stable group of two
    confluent-kafka members: state Stable, the range assignor, this broker
    as coordinator, and each member with its client id, host and the
    partitions it reported itself."""
    group, started = live_group(broker, topic, members, client="confluent-kafka")
    a = ck.admin(broker)
    d = a.describe_consumer_groups([group], request_timeout=ck.TIMEOUT)[group].result(ck.TIMEOUT)
    assert d.group_id == group
    assert d.is_simple_consumer_group is False
    assert d.state == ConsumerGroupState.STABLE
    assert d.partition_assignor == "range"
    assert (d.coordinator.id, d.coordinator.host, d.coordinator.port) == (1, "127.0.0.1", broker.port)
    by_client = {m.client_id: m for m in d.members}
    assert set(by_client) == {m.name for m in started}
    for m in started:
        described = by_client[m.name]
        assert described.member_id.startswith(f"{m.name}-")
        assert "127.0.0.1" in described.host
        assert described.group_instance_id is None
        assert {(tp.topic, tp.partition) for tp in described.assignment.topic_partitions} == {
            (topic, p) for p in m.assignment()
        }


def test_confluent_deletes_only_empty_consumer_groups(broker, topic, members):
    """delete_consumer_groups (DeleteGroups): a group with members is
    refused with NON_EMPTY_GROUP and keeps its offsets; once its members
    left it is deleted with its committed offsets; deleting it again, or a
    group that never existed, is GROUP_ID_NOT_FOUND."""
    # librdkafka 2.16 fails delete_consumer_groups with _UNSUPPORTED_FEATURE
    # on a broker without DeleteGroups, and then aborts the whole process
    # when that AdminClient is destroyed (rd_kafka_q_destroy0: assert
    # rkq->rkq_refcnt > 0): ask the broker first.
    assert DELETE_GROUPS in advertised_apis(broker), "the broker does not advertise DeleteGroups (key 42)"
    group, started = live_group(broker, topic, members)
    a = ck.admin(broker)

    def delete(g):
        return a.delete_consumer_groups([g], request_timeout=ck.TIMEOUT)[g].result(ck.TIMEOUT)

    with pytest.raises(KafkaException) as exc:
        delete(group)
    assert exc.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    assert committed_offsets(broker, group, topic) == {p: 10 for p in ALL}

    for m in started:
        m.close()
    assert delete(group) is None
    assert committed_offsets(broker, group, topic) == {p: None for p in ALL}
    for g in (group, f"{topic}-never"):
        with pytest.raises(KafkaException) as exc:
            delete(g)
        assert exc.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND


def test_kafka_python_lists_consumer_groups_by_state_and_type(broker, topic, members):
    """KafkaAdminClient.list_groups (ListGroups v5): both groups with
    protocol type "consumer" (members) and "" (offsets only), states
    Stable and Empty, type classic; states_filter and types_filter pick
    them."""
    group, _ = live_group(broker, topic, members, count=1)
    offsets_only = f"{topic}-offsets-only"
    simple_commit(broker, offsets_only, topic, {0: 1})
    a = kp_admin(broker)
    try:

        def listed(**filters):
            return {g["group_id"]: g for g in a.list_groups(**filters) if g["group_id"] in (group, offsets_only)}

        every = listed()
        assert {g: (d["protocol_type"], d["group_state"], d["group_type"]) for g, d in every.items()} == {
            group: ("consumer", "Stable", "classic"),
            offsets_only: ("", "Empty", "classic"),
        }
        assert set(listed(states_filter=["Stable"])) == {group}
        assert set(listed(states_filter=["Empty"])) == {offsets_only}
        assert set(listed(types_filter=["classic"])) == {group, offsets_only}
        assert set(listed(types_filter=["consumer"])) == set()
    finally:
        a.close()


def test_kafka_python_describes_a_consumer_group(broker, topic, members):
    """KafkaAdminClient.describe_groups (DescribeGroups): state Stable,
    protocol type consumer, protocol range; each member with its member
    id, client id, host, the subscription it sent and the assignment the
    leader gave it (decoded by kafka-python)."""
    group, started = live_group(broker, topic, members)
    a = kp_admin(broker)
    try:
        d = a.describe_groups([group])[group]
    finally:
        a.close()
    assert d["error"] is None
    assert (d["group_id"], d["group_state"], d["protocol_type"], d["protocol_data"]) == (
        group,
        "Stable",
        "consumer",
        "range",
    )
    by_client = {m["client_id"]: m for m in d["members"]}
    assert set(by_client) == {m.name for m in started}
    for m in started:
        described = by_client[m.name]
        assert described["member_id"] == m.of("member")[-1]["member_id"]
        assert "127.0.0.1" in described["client_host"]
        # kafka-python decodes both with its consumer protocol schemas.
        assert described["member_metadata"]["topics"] == [topic]
        assigned = described["member_assignment"]["assigned_partitions"]
        assert {(a["topic"], p) for a in assigned for p in a["partitions"]} == {(topic, p) for p in m.assignment()}


def test_kafka_python_deletes_only_empty_consumer_groups(broker, topic, members):
    """KafkaAdminClient.delete_groups (DeleteGroups): NonEmptyGroupError
    for a group with members, OK once they left (its offsets go with it),
    GroupIdNotFoundError for a group that does not exist."""
    group, started = live_group(broker, topic, members)
    a = kp_admin(broker)
    try:
        assert a.delete_groups([group]) == {group: "NonEmptyGroupError"}
        for m in started:
            m.close()
        never = f"{topic}-never"
        assert a.delete_groups([group, never]) == {group: "OK", never: "GroupIdNotFoundError"}
        assert a.list_group_offsets(group) == {group: {}}
    finally:
        a.close()


def test_kafka_python_deletes_committed_offsets(broker, topic, members):
    """KafkaAdminClient.delete_group_offsets (OffsetDelete): refused per
    partition with GROUP_SUBSCRIBED_TO_TOPIC while a member is subscribed
    to the topic; once the group is empty, the named partitions' offsets
    are deleted and the others kept; an unknown group is GROUP_ID_NOT_FOUND."""
    group, started = live_group(broker, topic, members)
    tp0, tp1 = kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)
    a = kp_admin(broker)
    try:
        assert a.delete_group_offsets(group, [tp0]) == {tp0: kafka.errors.GroupSubscribedToTopicError}
        for m in started:
            m.close()
        assert a.delete_group_offsets(group, [tp0, tp1]) == {tp0: kafka.errors.NoError, tp1: kafka.errors.NoError}
        left = a.list_group_offsets(group)[group]
        assert {tp.partition: o.offset for tp, o in left.items()} == {p: 10 for p in ALL - {0, 1}}
        with pytest.raises(kafka.errors.GroupIdNotFoundError):
            a.delete_group_offsets(f"{topic}-never", [tp0])
    finally:
        a.close()
