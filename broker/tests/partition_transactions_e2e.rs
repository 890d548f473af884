//! End-to-end tests of transactions on partitions against the real `stele`
//! binary: transactional batches produced with raw requests (a producer id
//! from InitProducerId without a transactional id), ended with raw
//! WriteTxnMarkers (what the transaction coordinator sends), read back with
//! librdkafka consumers at both isolation levels and with raw Fetch and
//! ListOffsets; state across SIGTERM and kill -9; DescribeProducers.
//!
//! The test plays the transaction coordinator itself, so the broker runs
//! with `transaction.partition.verification.enable = false` (its partitions
//! do not ask the real coordinator, which knows none of these producers);
//! tests/transactions_e2e.rs and exactly_once_e2e.rs cover the verified path.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use protocol::messages::{ApiKey, ProducerId, RequestKind, ResponseKind, TopicName};
use protocol::StrBytes;
use rdkafka::consumer::BaseConsumer;
use rdkafka::Offset;

/// A broker whose partitions take this test's word for the transactions
/// (see the module docs); the directory holds its config file.
fn start_unverified() -> (Broker, tempfile::TempDir) {
    let (dir, config) = config_file("[transactions]\n\"transaction.partition.verification.enable\" = false\n");
    (Broker::start_with(2, &["--config", &config]), dir)
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A new producer id (epoch 0) from InitProducerId without a transactional id.
fn producer_id(broker: &Broker) -> i64 {
    use protocol::messages::InitProducerIdRequest;
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.transaction_timeout_ms = 60_000;
    let ResponseKind::InitProducerId(id) =
        raw_call(broker, ApiKey::InitProducerId, 4, RequestKind::InitProducerId(init))
    else {
        panic!("not an InitProducerId response");
    };
    assert_eq!((id.error_code, id.producer_epoch), (0, 0));
    id.producer_id.0
}

/// One batch of `values`: transactional from `(producer id, epoch, base sequence)`
/// when given, else plain.
fn batch(producer: Option<(i64, i16, i32)>, values: &[&str]) -> Bytes {
    use protocol::compression::Codec;
    use protocol::record_batch::RecordBatchBuilder;
    let mut builder = RecordBatchBuilder::new(Codec::None);
    if let Some((producer_id, epoch, sequence)) = producer {
        builder = builder.producer(producer_id, epoch, sequence).transactional(true);
    }
    for value in values {
        builder.push(now_ms(), None, Some(value.as_bytes()), &[]);
    }
    builder.build().unwrap()
}

/// Produces one batch to partition 0 (v9, acks=all) with `transactional_id`;
/// returns (error code, base offset).
fn produce(broker: &Broker, topic: &str, transactional_id: Option<&str>, records: Bytes) -> (i16, i64) {
    use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use protocol::messages::{ProduceRequest, TransactionalId};
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(records);
    let mut data = TopicProduceData::default();
    data.name = name(topic);
    data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.transactional_id = transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_owned())));
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![data];
    let ResponseKind::Produce(response) = raw_call(broker, ApiKey::Produce, 9, RequestKind::Produce(request)) else {
        panic!("not a Produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    (answer.error_code, answer.base_offset)
}

/// Produces a batch that must succeed; returns its base offset.
fn produce_ok(broker: &Broker, topic: &str, records: Bytes) -> i64 {
    let (error, base_offset) = produce(broker, topic, Some("txn-e2e"), records);
    assert_eq!(error, 0, "produce to {topic}");
    base_offset
}

/// WriteTxnMarkers v1 for `(topic, partitions)`; returns the error per partition.
fn write_marker(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    topics: &[(&str, &[i32])],
) -> Vec<i16> {
    use protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
    use protocol::messages::WriteTxnMarkersRequest;
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(producer_id);
    marker.producer_epoch = producer_epoch;
    marker.transaction_result = commit;
    marker.coordinator_epoch = 0;
    for (topic, partitions) in topics {
        let mut wanted = WritableTxnMarkerTopic::default();
        wanted.name = name(topic);
        wanted.partition_indexes = partitions.to_vec();
        marker.topics.push(wanted);
    }
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    let ResponseKind::WriteTxnMarkers(response) =
        raw_call(broker, ApiKey::WriteTxnMarkers, 1, RequestKind::WriteTxnMarkers(request))
    else {
        panic!("not a WriteTxnMarkers response");
    };
    assert_eq!(response.markers[0].producer_id.0, producer_id);
    response.markers[0].topics.iter().flat_map(|topic| topic.partitions.iter().map(|p| p.error_code)).collect()
}

/// ListOffsets (v5) latest offset of partition 0 at an isolation level (0 or 1).
fn latest(broker: &Broker, topic: &str, isolation_level: i8) -> i64 {
    use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use protocol::messages::ListOffsetsRequest;
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -1;
    partition.current_leader_epoch = -1;
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = name(topic);
    wanted.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = protocol::messages::BrokerId(-1);
    request.isolation_level = isolation_level;
    request.topics = vec![wanted];
    let ResponseKind::ListOffsets(response) =
        raw_call(broker, ApiKey::ListOffsets, 5, RequestKind::ListOffsets(request))
    else {
        panic!("not a ListOffsets response");
    };
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    answer.offset
}

/// What a raw Fetch (v11) of partition 0 from `offset` answered.
struct Fetched {
    high_watermark: i64,
    last_stable_offset: i64,
    /// (producer id, first offset), `None` when the field was null.
    aborted: Option<Vec<(i64, i64)>>,
    batch_bases: Vec<i64>,
}

fn fetch(broker: &Broker, topic: &str, offset: i64, isolation_level: i8) -> Fetched {
    use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use protocol::messages::FetchRequest;
    let mut partition = FetchPartition::default();
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    partition.current_leader_epoch = -1;
    partition.log_start_offset = -1;
    let mut wanted = FetchTopic::default();
    wanted.topic = name(topic);
    wanted.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.replica_id = protocol::messages::BrokerId(-1);
    request.max_wait_ms = 0;
    request.min_bytes = 0;
    request.max_bytes = 1 << 20;
    request.isolation_level = isolation_level;
    request.session_epoch = -1;
    request.topics = vec![wanted];
    let ResponseKind::Fetch(response) = raw_call(broker, ApiKey::Fetch, 11, RequestKind::Fetch(request)) else {
        panic!("not a Fetch response");
    };
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0);
    let records = answer.records.clone().unwrap_or_default();
    Fetched {
        high_watermark: answer.high_watermark,
        last_stable_offset: answer.last_stable_offset,
        aborted: answer
            .aborted_transactions
            .as_ref()
            .map(|aborted| aborted.iter().map(|txn| (txn.producer_id.0, txn.first_offset)).collect()),
        batch_bases: protocol::record_batch::batches(records, usize::MAX)
            .map(|batch| batch.unwrap().base_offset())
            .collect(),
    }
}

/// DescribeProducers of partition 0: (producer id, epoch, last sequence,
/// coordinator epoch, current transaction start offset), by producer id.
fn describe_producers(broker: &Broker, topic: &str) -> Vec<(i64, i32, i32, i32, i64)> {
    use protocol::messages::describe_producers_request::TopicRequest;
    use protocol::messages::DescribeProducersRequest;
    let mut wanted = TopicRequest::default();
    wanted.name = name(topic);
    wanted.partition_indexes = vec![0];
    let mut request = DescribeProducersRequest::default();
    request.topics = vec![wanted];
    let ResponseKind::DescribeProducers(response) =
        raw_call(broker, ApiKey::DescribeProducers, 0, RequestKind::DescribeProducers(request))
    else {
        panic!("not a DescribeProducers response");
    };
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let mut found: Vec<_> = partition
        .active_producers
        .iter()
        .map(|p| (p.producer_id.0, p.producer_epoch, p.last_sequence, p.coordinator_epoch, p.current_txn_start_offset))
        .collect();
    found.sort_unstable();
    found
}

fn values(consumed: &[Consumed]) -> Vec<String> {
    consumed.iter().map(|record| String::from_utf8(record.value.clone()).unwrap()).collect()
}

/// A consumer at an isolation level, assigned to partition 0 from the start.
fn reader(broker: &Broker, topic: &str, isolation: &str) -> BaseConsumer {
    let consumer = consumer(broker, &[("isolation.level", isolation), ("fetch.wait.max.ms", "100")]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    rdkafka::consumer::Consumer::assign(&consumer, &assignment).unwrap();
    consumer
}

#[test]
fn an_open_transaction_holds_back_read_committed_readers_until_its_commit() {
    // Proves an open transaction stops read_committed consumers and ListOffsets latest at
    // its first offset (the LSO) while read_uncommitted ones read on, and that the commit
    // marker wakes the waiting read_committed consumer with the transaction's records.
    let (broker, _config) = start_unverified();
    create_topic(&broker, "held", 1, &[]);
    let producer = producer_id(&broker);
    assert_eq!(produce_ok(&broker, "held", batch(None, &["before"])), 0);
    assert_eq!(produce_ok(&broker, "held", batch(Some((producer, 0, 0)), &["txn-1", "txn-2"])), 1);
    assert_eq!(produce_ok(&broker, "held", batch(Some((producer, 0, 2)), &["txn-3"])), 3);
    assert_eq!(produce_ok(&broker, "held", batch(None, &["after"])), 4);
    assert_eq!((latest(&broker, "held", 1), latest(&broker, "held", 0)), (1, 5));
    let raw = fetch(&broker, "held", 0, 1);
    assert_eq!((raw.last_stable_offset, raw.high_watermark), (1, 5));
    assert_eq!((raw.batch_bases, raw.aborted), (vec![0], Some(vec![])));
    let uncommitted = fetch(&broker, "held", 0, 0);
    assert_eq!((uncommitted.last_stable_offset, uncommitted.batch_bases.len()), (1, 4));
    assert_eq!(uncommitted.aborted, None);

    let committed = reader(&broker, "held", "read_committed");
    let got = consume(&committed, "held", &[0], Offset::Beginning, 1, Duration::from_secs(20));
    assert_eq!(values(&got), ["before"]);
    assert!(drain(&committed, Duration::from_millis(1500)).is_empty(), "nothing past the LSO");
    let everything = reader(&broker, "held", "read_uncommitted");
    let got = consume(&everything, "held", &[0], Offset::Beginning, 5, Duration::from_secs(20));
    assert_eq!(values(&got), ["before", "txn-1", "txn-2", "txn-3", "after"]);

    assert_eq!(write_marker(&broker, producer, 0, true, &[("held", &[0])]), [0]);
    let mut released = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while released.len() < 4 && std::time::Instant::now() < deadline {
        released.extend(drain(&committed, Duration::from_millis(200)));
    }
    assert_eq!(values(&released), ["txn-1", "txn-2", "txn-3", "after"]);
    assert_eq!(released[3].offset, 4);
    assert_eq!((latest(&broker, "held", 1), latest(&broker, "held", 0)), (6, 6));
    assert_eq!(fetch(&broker, "held", 0, 1).last_stable_offset, 6);
}

#[test]
fn an_aborted_transaction_is_hidden_from_read_committed_readers() {
    // Proves an ABORT marker makes the LSO pass the transaction, a read_committed Fetch
    // lists it in AbortedTransactions, librdkafka's read_committed consumer skips its
    // records, and its read_uncommitted consumer still sees them.
    let (broker, _config) = start_unverified();
    create_topic(&broker, "aborts", 1, &[]);
    let producer = producer_id(&broker);
    produce_ok(&broker, "aborts", batch(Some((producer, 0, 0)), &["gone-1", "gone-2"]));
    produce_ok(&broker, "aborts", batch(None, &["kept"]));
    assert_eq!(write_marker(&broker, producer, 0, false, &[("aborts", &[0])]), [0]);
    let raw = fetch(&broker, "aborts", 0, 1);
    assert_eq!(raw.last_stable_offset, 4);
    assert_eq!(raw.aborted, Some(vec![(producer, 0)]));
    assert_eq!(raw.batch_bases, vec![0, 2, 3]);
    // A fetch from the marker still overlaps the transaction; one past it does not.
    assert_eq!(fetch(&broker, "aborts", 3, 1).aborted, Some(vec![(producer, 0)]));
    produce_ok(&broker, "aborts", batch(None, &["kept-2"]));
    assert_eq!(fetch(&broker, "aborts", 4, 1).aborted, Some(vec![]));
    let committed = reader(&broker, "aborts", "read_committed");
    let got = consume(&committed, "aborts", &[0], Offset::Beginning, 2, Duration::from_secs(20));
    assert_eq!(values(&got), ["kept", "kept-2"]);
    assert!(drain(&committed, Duration::from_millis(1000)).is_empty());
    let everything = reader(&broker, "aborts", "read_uncommitted");
    let got = consume(&everything, "aborts", &[0], Offset::Beginning, 4, Duration::from_secs(20));
    assert_eq!(values(&got), ["gone-1", "gone-2", "kept", "kept-2"]);
}

#[test]
fn interleaved_transactions_of_two_producers_end_independently() {
    // Proves the LSO is the oldest open transaction's start across producers: committing
    // the younger transaction releases nothing while the older is open; aborting the older
    // one then releases the younger's records, and only the older is reported aborted.
    let (broker, _config) = start_unverified();
    create_topic(&broker, "interleaved", 1, &[]);
    let (first, second) = (producer_id(&broker), producer_id(&broker));
    produce_ok(&broker, "interleaved", batch(Some((first, 0, 0)), &["a-1"]));
    produce_ok(&broker, "interleaved", batch(Some((second, 0, 0)), &["b-1"]));
    produce_ok(&broker, "interleaved", batch(Some((first, 0, 1)), &["a-2"]));
    produce_ok(&broker, "interleaved", batch(Some((second, 0, 1)), &["b-2"]));
    assert_eq!(write_marker(&broker, second, 0, true, &[("interleaved", &[0])]), [0]);
    assert_eq!(latest(&broker, "interleaved", 1), 0, "the first producer's transaction holds the LSO");
    produce_ok(&broker, "interleaved", batch(None, &["plain"]));
    assert_eq!(write_marker(&broker, first, 0, false, &[("interleaved", &[0])]), [0]);
    assert_eq!(latest(&broker, "interleaved", 1), 7);
    let raw = fetch(&broker, "interleaved", 0, 1);
    assert_eq!(raw.aborted, Some(vec![(first, 0)]));
    let committed = reader(&broker, "interleaved", "read_committed");
    let got = consume(&committed, "interleaved", &[0], Offset::Beginning, 3, Duration::from_secs(20));
    assert_eq!(values(&got), ["b-1", "b-2", "plain"]);
    assert!(drain(&committed, Duration::from_millis(1000)).is_empty());
}

#[test]
fn transactions_and_aborts_survive_sigterm_and_kill_9() {
    // Proves an open transaction still holds the LSO and an abort is still reported after a
    // clean restart and after kill -9, DescribeProducers shows both producers' state, and a
    // commit after the crash releases the open transaction to read_committed consumers.
    let (mut broker, _config) = start_unverified();
    create_topic(&broker, "durable", 1, &[]);
    let (open, aborted) = (producer_id(&broker), producer_id(&broker));
    produce_ok(&broker, "durable", batch(None, &["plain-0"]));
    produce_ok(&broker, "durable", batch(Some((open, 0, 0)), &["open-1"]));
    produce_ok(&broker, "durable", batch(Some((aborted, 0, 0)), &["aborted-1", "aborted-2"]));
    assert_eq!(write_marker(&broker, aborted, 0, false, &[("durable", &[0])]), [0]);
    let before = describe_producers(&broker, "durable");
    assert_eq!(before, vec![(open, 0, 0, -1, 1), (aborted, 0, 1, 0, -1)].into_iter().sorted_by_id());
    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    assert_eq!(latest(&broker, "durable", 1), 1, "the open transaction holds the LSO after SIGTERM");
    assert_eq!(fetch(&broker, "durable", 0, 0).aborted, None);
    assert_eq!(describe_producers(&broker, "durable"), before);
    produce_ok(&broker, "durable", batch(Some((open, 0, 1)), &["open-2"]));
    broker.kill9();
    broker.restart();
    assert_eq!(latest(&broker, "durable", 1), 1, "and after kill -9");
    assert_eq!(latest(&broker, "durable", 0), 6);
    assert_eq!(write_marker(&broker, open, 0, true, &[("durable", &[0])]), [0]);
    let raw = fetch(&broker, "durable", 0, 1);
    assert_eq!(raw.last_stable_offset, 7);
    assert_eq!(raw.aborted, Some(vec![(aborted, 2)]));
    let committed = reader(&broker, "durable", "read_committed");
    let got = consume(&committed, "durable", &[0], Offset::Beginning, 3, Duration::from_secs(20));
    assert_eq!(values(&got), ["plain-0", "open-1", "open-2"]);
    assert!(drain(&committed, Duration::from_millis(1000)).is_empty());
}

#[test]
fn a_torn_log_and_index_tail_keep_transactions() {
    // Proves the fault case of recovery: after kill -9, a half-written batch at the end of
    // the segment and a half-written entry at the end of the aborted-transaction index are
    // cut on restart, while the open transaction still holds the LSO and the durable abort
    // is still reported; the coordinator's commit then releases the open transaction.
    let (mut broker, _config) = start_unverified();
    create_topic(&broker, "torn", 1, &[]);
    let (open, aborted) = (producer_id(&broker), producer_id(&broker));
    produce_ok(&broker, "torn", batch(Some((open, 0, 0)), &["open-1"]));
    produce_ok(&broker, "torn", batch(Some((aborted, 0, 0)), &["aborted-1"]));
    assert_eq!(write_marker(&broker, aborted, 0, false, &[("torn", &[0])]), [0]);
    produce_ok(&broker, "torn", batch(None, &["plain"]));
    broker.kill9();
    let dir = broker.data_dir.join("torn-0");
    let segment = dir.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let data_end: usize = protocol::record_batch::batches(Bytes::from(bytes.clone()), usize::MAX)
        .map_while(Result::ok)
        .map(|batch| batch.bytes().len())
        .sum();
    let next = batch(None, &["never acknowledged"]);
    bytes.truncate(data_end);
    bytes.extend_from_slice(&next[..next.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();
    let index = dir.join("aborted_transactions");
    let mut entries = std::fs::read(&index).unwrap();
    assert_eq!(entries.len(), 8 + 36, "one abort indexed");
    entries.extend_from_slice(&[0x55; 20]);
    std::fs::write(&index, &entries).unwrap();
    broker.restart();
    assert!(broker.log().contains("aborted-transaction index cut"), "the torn index tail was reported");
    assert_eq!(std::fs::metadata(&index).unwrap().len(), 8 + 36);
    assert_eq!((latest(&broker, "torn", 1), latest(&broker, "torn", 0)), (0, 4));
    let raw = fetch(&broker, "torn", 0, 0);
    assert_eq!(raw.batch_bases, vec![0, 1, 2, 3], "the torn batch is gone");
    assert_eq!(write_marker(&broker, open, 0, true, &[("torn", &[0])]), [0]);
    let raw = fetch(&broker, "torn", 0, 1);
    assert_eq!((raw.last_stable_offset, raw.aborted), (5, Some(vec![(aborted, 1)])));
    let committed = reader(&broker, "torn", "read_committed");
    let got = consume(&committed, "torn", &[0], Offset::Beginning, 2, Duration::from_secs(20));
    assert_eq!(values(&got), ["open-1", "plain"]);
}

#[test]
fn produce_and_marker_rules_answer_kafkas_errors() {
    // Proves the Kafka errors of the transactional paths: a transactional batch without a
    // transactional id (53), a plain batch during the producer's transaction (48), a zombie
    // batch and a marker below a fenced epoch (47), unknown partitions and offsets-topic
    // partitions past the coordinator shards on WriteTxnMarkers (3), and that a marker with
    // no ongoing transaction is written.
    let (broker, _config) = start_unverified();
    create_topic(&broker, "rules", 1, &[]);
    let producer = producer_id(&broker);
    let (error, _) = produce(&broker, "rules", None, batch(Some((producer, 0, 0)), &["x"]));
    assert_eq!(error, 53);
    produce_ok(&broker, "rules", batch(Some((producer, 0, 0)), &["x"]));
    let plain = {
        use protocol::compression::Codec;
        use protocol::record_batch::RecordBatchBuilder;
        let mut builder = RecordBatchBuilder::new(Codec::None).producer(producer, 0, 1);
        builder.push(now_ms(), None, Some(b"plain"), &[]);
        builder.build().unwrap()
    };
    assert_eq!(produce(&broker, "rules", Some("txn-e2e"), plain).0, 48);
    // The coordinator aborts with a bumped epoch: the old epoch is fenced.
    assert_eq!(write_marker(&broker, producer, 1, false, &[("rules", &[0])]), [0]);
    assert_eq!(produce(&broker, "rules", Some("txn-e2e"), batch(Some((producer, 0, 1)), &["zombie"])).0, 47);
    assert_eq!(write_marker(&broker, producer, 0, true, &[("rules", &[0])]), [47]);
    assert_eq!(write_marker(&broker, producer, 1, true, &[("rules", &[0])]), [0], "no ongoing transaction");
    assert_eq!(
        write_marker(
            &broker,
            producer,
            1,
            true,
            &[("rules", &[0, 5]), ("nope", &[0]), ("__consumer_offsets", &[0, 9999])]
        ),
        [0, 3, 3, 0, 3]
    );
    assert_eq!(latest(&broker, "rules", 1), latest(&broker, "rules", 0));
}

/// Sorting helper so expected DescribeProducers rows read in any order.
trait SortedById {
    fn sorted_by_id(self) -> Vec<(i64, i32, i32, i32, i64)>;
}

impl<I: Iterator<Item = (i64, i32, i32, i32, i64)>> SortedById for I {
    fn sorted_by_id(self) -> Vec<(i64, i32, i32, i32, i64)> {
        let mut rows: Vec<_> = self.collect();
        rows.sort_unstable();
        rows
    }
}
