//! End-to-end tests of transactional offsets (TxnOffsetCommit, KIP-98 and
//! KIP-447) against the real `stele` binary, with raw requests: pending
//! offsets are durable before the answer and stay pending across restarts
//! and a shard-count change (OffsetFetch shows the old offset, and with
//! `require_stable` answers UNSTABLE_OFFSET_COMMIT), and the group checks
//! of a classic group's generation and members and of a consumer-protocol
//! group's member epochs. Completing a transaction needs the transaction
//! coordinator: `group::txn_offsets::complete_for_producer` is tested on a
//! shard core in the broker's unit tests.

mod common;

use common::*;
use protocol::messages::*;
use protocol::StrBytes;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const FENCED_INSTANCE_ID: i16 = 82;
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Who commits: producer id and epoch, and (v3) generation, member id and
/// instance id.
struct Committer<'a> {
    producer: (i64, i16),
    generation: i32,
    member_id: &'a str,
    instance_id: Option<&'a str>,
}

/// Producer 1000 at epoch 0, without group metadata.
const PLAIN: Committer<'static> = Committer { producer: (1000, 0), generation: -1, member_id: "", instance_id: None };

/// TxnOffsetCommit of `offsets` ((topic, partition, offset, metadata)) to
/// `group` at `version`; each partition's error code, in order.
fn txn_commit(
    broker: &Broker,
    version: i16,
    group: &str,
    who: &Committer<'_>,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> Vec<i16> {
    let mut request = TxnOffsetCommitRequest::default();
    request.transactional_id = TransactionalId(text("txn-e2e"));
    request.group_id = GroupId(text(group));
    request.producer_id = ProducerId(who.producer.0);
    request.producer_epoch = who.producer.1;
    request.generation_id = who.generation;
    request.member_id = text(who.member_id);
    request.group_instance_id = who.instance_id.map(text);
    for (topic, partition, offset, metadata) in offsets {
        let same_topic = request.topics.last().is_some_and(|last| last.name.0.as_str() == *topic);
        if !same_topic {
            let mut named = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default();
            named.name = TopicName(text(topic));
            request.topics.push(named);
        }
        let mut p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_metadata = metadata.map(text);
        request.topics.last_mut().expect("pushed").partitions.push(p);
    }
    match raw_call(broker, ApiKey::TxnOffsetCommit, version, RequestKind::TxnOffsetCommit(request)) {
        ResponseKind::TxnOffsetCommit(response) => {
            response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
        }
        other => panic!("{other:?}"),
    }
}

/// OffsetFetch v7 of `partitions` of `topic`: (offset, metadata, error
/// code) each.
fn fetch_v7(
    broker: &Broker,
    group: &str,
    topic: &str,
    partitions: &[i32],
    require_stable: bool,
) -> Vec<(i64, String, i16)> {
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = GroupId(text(group));
    let mut wanted = offset_fetch_request::OffsetFetchRequestTopic::default();
    wanted.name = TopicName(text(topic));
    wanted.partition_indexes = partitions.to_vec();
    fetch.topics = Some(vec![wanted]);
    fetch.require_stable = require_stable;
    match raw_call(broker, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(fetch)) {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.error_code, 0);
            r.topics[0]
                .partitions
                .iter()
                .map(|p| {
                    (p.committed_offset, p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(), p.error_code)
                })
                .collect()
        }
        other => panic!("{other:?}"),
    }
}

/// OffsetFetch v8 of every committed partition of `group` with
/// require_stable: (topic, partition, offset, error code).
fn fetch_all_stable_v8(broker: &Broker, group: &str) -> Vec<(String, i32, i64, i16)> {
    let mut fetch = OffsetFetchRequest::default();
    let mut wanted = offset_fetch_request::OffsetFetchRequestGroup::default();
    wanted.group_id = GroupId(text(group));
    wanted.topics = None;
    fetch.groups = vec![wanted];
    fetch.require_stable = true;
    match raw_call(broker, ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(fetch)) {
        ResponseKind::OffsetFetch(r) => {
            let group = &r.groups[0];
            assert_eq!(group.error_code, 0);
            group
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (t.name.0.to_string(), p.partition_index, p.committed_offset, p.error_code))
                })
                .collect()
        }
        other => panic!("{other:?}"),
    }
}

/// Checks what a group with committed offsets 5 and 6 on partitions 0 and
/// 1 of "paid" and pending transactional ones on 0, 1 and 2 answers.
fn assert_pending(broker: &Broker, group: &str, when: &str) {
    assert_eq!(committed(broker, group, "paid", &[0, 1, 2]), vec![(5, None), (6, None), (-1, None)], "{when}: v1");
    assert_eq!(
        fetch_v7(broker, group, "paid", &[0, 1, 2], false),
        vec![(5, String::new(), 0), (6, String::new(), 0), (-1, String::new(), 0)],
        "{when}: v7 without require_stable: the committed offsets"
    );
    assert_eq!(
        fetch_v7(broker, group, "paid", &[0, 1, 2, 3], true),
        vec![
            (-1, String::new(), UNSTABLE_OFFSET_COMMIT),
            (-1, String::new(), UNSTABLE_OFFSET_COMMIT),
            (-1, String::new(), UNSTABLE_OFFSET_COMMIT),
            (-1, String::new(), 0)
        ],
        "{when}: v7 with require_stable"
    );
    assert_eq!(
        fetch_all_stable_v8(broker, group),
        vec![("paid".into(), 0, -1, UNSTABLE_OFFSET_COMMIT), ("paid".into(), 1, -1, UNSTABLE_OFFSET_COMMIT)],
        "{when}: v8, every committed partition, with require_stable"
    );
}

#[test]
fn pending_offsets_are_durable_and_unstable_across_restarts_and_a_shard_count_change() {
    // Proves a TxnOffsetCommit's offsets are durable once answered and stay
    // pending: OffsetFetch (v1, v7) keeps returning the committed offsets,
    // require_stable (v7, v8) answers UNSTABLE_OFFSET_COMMIT for the
    // partitions with pending offsets and nothing else, after kill -9 and
    // a restart, and after a restart with another shard count (the group
    // handed to its new coordinator shard with its pending offsets); a
    // group known only by pending offsets comes back too.
    let mut broker = Broker::start_with(2, &[]);
    create_topic(&broker, "paid", 4, &[]);
    let epoch_2 = Committer { producer: (1000, 2), ..PLAIN };
    for group in ["txn-a", "txn-b", "txn-c", "txn-d"] {
        assert_eq!(simple_commit(&broker, group, "paid", &[(0, 5, None), (1, 6, None)]), vec![0, 0]);
        let offsets = [("paid", 0, 50, Some("m50")), ("paid", 1, 60, None), ("paid", 2, 70, Some(""))];
        assert_eq!(txn_commit(&broker, 3, group, &epoch_2, &offsets), vec![0, 0, 0]);
        assert_pending(&broker, group, "before any restart");
    }
    let only_pending = [("paid", 3, 9, None)];
    assert_eq!(txn_commit(&broker, 0, "txn-only", &epoch_2, &only_pending), vec![0]);
    assert_eq!(fetch_v7(&broker, "txn-only", "paid", &[3], true), vec![(-1, String::new(), UNSTABLE_OFFSET_COMMIT)]);

    broker.kill9();
    broker.restart();
    for group in ["txn-a", "txn-b", "txn-c", "txn-d"] {
        assert_pending(&broker, group, "after kill -9");
    }
    assert!(broker.stop());
    broker.set_shards(3);
    broker.restart();
    for group in ["txn-a", "txn-b", "txn-c", "txn-d"] {
        assert_pending(&broker, group, "after a restart with 3 shards");
    }
    assert_eq!(fetch_v7(&broker, "txn-only", "paid", &[3], true), vec![(-1, String::new(), UNSTABLE_OFFSET_COMMIT)]);
    // The producer's epoch moved with the groups: an older one is fenced
    // on every group's new coordinator.
    let stale = Committer { producer: (1000, 1), ..PLAIN };
    for group in ["txn-a", "txn-b", "txn-c", "txn-d"] {
        assert_eq!(txn_commit(&broker, 3, group, &stale, &[("paid", 0, 1, None)]), vec![INVALID_PRODUCER_EPOCH]);
    }
}

fn join_request(group: &str, instance_id: Option<&str>) -> JoinGroupRequest {
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(text(group));
    join.member_id = text("");
    join.group_instance_id = instance_id.map(text);
    join.session_timeout_ms = 30_000;
    join.rebalance_timeout_ms = 60_000;
    join.protocol_type = text("consumer");
    let mut range = join_group_request::JoinGroupRequestProtocol::default();
    range.name = text("range");
    join.protocols = vec![range];
    join
}

/// A static member of `group` (instance "inst") in generation 1, synced:
/// its member id.
fn stable_member(broker: &Broker, group: &str) -> String {
    let joined = match raw_call(broker, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(join_request(group, Some("inst"))))
    {
        ResponseKind::JoinGroup(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(text(group));
    sync.generation_id = 1;
    sync.member_id = joined.member_id.clone();
    sync.group_instance_id = Some(text("inst"));
    match raw_call(broker, ApiKey::SyncGroup, 3, RequestKind::SyncGroup(sync)) {
        ResponseKind::SyncGroup(r) => assert_eq!(r.error_code, 0),
        other => panic!("{other:?}"),
    }
    joined.member_id.to_string()
}

#[test]
fn transactional_commits_are_checked_against_the_group_and_the_producer() {
    // Proves Kafka's TxnOffsetCommit checks with raw requests: ApiVersions
    // advertises v0-3; v3 names the member, and a wrong generation is
    // ILLEGAL_GENERATION, a stranger UNKNOWN_MEMBER_ID, another member id
    // for the static member's instance FENCED_INSTANCE_ID; a request
    // without member (all of v0-2) is accepted by a group with members, as
    // in Kafka (older transactional clients carry none); an unknown group
    // takes a commit without generation (created) but not one with
    // (ILLEGAL_GENERATION); unknown partitions get
    // UNKNOWN_TOPIC_OR_PARTITION even when the group check fails, metadata
    // over 4096 bytes OFFSET_METADATA_TOO_LARGE; a producer epoch older
    // than one seen INVALID_PRODUCER_EPOCH; none of the refused offsets is
    // pending afterwards; DeleteGroups deletes a group created by
    // transactional offsets, with them.
    let (_config_dir, config) = config_file("[groups]\n\"group.initial.rebalance.delay.ms\" = 0\n");
    let broker = Broker::start_with(2, &["--config", &config]);
    create_topic(&broker, "checked", 2, &[]);
    match raw_call(&broker, ApiKey::ApiVersions, 3, RequestKind::ApiVersions(ApiVersionsRequest::default())) {
        ResponseKind::ApiVersions(r) => {
            let row = r.api_keys.iter().find(|k| k.api_key == ApiKey::TxnOffsetCommit as i16).expect("advertised");
            assert_eq!((row.min_version, row.max_version), (0, 3));
        }
        other => panic!("{other:?}"),
    }
    let member = stable_member(&broker, "checked-group");
    let offsets = [("checked", 0, 10, None)];
    let who =
        |generation, member_id, instance_id| Committer { producer: (2000, 1), generation, member_id, instance_id };
    assert_eq!(
        txn_commit(&broker, 3, "checked-group", &who(2, &member, Some("inst")), &offsets),
        vec![ILLEGAL_GENERATION]
    );
    assert_eq!(txn_commit(&broker, 3, "checked-group", &who(1, "stranger", None), &offsets), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(
        txn_commit(&broker, 3, "checked-group", &who(1, "other", Some("inst")), &offsets),
        vec![FENCED_INSTANCE_ID]
    );
    assert_eq!(txn_commit(&broker, 3, "checked-group", &who(-1, &member, None), &offsets), vec![ILLEGAL_GENERATION]);
    assert_eq!(
        fetch_v7(&broker, "checked-group", "checked", &[0], true),
        vec![(-1, String::new(), 0)],
        "nothing pending"
    );
    assert_eq!(txn_commit(&broker, 3, "checked-group", &who(1, &member, Some("inst")), &offsets), vec![0]);
    assert_eq!(txn_commit(&broker, 3, "checked-group", &who(-1, "", None), &[("checked", 1, 11, None)]), vec![0]);
    assert_eq!(txn_commit(&broker, 2, "checked-group", &who(-1, "", None), &[("checked", 1, 12, None)]), vec![0]);
    assert_eq!(
        fetch_v7(&broker, "checked-group", "checked", &[0, 1], true),
        vec![(-1, String::new(), UNSTABLE_OFFSET_COMMIT); 2]
    );

    let mixed = [("checked", 0, 1, None), ("checked", 7, 1, None), ("missing", 0, 1, None)];
    assert_eq!(
        txn_commit(&broker, 3, "no-such-group", &who(4, "m", None), &mixed),
        vec![ILLEGAL_GENERATION, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]
    );
    let large = "x".repeat(4097);
    let offsets = [("checked", 0, 1, Some(large.as_str())), ("checked", 1, 2, Some("fine"))];
    assert_eq!(txn_commit(&broker, 1, "new-group", &PLAIN, &offsets), vec![OFFSET_METADATA_TOO_LARGE, 0]);
    assert_eq!(
        fetch_v7(&broker, "new-group", "checked", &[0, 1], true),
        vec![(-1, String::new(), 0), (-1, String::new(), UNSTABLE_OFFSET_COMMIT)]
    );
    let bumped = Committer { producer: (1000, 3), ..PLAIN };
    assert_eq!(txn_commit(&broker, 3, "new-group", &bumped, &[("checked", 0, 1, None)]), vec![0]);
    assert_eq!(txn_commit(&broker, 3, "new-group", &PLAIN, &[("checked", 0, 1, None)]), vec![INVALID_PRODUCER_EPOCH]);

    // DeleteGroups deletes the group created for its transactional offsets,
    // and those offsets with it.
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![GroupId(text("new-group"))];
    match raw_call(&broker, ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(delete)) {
        ResponseKind::DeleteGroups(r) => assert_eq!(r.results[0].error_code, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(fetch_v7(&broker, "new-group", "checked", &[0, 1], true), vec![(-1, String::new(), 0); 2]);
}

#[test]
fn transactional_commits_of_consumer_protocol_members_need_their_epoch() {
    // Proves a consumer-protocol (KIP-848) group checks a TxnOffsetCommit's
    // member and epoch: the member's current epoch passes, another epoch
    // is ILLEGAL_GENERATION (Kafka's mapping of STALE_MEMBER_EPOCH for
    // transactional commits), an unknown member UNKNOWN_MEMBER_ID, and no
    // member while the group has members UNKNOWN_MEMBER_ID too.
    let broker = Broker::start_with(2, &[]);
    create_topic(&broker, "epochs", 2, &[]);
    let mut join = ConsumerGroupHeartbeatRequest::default();
    join.group_id = GroupId(text("epoch-group"));
    join.member_id = text("epoch-member-0123456789ab");
    join.member_epoch = 0;
    join.rebalance_timeout_ms = 60_000;
    join.subscribed_topic_names = Some(vec![TopicName(text("epochs"))]);
    join.topic_partitions = Some(Vec::new());
    let joined = match raw_call(&broker, ApiKey::ConsumerGroupHeartbeat, 1, RequestKind::ConsumerGroupHeartbeat(join)) {
        ResponseKind::ConsumerGroupHeartbeat(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!((joined.error_code, joined.member_epoch), (0, 1), "{joined:?}");
    let offsets = [("epochs", 0, 3, None)];
    let member = |generation, member_id| Committer { producer: (3000, 0), generation, member_id, instance_id: None };
    let id = "epoch-member-0123456789ab";
    assert_eq!(txn_commit(&broker, 3, "epoch-group", &member(2, id), &offsets), vec![ILLEGAL_GENERATION]);
    assert_eq!(txn_commit(&broker, 3, "epoch-group", &member(0, id), &offsets), vec![ILLEGAL_GENERATION]);
    assert_eq!(txn_commit(&broker, 3, "epoch-group", &member(1, "stranger"), &offsets), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(txn_commit(&broker, 2, "epoch-group", &member(-1, ""), &offsets), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(txn_commit(&broker, 3, "epoch-group", &member(1, id), &offsets), vec![0]);
    assert_eq!(
        fetch_v7(&broker, "epoch-group", "epochs", &[0], true),
        vec![(-1, String::new(), UNSTABLE_OFFSET_COMMIT)]
    );
}

/// WriteTxnMarkers (v1) of one marker for `producer` on `__consumer_offsets`
/// partition `partition`; that partition's error code.
fn offsets_marker(broker: &Broker, producer: (i64, i16), commit: bool, partition: i32) -> i16 {
    let mut topic = write_txn_markers_request::WritableTxnMarkerTopic::default();
    topic.name = TopicName(text("__consumer_offsets"));
    topic.partition_indexes = vec![partition];
    let mut marker = write_txn_markers_request::WritableTxnMarker::default();
    marker.producer_id = ProducerId(producer.0);
    marker.producer_epoch = producer.1;
    marker.transaction_result = commit;
    marker.topics = vec![topic];
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    match raw_call(broker, ApiKey::WriteTxnMarkers, 1, RequestKind::WriteTxnMarkers(request)) {
        ResponseKind::WriteTxnMarkers(response) => response.markers[0].topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_marker_on_the_offsets_partition_commits_or_drops_pending_offsets() {
    // Proves the inter-broker form of a transaction's end for groups: a
    // WriteTxnMarkers COMMIT on `__consumer_offsets` partition N (Stele's
    // group coordinator shard N) makes the producer's pending offsets the
    // committed ones, an ABORT drops them, both durably (after kill -9),
    // and a partition past the last shard is UNKNOWN_TOPIC_OR_PARTITION.
    let mut broker = Broker::start_with(2, &[]);
    create_topic(&broker, "paid", 2, &[]);
    let shard_of = |group: &str| broker::group::coordinator_shard(group, 2) as i32;
    let committer = Committer { producer: (2000, 1), ..PLAIN };
    assert_eq!(simple_commit(&broker, "kept", "paid", &[(0, 5, None)]), vec![0]);
    assert_eq!(txn_commit(&broker, 3, "kept", &committer, &[("paid", 0, 50, None)]), vec![0]);
    assert_eq!(
        txn_commit(&broker, 3, "dropped", &Committer { producer: (2001, 1), ..PLAIN }, &[("paid", 1, 70, None)]),
        vec![0]
    );
    assert_eq!(offsets_marker(&broker, (2000, 1), true, shard_of("kept")), 0);
    assert_eq!(offsets_marker(&broker, (2001, 1), false, shard_of("dropped")), 0);
    assert_eq!(offsets_marker(&broker, (2000, 1), true, 7), UNKNOWN_TOPIC_OR_PARTITION);
    broker.kill9();
    broker.restart();
    assert_eq!(fetch_v7(&broker, "kept", "paid", &[0], true), vec![(50, String::new(), 0)], "committed");
    assert_eq!(fetch_v7(&broker, "dropped", "paid", &[1], true), vec![(-1, String::new(), 0)], "dropped");
}
