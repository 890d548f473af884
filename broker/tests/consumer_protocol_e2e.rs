//! End-to-end tests of the KIP-848 consumer group protocol against the
//! real `stele` binary: librdkafka consumers with `group.protocol=consumer`
//! (ConsumerGroupHeartbeat, server-side assignment, OffsetCommit and
//! OffsetFetch v9), ConsumerGroupDescribe and ListGroups from raw requests,
//! a silent member evicted after its session timeout, and committed
//! progress across a clean restart and a kill -9.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use protocol::messages::*;
use protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;

/// Short sessions and heartbeats, so that eviction and reconciliation take
/// seconds, not Kafka's 45 s and 5 s.
const GROUPS_CONFIG: &str = "[groups]\n\
    \"group.consumer.min.session.timeout.ms\" = 6000\n\
    \"group.consumer.session.timeout.ms\" = 6000\n\
    \"group.consumer.min.heartbeat.interval.ms\" = 500\n\
    \"group.consumer.heartbeat.interval.ms\" = 500\n";

fn start_broker() -> (Broker, tempfile::TempDir) {
    let (dir, config) = config_file(GROUPS_CONFIG);
    (Broker::start_with(2, &["--config", &config]), dir)
}

fn member(broker: &Broker, group: &str, topic: &str) -> BaseConsumer {
    let mut config = client_config(broker);
    config
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "1000");
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

fn assigned(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer.assignment().unwrap().elements().iter().map(|e| e.partition()).collect()
}

/// Polls every consumer until their assignments are disjoint, cover
/// `0..partitions` and none is empty; returns them.
fn wait_for_split(consumers: &[&BaseConsumer], partitions: i32) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for consumer in consumers {
            consumer.poll(Duration::from_millis(20));
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if total == partitions as usize && union == (0..partitions).collect() && sets.iter().all(|s| !s.is_empty()) {
            return sets;
        }
        assert!(Instant::now() < deadline, "no full split of {partitions} partitions: {sets:?}");
    }
}

fn produce_values(broker: &Broker, topic: &str, partitions: i32, per_partition: usize, tag: &str) {
    let producer = producer(broker, &[("acks", "all")]);
    for partition in 0..partitions {
        let values: Vec<(Option<Vec<u8>>, Vec<u8>)> =
            (0..per_partition).map(|i| (None, format!("{tag}-{partition}-{i}").into_bytes())).collect();
        produce_all(&producer, topic, Some(partition), &values);
    }
}

/// Polls `consumer` until `count` records arrived; returns their values.
fn consume_values(consumer: &BaseConsumer, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < count {
        assert!(Instant::now() < deadline, "got {} of {count}: {values:?}", values.len());
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            values.push(String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap());
        }
    }
    values
}

fn describe(broker: &Broker, group: &str) -> consumer_group_describe_response::DescribedGroup {
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(StrBytes::from_string(group.to_owned()))];
    match raw_call(broker, ApiKey::ConsumerGroupDescribe, 1, RequestKind::ConsumerGroupDescribe(request)) {
        ResponseKind::ConsumerGroupDescribe(mut response) => response.groups.remove(0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn members_share_partitions_and_the_rest_take_over_when_one_leaves() {
    // Proves three librdkafka consumers speaking the consumer protocol get
    // a full, disjoint assignment of six partitions computed by the broker
    // (the uniform assignor: two each); ConsumerGroupDescribe shows them
    // at one epoch with matching current and target assignments, ListGroups
    // lists the group as type "consumer"; when one member closes (leave,
    // epoch -1) the other two take over all six partitions.
    let (broker, _config) = start_broker();
    create_topic(&broker, "kip848", 6, &[]);
    let (a, b, c) = (
        member(&broker, "new-protocol", "kip848"),
        member(&broker, "new-protocol", "kip848"),
        member(&broker, "new-protocol", "kip848"),
    );
    let sets = wait_for_split(&[&a, &b, &c], 6);
    assert!(sets.iter().all(|set| set.len() == 2), "uniform: two each: {sets:?}");

    let described = describe(&broker, "new-protocol");
    assert_eq!(described.error_code, 0);
    assert_eq!(described.members.len(), 3);
    assert_eq!(described.assignor_name.as_str(), "uniform");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe(&broker, "new-protocol");
        if described.group_state.as_str() == "Stable" {
            assert!(described.members.iter().all(|m| m.member_epoch == described.group_epoch));
            for m in &described.members {
                assert_eq!(m.assignment.topic_partitions.len(), 1);
                assert_eq!(m.assignment.topic_partitions[0].topic_name.as_str(), "kip848");
                assert_eq!(m.assignment.topic_partitions[0].partitions.len(), 2);
            }
            break;
        }
        assert!(Instant::now() < deadline, "never Stable: {described:?}");
        for consumer in [&a, &b, &c] {
            consumer.poll(Duration::from_millis(20));
        }
    }
    let mut list = ListGroupsRequest::default();
    list.types_filter = vec![StrBytes::from_static_str("consumer")];
    match raw_call(&broker, ApiKey::ListGroups, 5, RequestKind::ListGroups(list)) {
        ResponseKind::ListGroups(r) => {
            let ids: Vec<&str> = r.groups.iter().map(|g| g.group_id.0.as_str()).collect();
            assert_eq!(ids, vec!["new-protocol"]);
            assert_eq!(r.groups[0].group_type.as_str(), "consumer");
        }
        other => panic!("{other:?}"),
    }

    drop(c);
    let sets = wait_for_split(&[&a, &b], 6);
    assert!(sets.iter().all(|set| set.len() == 3), "{sets:?}");
}

#[test]
fn committed_progress_survives_restarts_without_loss_or_duplicates() {
    // Proves consumer-protocol members commit with their member epoch
    // (OffsetCommit v9) and a new member of the group resumes exactly after
    // the commits, across a clean restart and a kill -9: every record is
    // consumed once.
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "resumed", 3, &[]);
    let mut seen = BTreeSet::new();
    for (round, stop_cleanly) in [("one", true), ("two", false), ("three", true)] {
        produce_values(&broker, "resumed", 3, 4, round);
        let consumer = member(&broker, "resumers", "resumed");
        let values = consume_values(&consumer, 12);
        for value in values {
            assert!(value.starts_with(round), "only new records after the commit: {value}");
            assert!(seen.insert(value.clone()), "{value} consumed twice");
        }
        consumer.commit_consumer_state(CommitMode::Sync).expect("commit with the member epoch");
        drop(consumer);
        if stop_cleanly {
            assert!(broker.stop());
        } else {
            broker.kill9();
        }
        broker.restart();
    }
    assert_eq!(seen.len(), 36);
}

#[test]
fn a_silent_member_is_evicted_and_its_partitions_move() {
    // Proves a member that joins (raw ConsumerGroupHeartbeat, epoch 0) and
    // never heartbeats again is removed after the session timeout (6 s
    // here), after which a librdkafka member holds every partition; the
    // silent member's next heartbeat is UNKNOWN_MEMBER_ID.
    let (broker, _config) = start_broker();
    create_topic(&broker, "silence", 4, &[]);
    let mut join = ConsumerGroupHeartbeatRequest::default();
    join.group_id = GroupId(StrBytes::from_static_str("quiet-group"));
    join.member_id = StrBytes::from_static_str("silent-member-0123456789");
    join.member_epoch = 0;
    join.rebalance_timeout_ms = 60_000;
    join.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_static_str("silence"))]);
    join.topic_partitions = Some(Vec::new());
    let joined =
        match raw_call(&broker, ApiKey::ConsumerGroupHeartbeat, 1, RequestKind::ConsumerGroupHeartbeat(join.clone())) {
            ResponseKind::ConsumerGroupHeartbeat(r) => r,
            other => panic!("{other:?}"),
        };
    assert_eq!((joined.error_code, joined.member_epoch), (0, 1), "{joined:?}");
    let partitions = joined.assignment.expect("an assignment on join").topic_partitions;
    assert_eq!(partitions[0].partitions.len(), 4, "alone: every partition");
    let started = Instant::now();
    let consumer = member(&broker, "quiet-group", "silence");
    let deadline = Instant::now() + Duration::from_secs(60);
    while assigned(&consumer).len() != 4 {
        consumer.poll(Duration::from_millis(50));
        assert!(Instant::now() < deadline, "consumer has {:?}", assigned(&consumer));
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "not before the silent member's session ran out");
    join.member_epoch = 1;
    join.subscribed_topic_names = None;
    join.topic_partitions = None;
    match raw_call(&broker, ApiKey::ConsumerGroupHeartbeat, 1, RequestKind::ConsumerGroupHeartbeat(join)) {
        ResponseKind::ConsumerGroupHeartbeat(r) => assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID once evicted"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_member_keeps_its_epoch_and_assignment_across_a_broker_restart() {
    // Proves the consumer group is durable: after a clean restart the
    // member's next heartbeat with its epoch is accepted (not fenced),
    // ConsumerGroupDescribe shows it with the same epoch and partitions,
    // and a second member joining still gets a share (the group epoch
    // went on from where it was).
    let (mut broker, _config) = start_broker();
    create_topic(&broker, "durable-group", 2, &[]);
    let heartbeat = |broker: &Broker, request: &ConsumerGroupHeartbeatRequest| match raw_call(
        broker,
        ApiKey::ConsumerGroupHeartbeat,
        1,
        RequestKind::ConsumerGroupHeartbeat(request.clone()),
    ) {
        ResponseKind::ConsumerGroupHeartbeat(r) => r,
        other => panic!("{other:?}"),
    };
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str("kept"));
    request.member_id = StrBytes::from_static_str("kept-member-0123456789ab");
    request.rebalance_timeout_ms = 60_000;
    request.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_static_str("durable-group"))]);
    request.topic_partitions = Some(Vec::new());
    let joined = heartbeat(&broker, &request);
    assert_eq!((joined.error_code, joined.member_epoch), (0, 1));
    assert!(broker.stop());
    broker.restart();

    let described = describe(&broker, "kept");
    assert_eq!((described.error_code, described.group_epoch, described.members.len()), (0, 1, 1), "{described:?}");
    assert_eq!(described.members[0].member_epoch, 1);
    assert_eq!(described.members[0].assignment.topic_partitions[0].partitions, vec![0, 1]);
    request.member_epoch = 1;
    request.subscribed_topic_names = None;
    request.rebalance_timeout_ms = -1;
    request.topic_partitions = None;
    let again = heartbeat(&broker, &request);
    assert_eq!((again.error_code, again.member_epoch), (0, 1), "not fenced after the restart: {again:?}");

    let mut second = ConsumerGroupHeartbeatRequest::default();
    second.group_id = GroupId(StrBytes::from_static_str("kept"));
    second.member_id = StrBytes::from_static_str("kept-member-second-0000");
    second.rebalance_timeout_ms = 60_000;
    second.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_static_str("durable-group"))]);
    second.topic_partitions = Some(Vec::new());
    let joined = heartbeat(&broker, &second);
    assert_eq!((joined.error_code, joined.member_epoch), (0, 2), "the group epoch continues: {joined:?}");
}
