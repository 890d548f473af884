"""Group membership beyond the dynamic classic member: static membership
(KIP-345, `group.instance.id`) and the consumer group protocol of KIP-848
(confluent-kafka's `group.protocol=consumer`: ConsumerGroupHeartbeat,
OffsetCommit/OffsetFetch v9+, assignment by the broker).

Members run in processes of their own (group_member.py, the `members`
fixture), as in test_groups.py.
"""

import time

import pytest

import test_confluent_kafka as ck
from helpers import wait_split, wait_until
from test_groups import PARTITIONS, assert_exactly_once, committed_offsets, even, produced, sizes, wait_processed
from test_groups_admin import advertised_apis

pytestmark = pytest.mark.timeout(120)
ALL = set(range(PARTITIONS))
CONSUMER_GROUP_HEARTBEAT = 68
# A static member must be back within its session timeout: 10 s leaves room
# for starting a Python process on a busy machine.
STATIC_SESSION_TIMEOUT_MS = 10_000


# --- static membership (KIP-345) ----------------------------------------------


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_static_member_restarted_within_its_session_timeout_keeps_its_partitions(broker, topic, members, client):
    """A member with group.instance.id closes (a static member sends no
    LeaveGroup) and a new process with the same instance id joins within
    the session timeout: it gets the same partitions back at once and
    resumes from their commits, and the other member sees no rebalance at
    all (no revoke or assign callback, same assignment), neither then nor
    when the old member's session timeout would have run out."""
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    static = dict(instance_id=f"{topic}-static", session_timeout_ms=STATIC_SESSION_TIMEOUT_MS)
    first = members(client, broker, group, topic, "static-1", **static)
    other = members(client, broker, group, topic, "other", session_timeout_ms=STATIC_SESSION_TIMEOUT_MS)
    split = wait_split([first, other], ALL)
    everything = produced(broker, topic, 10, "a")
    wait_processed([first, other], everything)
    settled = other.rebalances()

    def other_undisturbed():
        assert other.rebalances() == settled, f"the other member rebalanced: {other.rebalances()[len(settled):]}"
        assert other.assignment() == split["other"]
        return True

    first.close()
    closed_at = time.monotonic()
    second = members(client, broker, group, topic, "static-2", **static)
    wait_until(
        lambda: other_undisturbed() and second.assignment() == split["static-1"],
        timeout=STATIC_SESSION_TIMEOUT_MS / 1000,
        interval=0.1,
        what="the restarted static member to get its partitions back",
    )
    everything |= produced(broker, topic, 10, "b")
    wait_processed([first, second, other], everything)
    # Past the old member's session timeout: still no rebalance.
    while time.monotonic() < closed_at + STATIC_SESSION_TIMEOUT_MS / 1000 + 2:
        other_undisturbed()
        time.sleep(0.2)
    assert second.assignment() == split["static-1"]
    assert_exactly_once([first, second, other], everything)


# --- the consumer group protocol (KIP-848) ------------------------------------


def consumer_protocol_member(members, broker, group, topic, name):
    return members("confluent-kafka", broker, group, topic, name, group_protocol="consumer")


def require_consumer_group_heartbeat(broker):
    # Without ConsumerGroupHeartbeat librdkafka 2.16 never reports an error
    # to the application: it logs "ConsumerGroupHeartbeatRequest not
    # supported by broker" (debug cgrp), drops the coordinator and retries
    # for ever with no assignment. Ask the broker instead of waiting.
    assert CONSUMER_GROUP_HEARTBEAT in advertised_apis(broker), "the broker does not advertise ConsumerGroupHeartbeat (key 68)"


def test_consumer_protocol_members_join_and_leave_without_loss_or_duplicates(broker, topic, members):
    """confluent-kafka with group.protocol=consumer (no client-side session
    timeout, heartbeat interval or assignor): one, two, then three members
    get full, non-overlapping assignments from the broker's assignor (two
    partitions each with three); one leaves and the other two take its
    partitions; every record is processed exactly once, committed with the
    member epoch (OffsetCommit v9+)."""
    require_consumer_group_heartbeat(broker)
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    everything = produced(broker, topic, 10, "a")
    m1 = consumer_protocol_member(members, broker, group, topic, "m1")
    assert wait_split([m1], ALL) == {"m1": ALL}
    wait_processed([m1], everything)

    m2 = consumer_protocol_member(members, broker, group, topic, "m2")
    everything |= produced(broker, topic, 10, "b")
    assert sizes(wait_split([m1, m2], ALL, timeout=45)) == even(2)
    m3 = consumer_protocol_member(members, broker, group, topic, "m3")
    everything |= produced(broker, topic, 10, "c")
    split = wait_split([m1, m2, m3], ALL, timeout=45)
    assert sizes(split) == even(3)
    wait_processed([m1, m2, m3], everything)

    m1.close()
    everything |= produced(broker, topic, 10, "d")
    split = wait_split([m2, m3], ALL, timeout=45)
    assert sizes(split) == even(2)
    wait_processed([m1, m2, m3], everything)
    assert_exactly_once([m1, m2, m3], everything)


def test_consumer_protocol_group_resumes_from_its_commits(broker, topic, members):
    """A group of two group.protocol=consumer members processes and commits
    everything, then both leave; their commits are listed (OffsetFetch)
    and a new member, also on the consumer protocol, resumes exactly
    there: it processes only what was produced afterwards."""
    require_consumer_group_heartbeat(broker)
    ck.create_topic(broker, topic, PARTITIONS)
    group = f"{topic}-g"
    pair = [consumer_protocol_member(members, broker, group, topic, f"m{i}") for i in range(2)]
    wait_split(pair, ALL, timeout=45)
    everything = produced(broker, topic, 10, "a")
    wait_processed(pair, everything)
    for m in pair:
        m.close()
    assert committed_offsets(broker, group, topic) == {p: 10 for p in ALL}

    late = consumer_protocol_member(members, broker, group, topic, "late")
    assert wait_split([late], ALL, timeout=45) == {"late": ALL}
    more = produced(broker, topic, 5, "b")
    wait_processed([late], more)
    assert_exactly_once(pair + [late], everything | more)
    assert set(late.processed()) == more
