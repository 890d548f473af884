//! End-to-end tests of ShareFetch (78) and ShareAcknowledge (79) v1 from
//! raw requests against the real `stele` binary: the share session rules
//! (epoch 0 opens, -1 closes, others must be the next epoch; errors 122
//! and 123), member validation, piggybacked and separate
//! acknowledgements with their per-partition errors (INVALID_RECORD_STATE,
//! INVALID_REQUEST), and the long poll. The ShareConsumer side is in
//! tests/python/test_share_groups.py.

mod common;

use std::time::{Duration, Instant};

use common::*;
use protocol::messages::*;
use protocol::StrBytes;
use uuid::Uuid;

const SHARE_CONFIG: &str = "[groups]\n\
    \"group.share.enable\" = true\n\
    \"group.share.min.session.timeout.ms\" = 6000\n\
    \"group.share.session.timeout.ms\" = 6000\n\
    \"group.share.min.heartbeat.interval.ms\" = 1000\n\
    \"group.share.heartbeat.interval.ms\" = 1000\n";

const INVALID_REQUEST: i16 = 42;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;

struct Setup {
    broker: Broker,
    _config: tempfile::TempDir,
    group: String,
    member: String,
    topic_id: Uuid,
}

/// A broker with share groups on, a one-partition topic holding `records`
/// records, and one member joined (and assigned the partition) of a group
/// reading from the earliest offset.
fn setup(name: &str, records: usize) -> Setup {
    let (config_dir, config) = config_file(SHARE_CONFIG);
    let broker = Broker::start_with(2, &["--config", &config]);
    create_topic(&broker, name, 1, &[]);
    let group = format!("{name}-group");
    let (code, message) =
        incremental_alter_configs(&broker, 32, &group, &[("share.auto.offset.reset", 0, Some("earliest"))]);
    assert_eq!(code, 0, "{message:?}");
    let producer = producer(&broker, &[]);
    let values: Vec<(Option<Vec<u8>>, Vec<u8>)> = (0..records).map(|i| (None, format!("v{i}").into_bytes())).collect();
    produce_all(&producer, name, Some(0), &values);
    let (member, topic_id) = join(&broker, &group, name);
    Setup { broker, _config: config_dir, group, member, topic_id }
}

/// A new member joins `group` subscribed to `topic`; returns its id and
/// the topic id once it is assigned the partition.
fn join(broker: &Broker, group: &str, topic: &str) -> (String, Uuid) {
    let member = Uuid::new_v4().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut epoch = 0;
    loop {
        let mut heartbeat = ShareGroupHeartbeatRequest::default();
        heartbeat.group_id = GroupId(StrBytes::from_string(group.to_owned()));
        heartbeat.member_id = StrBytes::from_string(member.clone());
        heartbeat.member_epoch = epoch;
        heartbeat.subscribed_topic_names = (epoch == 0).then(|| vec![TopicName(StrBytes::from_string(topic.into()))]);
        let ResponseKind::ShareGroupHeartbeat(answer) =
            raw_call(broker, ApiKey::ShareGroupHeartbeat, 1, RequestKind::ShareGroupHeartbeat(heartbeat))
        else {
            panic!("not a heartbeat answer")
        };
        assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
        epoch = answer.member_epoch;
        if let Some(topic) = answer.assignment.and_then(|a| a.topic_partitions.into_iter().next()) {
            return (member, topic.topic_id);
        }
        assert!(Instant::now() < deadline, "no assignment");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn batch(first: i64, last: i64, ack_type: i8) -> share_fetch_request::AcknowledgementBatch {
    let mut batch = share_fetch_request::AcknowledgementBatch::default();
    batch.first_offset = first;
    batch.last_offset = last;
    batch.acknowledge_types = vec![ack_type];
    batch
}

fn share_fetch(
    s: &Setup,
    member: &str,
    epoch: i32,
    acks: Vec<share_fetch_request::AcknowledgementBatch>,
    max_wait_ms: i32,
) -> ShareFetchResponse {
    let mut partition = share_fetch_request::FetchPartition::default();
    partition.partition_index = 0;
    partition.acknowledgement_batches = acks;
    let mut topic = share_fetch_request::FetchTopic::default();
    topic.topic_id = s.topic_id;
    topic.partitions = vec![partition];
    let mut request = ShareFetchRequest::default();
    request.group_id = Some(GroupId(StrBytes::from_string(s.group.clone())));
    request.member_id = Some(StrBytes::from_string(member.to_owned()));
    request.share_session_epoch = epoch;
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    request.max_records = 500;
    request.batch_size = 500;
    request.topics = vec![topic];
    match raw_call(&s.broker, ApiKey::ShareFetch, 1, RequestKind::ShareFetch(request)) {
        ResponseKind::ShareFetch(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

fn share_acknowledge(s: &Setup, epoch: i32, first: i64, last: i64, ack_type: i8) -> ShareAcknowledgeResponse {
    let mut batch = share_acknowledge_request::AcknowledgementBatch::default();
    batch.first_offset = first;
    batch.last_offset = last;
    batch.acknowledge_types = vec![ack_type];
    let mut partition = share_acknowledge_request::AcknowledgePartition::default();
    partition.partition_index = 0;
    partition.acknowledgement_batches = vec![batch];
    let mut topic = share_acknowledge_request::AcknowledgeTopic::default();
    topic.topic_id = s.topic_id;
    topic.partitions = vec![partition];
    let mut request = ShareAcknowledgeRequest::default();
    request.group_id = Some(GroupId(StrBytes::from_string(s.group.clone())));
    request.member_id = Some(StrBytes::from_string(s.member.clone()));
    request.share_session_epoch = epoch;
    request.topics = vec![topic];
    match raw_call(&s.broker, ApiKey::ShareAcknowledge, 1, RequestKind::ShareAcknowledge(request)) {
        ResponseKind::ShareAcknowledge(response) => response,
        other => panic!("unexpected {other:?}"),
    }
}

/// (first, last, delivery count) of the acquired records of the only partition.
fn acquired(response: &ShareFetchResponse) -> Vec<(i64, i64, i16)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| &p.acquired_records)
        .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
        .collect()
}

fn partition_of(response: &ShareFetchResponse) -> &share_fetch_response::PartitionData {
    &response.responses[0].partitions[0]
}

#[test]
fn share_session_epochs_and_member_checks() {
    // Proves the session rules: a member the group does not know is
    // UNKNOWN_MEMBER_ID; without a session, epoch > 0 is
    // SHARE_SESSION_NOT_FOUND; epoch 0 opens and acquires; a wrong epoch is
    // INVALID_SHARE_SESSION_EPOCH; acknowledgements cannot open a session;
    // -1 closes it (later epochs are SHARE_SESSION_NOT_FOUND again).
    let s = setup("share-epochs", 3);
    let stranger = Uuid::new_v4().to_string();
    assert_eq!(share_fetch(&s, &stranger, 0, vec![], 0).error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(share_fetch(&s, &s.member, 1, vec![], 0).error_code, SHARE_SESSION_NOT_FOUND);
    assert_eq!(share_fetch(&s, &s.member, 0, vec![batch(0, 0, 1)], 0).error_code, INVALID_REQUEST);
    let opened = share_fetch(&s, &s.member, 0, vec![], 5000);
    assert_eq!(opened.error_code, 0, "{:?}", opened.error_message);
    assert_eq!(acquired(&opened), vec![(0, 2, 1)]);
    assert!(opened.acquisition_lock_timeout_ms > 0);
    assert!(partition_of(&opened).records.as_ref().is_some_and(|r| !r.is_empty()));
    assert_eq!(share_fetch(&s, &s.member, 2, vec![], 0).error_code, INVALID_SHARE_SESSION_EPOCH);
    // A wrong epoch does not advance the session: 1 is still next.
    let next = share_fetch(&s, &s.member, 1, vec![batch(0, 2, 1)], 0);
    assert_eq!(next.error_code, 0);
    assert_eq!(partition_of(&next).acknowledge_error_code, 0);
    let closed = share_fetch(&s, &s.member, -1, vec![], 0);
    assert_eq!(closed.error_code, 0, "{:?}", closed.error_message);
    assert_eq!(share_fetch(&s, &s.member, 3, vec![], 0).error_code, SHARE_SESSION_NOT_FOUND);
    assert_eq!(share_fetch(&s, &s.member, -1, vec![], 0).error_code, SHARE_SESSION_NOT_FOUND);
}

#[test]
fn acknowledgement_errors_are_per_partition() {
    // Proves acknowledgement outcomes: acknowledging records twice is
    // INVALID_RECORD_STATE (nothing applied), a bad type INVALID_REQUEST;
    // ShareAcknowledge follows the session epochs (0 is refused) and a
    // released record is acquired again with delivery count 2.
    let s = setup("share-acks", 2);
    let opened = share_fetch(&s, &s.member, 0, vec![], 5000);
    assert_eq!(acquired(&opened), vec![(0, 1, 1)]);
    assert_eq!(share_acknowledge(&s, 0, 0, 0, 1).error_code, INVALID_SHARE_SESSION_EPOCH);
    assert_eq!(share_acknowledge(&s, 5, 0, 0, 1).error_code, INVALID_SHARE_SESSION_EPOCH);
    let accepted = share_acknowledge(&s, 1, 0, 0, 1);
    assert_eq!(accepted.error_code, 0);
    assert_eq!(accepted.responses[0].partitions[0].error_code, 0);
    let twice = share_acknowledge(&s, 2, 0, 0, 1);
    assert_eq!(twice.error_code, 0);
    assert_eq!(twice.responses[0].partitions[0].error_code, INVALID_RECORD_STATE);
    let bad_type = share_acknowledge(&s, 3, 1, 1, 9);
    assert_eq!(bad_type.responses[0].partitions[0].error_code, INVALID_REQUEST);
    // Release offset 1 (piggybacked) and get it again, counted twice.
    let again = share_fetch(&s, &s.member, 4, vec![batch(1, 1, 2)], 5000);
    assert_eq!(partition_of(&again).acknowledge_error_code, 0);
    assert_eq!(acquired(&again), vec![(1, 1, 2)]);
    // Offset 0 was accepted: closing releases only offset 1.
    let closing = share_acknowledge(&s, -1, 1, 1, 2);
    assert_eq!(closing.error_code, 0);
    assert_eq!(share_acknowledge(&s, 6, 1, 1, 1).error_code, SHARE_SESSION_NOT_FOUND);
}

#[test]
fn long_poll_answers_when_records_arrive() {
    // Proves the long poll: a ShareFetch with nothing acquirable waits,
    // and answers with the records produced meanwhile (well before its
    // 25 s MaxWaitMs, which the test does not rely on).
    let s = setup("share-poll", 0);
    let opened = share_fetch(&s, &s.member, 0, vec![], 0);
    assert_eq!(opened.error_code, 0);
    assert!(acquired(&opened).is_empty());
    let bootstrap = s.broker.bootstrap();
    let producing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap);
        let producer: rdkafka::producer::BaseProducer = config.create().unwrap();
        producer.send(rdkafka::producer::BaseRecord::<(), [u8]>::to("share-poll").payload(b"late")).unwrap();
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();
    });
    let polled = share_fetch(&s, &s.member, 1, vec![], 25_000);
    producing.join().unwrap();
    assert_eq!(polled.error_code, 0);
    assert_eq!(acquired(&polled), vec![(0, 0, 1)]);
}

fn describe_start_offset(s: &Setup, topic: &str) -> (i16, i64) {
    let mut wanted_topic = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic::default();
    wanted_topic.topic_name = TopicName(StrBytes::from_string(topic.into()));
    wanted_topic.partitions = vec![0];
    let mut group = describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default();
    group.group_id = GroupId(StrBytes::from_string(s.group.clone()));
    group.topics = Some(vec![wanted_topic]);
    let mut request = DescribeShareGroupOffsetsRequest::default();
    request.groups = vec![group];
    match raw_call(&s.broker, ApiKey::DescribeShareGroupOffsets, 0, RequestKind::DescribeShareGroupOffsets(request)) {
        ResponseKind::DescribeShareGroupOffsets(response) => {
            let group = &response.groups[0];
            assert_eq!(group.error_code, 0, "{:?}", group.error_message);
            let partition = &group.topics[0].partitions[0];
            (partition.error_code, partition.start_offset)
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn alter_start_offset(s: &Setup, topic: &str, offset: i64) -> i16 {
    let mut partition = alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default();
    partition.partition_index = 0;
    partition.start_offset = offset;
    let mut wanted = alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default();
    wanted.topic_name = TopicName(StrBytes::from_string(topic.into()));
    wanted.partitions = vec![partition];
    let mut request = AlterShareGroupOffsetsRequest::default();
    request.group_id = GroupId(StrBytes::from_string(s.group.clone()));
    request.topics = vec![wanted];
    match raw_call(&s.broker, ApiKey::AlterShareGroupOffsets, 0, RequestKind::AlterShareGroupOffsets(request)) {
        ResponseKind::AlterShareGroupOffsets(response) => {
            if response.error_code != 0 {
                return response.error_code;
            }
            response.responses[0].partitions[0].error_code
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn delete_offsets(s: &Setup, topic: &str) -> i16 {
    let mut wanted = delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default();
    wanted.topic_name = TopicName(StrBytes::from_string(topic.into()));
    let mut request = DeleteShareGroupOffsetsRequest::default();
    request.group_id = GroupId(StrBytes::from_string(s.group.clone()));
    request.topics = vec![wanted];
    match raw_call(&s.broker, ApiKey::DeleteShareGroupOffsets, 0, RequestKind::DeleteShareGroupOffsets(request)) {
        ResponseKind::DeleteShareGroupOffsets(response) => {
            if response.error_code != 0 {
                return response.error_code;
            }
            response.responses[0].error_code
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn leave(s: &Setup) {
    let mut heartbeat = ShareGroupHeartbeatRequest::default();
    heartbeat.group_id = GroupId(StrBytes::from_string(s.group.clone()));
    heartbeat.member_id = StrBytes::from_string(s.member.clone());
    heartbeat.member_epoch = -1;
    let ResponseKind::ShareGroupHeartbeat(answer) =
        raw_call(&s.broker, ApiKey::ShareGroupHeartbeat, 1, RequestKind::ShareGroupHeartbeat(heartbeat))
    else {
        panic!("not a heartbeat answer")
    };
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
}

#[test]
fn share_group_offsets_describe_alter_delete() {
    // Proves the admin APIs: the start offset moves past accepted records;
    // alter and delete are NON_EMPTY_GROUP while a member is in the group
    // and work once it left; delete leaves no state (-1).
    const NON_EMPTY_GROUP: i16 = 68;
    let s = setup("share-admin", 4);
    let opened = share_fetch(&s, &s.member, 0, vec![], 5000);
    assert_eq!(acquired(&opened), vec![(0, 3, 1)]);
    let accepted = share_fetch(&s, &s.member, 1, vec![batch(0, 3, 1)], 0);
    assert_eq!(partition_of(&accepted).acknowledge_error_code, 0);
    assert_eq!(describe_start_offset(&s, "share-admin"), (0, 4));
    assert_eq!(alter_start_offset(&s, "share-admin", 1), NON_EMPTY_GROUP);
    assert_eq!(delete_offsets(&s, "share-admin"), NON_EMPTY_GROUP);
    leave(&s);
    assert_eq!(alter_start_offset(&s, "share-admin", 1), 0);
    assert_eq!(describe_start_offset(&s, "share-admin"), (0, 1));
    assert_eq!(delete_offsets(&s, "share-admin"), 0);
    assert_eq!(describe_start_offset(&s, "share-admin"), (0, -1));
    assert_eq!(delete_offsets(&s, "no-such-topic"), 3);
}

#[test]
fn a_closing_acknowledgement_after_the_leave_heartbeat_still_counts() {
    // Proves that a member's last acknowledgements (ShareAcknowledge at
    // epoch -1) are applied when its leave heartbeat was handled first, as
    // librdkafka sends both at once on two connections: the accepted
    // records are never delivered again. And that a member that left
    // without a closing request has its records released after the grace
    // period, to the next member, with the delivery counted.
    let s = setup("share-leave", 4);
    let opened = share_fetch(&s, &s.member, 0, vec![], 5000);
    assert_eq!(acquired(&opened), vec![(0, 3, 1)]);
    leave(&s);
    let closed = share_acknowledge(&s, -1, 0, 1, 1);
    assert_eq!(closed.error_code, 0, "{:?}", closed.error_message);
    assert_eq!(closed.responses[0].partitions[0].error_code, 0);
    assert_eq!(describe_start_offset(&s, "share-leave").1, 2, "0 and 1 accepted");

    let (next, _) = join(&s.broker, &s.group, "share-leave");
    let released = share_fetch(&s, &next, 0, vec![], 5000);
    assert_eq!(acquired(&released), vec![(2, 3, 2)], "the closing request released what it did not accept");

    // The next member leaves holding 2..=3 and sends no closing request.
    let s = Setup { member: next, ..s };
    leave(&s);
    let (last, _) = join(&s.broker, &s.group, "share-leave");
    let started = Instant::now();
    let again = share_fetch(&s, &last, 0, vec![], 15_000);
    assert_eq!(acquired(&again), vec![(2, 3, 3)]);
    assert!(started.elapsed() >= Duration::from_secs(4), "held for the closing request first");
}
