//! End-to-end tests of the transaction coordinator against the real
//! `stele` binary, with raw requests (exact versions and error codes) and
//! librdkafka's transactional producer: InitProducerId for transactional
//! ids (epoch bumps, KIP-360 recovery, fencing), AddPartitionsToTxn and
//! AddOffsetsToTxn errors, KIP-890 verification, EndTxn, FindCoordinator
//! for transactional ids, DescribeTransactions and ListTransactions,
//! timeouts and expiry, and durability across restarts and shard-count
//! changes.
//!
//! Transaction markers are written by the partitions' side (another
//! branch), so a transaction that ends here has only partitions of topics
//! deleted before it ended: the coordinator skips their markers, as Kafka
//! does, and completes it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use protocol::messages::*;
use protocol::StrBytes;
use rdkafka::producer::Producer;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REQUEST: i16 = 42;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
const TRANSACTION_ABORTABLE: i16 = 120;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// InitProducerId for `id` (None: idempotent); returns (error, producer
/// id, epoch).
fn init(broker: &Broker, version: i16, id: Option<&str>, timeout_ms: i32, expected: (i64, i16)) -> (i16, i64, i16) {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = id.map(|id| TransactionalId(text(id)));
    request.transaction_timeout_ms = timeout_ms;
    request.producer_id = ProducerId(expected.0);
    request.producer_epoch = expected.1;
    match raw_call(broker, ApiKey::InitProducerId, version, RequestKind::InitProducerId(request)) {
        ResponseKind::InitProducerId(r) => (r.error_code, r.producer_id.0, r.producer_epoch),
        other => panic!("{other:?}"),
    }
}

/// A new transactional producer: InitProducerId v4, which must succeed.
fn init_ok(broker: &Broker, id: &str, timeout_ms: i32) -> (i64, i16) {
    let (code, producer_id, epoch) = init(broker, 4, Some(id), timeout_ms, (-1, -1));
    assert_eq!(code, NONE, "InitProducerId {id}");
    (producer_id, epoch)
}

fn topics_of(topics: &[(&str, &[i32])]) -> Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic> {
    topics
        .iter()
        .map(|(name, partitions)| {
            let mut topic = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
            topic.name = TopicName(text(name));
            topic.partitions = partitions.to_vec();
            topic
        })
        .collect()
}

fn flatten(results: &[add_partitions_to_txn_response::AddPartitionsToTxnTopicResult]) -> Vec<(String, i32, i16)> {
    results
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| (t.name.0.to_string(), p.partition_index, p.partition_error_code))
        })
        .collect()
}

/// AddPartitionsToTxn v0-v3; returns (topic, partition, error) in order.
fn add_partitions(
    broker: &Broker,
    version: i16,
    id: &str,
    producer: (i64, i16),
    topics: &[(&str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let mut request = AddPartitionsToTxnRequest::default();
    request.v3_and_below_transactional_id = TransactionalId(text(id));
    request.v3_and_below_producer_id = ProducerId(producer.0);
    request.v3_and_below_producer_epoch = producer.1;
    request.v3_and_below_topics = topics_of(topics);
    match raw_call(broker, ApiKey::AddPartitionsToTxn, version, RequestKind::AddPartitionsToTxn(request)) {
        ResponseKind::AddPartitionsToTxn(r) => flatten(&r.results_by_topic_v3_and_below),
        other => panic!("{other:?}"),
    }
}

/// The codes of one AddPartitionsToTxn, all expected equal.
fn add_code(broker: &Broker, version: i16, id: &str, producer: (i64, i16), topics: &[(&str, &[i32])]) -> i16 {
    let codes: Vec<i16> = add_partitions(broker, version, id, producer, topics).iter().map(|(_, _, c)| *c).collect();
    assert!(codes.windows(2).all(|pair| pair[0] == pair[1]), "{codes:?}");
    codes[0]
}

/// AddPartitionsToTxn v4+ with one transaction.
fn add_batched(
    broker: &Broker,
    version: i16,
    id: &str,
    producer: (i64, i16),
    verify_only: bool,
    topics: &[(&str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let mut transaction = add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = TransactionalId(text(id));
    transaction.producer_id = ProducerId(producer.0);
    transaction.producer_epoch = producer.1;
    transaction.verify_only = verify_only;
    transaction.topics = topics_of(topics);
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    match raw_call(broker, ApiKey::AddPartitionsToTxn, version, RequestKind::AddPartitionsToTxn(request)) {
        ResponseKind::AddPartitionsToTxn(r) => {
            assert_eq!(r.error_code, NONE);
            assert_eq!(r.results_by_transaction.len(), 1);
            assert_eq!(r.results_by_transaction[0].transactional_id.0.as_str(), id);
            flatten(&r.results_by_transaction[0].topic_results)
        }
        other => panic!("{other:?}"),
    }
}

fn add_offsets(broker: &Broker, version: i16, id: &str, producer: (i64, i16), group: &str) -> i16 {
    let mut request = AddOffsetsToTxnRequest::default();
    request.transactional_id = TransactionalId(text(id));
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.group_id = GroupId(text(group));
    match raw_call(broker, ApiKey::AddOffsetsToTxn, version, RequestKind::AddOffsetsToTxn(request)) {
        ResponseKind::AddOffsetsToTxn(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

fn end_txn(broker: &Broker, version: i16, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    let mut request = EndTxnRequest::default();
    request.transactional_id = TransactionalId(text(id));
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.committed = commit;
    match raw_call(broker, ApiKey::EndTxn, version, RequestKind::EndTxn(request)) {
        ResponseKind::EndTxn(r) => r.error_code,
        other => panic!("{other:?}"),
    }
}

fn describe(broker: &Broker, ids: &[&str]) -> Vec<describe_transactions_response::TransactionState> {
    let mut request = DescribeTransactionsRequest::default();
    request.transactional_ids = ids.iter().map(|id| TransactionalId(text(id))).collect();
    match raw_call(broker, ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(request)) {
        ResponseKind::DescribeTransactions(r) => r.transaction_states,
        other => panic!("{other:?}"),
    }
}

/// One id's (error, state, producer id, epoch, partitions by topic).
type Described = (i16, String, i64, i16, Vec<(String, Vec<i32>)>);

fn describe_one(broker: &Broker, id: &str) -> Described {
    let state = describe(broker, &[id]).remove(0);
    assert_eq!(state.transactional_id.0.as_str(), id);
    let topics = state.topics.iter().map(|t| (t.topic.0.to_string(), t.partitions.clone())).collect();
    (state.error_code, state.transaction_state.to_string(), state.producer_id.0, state.producer_epoch, topics)
}

/// Polls DescribeTransactions until `id` is in `state`.
fn wait_for_state(broker: &Broker, id: &str, state: &str) -> Described {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = describe_one(broker, id);
        if described.1 == state {
            return described;
        }
        assert!(Instant::now() < deadline, "{id} never reached {state}: {described:?}\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ListTransactions; returns the (id, producer id, state) listed, sorted,
/// and the unknown state filters.
fn list(
    broker: &Broker,
    version: i16,
    states: &[&str],
    producer_ids: &[i64],
    duration_ms: i64,
) -> (Vec<(String, i64, String)>, Vec<String>) {
    let mut request = ListTransactionsRequest::default();
    request.state_filters = states.iter().map(|s| text(s)).collect();
    request.producer_id_filters = producer_ids.iter().map(|id| ProducerId(*id)).collect();
    // v0 has no duration filter: its encoder refuses any other value.
    request.duration_filter = if version >= 1 { duration_ms } else { -1 };
    match raw_call(broker, ApiKey::ListTransactions, version, RequestKind::ListTransactions(request)) {
        ResponseKind::ListTransactions(r) => {
            assert_eq!(r.error_code, NONE);
            let mut listed: Vec<(String, i64, String)> = r
                .transaction_states
                .iter()
                .map(|t| (t.transactional_id.0.to_string(), t.producer_id.0, t.transaction_state.to_string()))
                .collect();
            listed.sort();
            (listed, r.unknown_state_filters.iter().map(|s| s.to_string()).collect())
        }
        other => panic!("{other:?}"),
    }
}

fn delete_topic(broker: &Broker, name: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(broker).create().unwrap();
    let results = futures::executor::block_on(admin.delete_topics(&[name], &AdminOptions::new())).unwrap();
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("deleting {topic}: {code}"));
    }
}

/// A broker whose timeout and expiry checks run often.
fn fast_checking_broker(shards: usize, expiration_ms: u64) -> (Broker, tempfile::TempDir) {
    let (dir, config) = config_file(&format!(
        "[transactions]\n\"transaction.abort.timed.out.transaction.cleanup.interval.ms\" = 100\n\
         \"transaction.remove.expired.transaction.cleanup.interval.ms\" = 100\n\
         \"transactional.id.expiration.ms\" = {expiration_ms}\n"
    ));
    (Broker::start_with(shards, &["--config", &config]), dir)
}

#[test]
fn init_producer_id_bumps_the_epoch_and_fences_the_previous_producer() {
    // Proves a new transactional id gets a new producer id at epoch 0, a
    // second InitProducerId bumps the epoch, and the first producer is then
    // fenced on AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
    // (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH for versions before it).
    let broker = Broker::start();
    create_topic(&broker, "fence", 2, &[]);
    let (producer_id, epoch) = init_ok(&broker, "fenced-id", 60_000);
    assert_eq!(epoch, 0);
    let (other_id, _) = init_ok(&broker, "another-id", 60_000);
    assert_ne!(producer_id, other_id, "each transactional id has its own producer id");
    assert_eq!(init_ok(&broker, "fenced-id", 60_000), (producer_id, 1));
    let zombie = (producer_id, 0);
    assert_eq!(add_code(&broker, 3, "fenced-id", zombie, &[("fence", &[0])]), PRODUCER_FENCED);
    assert_eq!(add_code(&broker, 1, "fenced-id", zombie, &[("fence", &[0])]), INVALID_PRODUCER_EPOCH);
    assert_eq!(add_offsets(&broker, 3, "fenced-id", zombie, "g"), PRODUCER_FENCED);
    assert_eq!(add_offsets(&broker, 0, "fenced-id", zombie, "g"), INVALID_PRODUCER_EPOCH);
    assert_eq!(end_txn(&broker, 3, "fenced-id", zombie, true), PRODUCER_FENCED);
    assert_eq!(end_txn(&broker, 1, "fenced-id", zombie, true), INVALID_PRODUCER_EPOCH);
    // The current producer goes on.
    assert_eq!(add_code(&broker, 3, "fenced-id", (producer_id, 1), &[("fence", &[0, 1])]), NONE);
    assert_eq!(add_offsets(&broker, 3, "fenced-id", (producer_id, 1), "g"), NONE);
    let (code, state, described_id, described_epoch, topics) = describe_one(&broker, "fenced-id");
    assert_eq!((code, state.as_str(), described_id, described_epoch), (NONE, "Ongoing", producer_id, 1));
    assert_eq!(topics, [("fence".to_owned(), vec![0, 1])]);
}

#[test]
fn init_producer_id_checks_requests_and_kip_360_recovery() {
    // Proves KIP-360 recovery (InitProducerId v3+ with the current producer
    // id and epoch bumps it; a retry with the previous epoch gets the same
    // answer; a stale epoch or another producer id is PRODUCER_FENCED, and
    // INVALID_PRODUCER_EPOCH below v4), Kafka's request checks (empty id
    // or half a producer: INVALID_REQUEST; timeout out of range:
    // INVALID_TRANSACTION_TIMEOUT), and that idempotent producers still
    // get a fresh producer id each time.
    let broker = Broker::start();
    let (producer_id, _) = init_ok(&broker, "recovering", 60_000);
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (producer_id, 0)), (NONE, producer_id, 1));
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (producer_id, 0)), (NONE, producer_id, 1), "a retry");
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (producer_id, 5)), (PRODUCER_FENCED, -1, -1));
    assert_eq!(init(&broker, 3, Some("recovering"), 60_000, (producer_id, 5)), (INVALID_PRODUCER_EPOCH, -1, -1));
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (producer_id + 1_000, 1)).0, PRODUCER_FENCED);
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (producer_id, -1)).0, INVALID_REQUEST);
    assert_eq!(init(&broker, 4, Some("recovering"), 60_000, (-1, 1)).0, INVALID_REQUEST);
    assert_eq!(init(&broker, 4, Some(""), 60_000, (-1, -1)).0, INVALID_REQUEST);
    assert_eq!(init(&broker, 4, Some("bad-timeout"), 0, (-1, -1)).0, INVALID_TRANSACTION_TIMEOUT);
    assert_eq!(init(&broker, 4, Some("bad-timeout"), 900_001, (-1, -1)).0, INVALID_TRANSACTION_TIMEOUT);
    assert_eq!(describe_one(&broker, "bad-timeout").0, TRANSACTIONAL_ID_NOT_FOUND, "nothing was created");
    assert_eq!(init(&broker, 4, Some("max-timeout"), 900_000, (-1, -1)).0, NONE);
    // The non-flexible versions of a transactional InitProducerId.
    let (code, v0_id, v0_epoch) = init(&broker, 0, Some("old-client"), 60_000, (-1, -1));
    assert_eq!((code, v0_epoch), (NONE, 0));
    assert_eq!(init(&broker, 1, Some("old-client"), 60_000, (-1, -1)), (NONE, v0_id, 1));
    // Idempotent producers: a new id at epoch 0 every time.
    let first = init(&broker, 4, None, 60_000, (-1, -1));
    let second = init(&broker, 4, None, 60_000, (-1, -1));
    assert_eq!((first.0, first.2, second.0, second.2), (NONE, 0, NONE, 0));
    assert_ne!(first.1, second.1);
}

#[test]
fn add_partitions_to_txn_errors_and_verification() {
    // Proves AddPartitionsToTxn's errors: an unknown transactional id or
    // another producer id is INVALID_PRODUCER_ID_MAPPING, an unknown topic
    // or partition UNKNOWN_TOPIC_OR_PARTITION with OPERATION_NOT_ATTEMPTED
    // for the rest (nothing added), an empty id INVALID_REQUEST; and the
    // KIP-890 v4+ forms: verify_only answers 0 for added partitions and
    // INVALID_TXN_STATE (v4) / TRANSACTION_ABORTABLE (v5) for others, and a
    // batched add without verify_only adds.
    let broker = Broker::start();
    create_topic(&broker, "known", 3, &[]);
    assert_eq!(add_code(&broker, 3, "never-initialized", (1, 0), &[("known", &[0])]), INVALID_PRODUCER_ID_MAPPING);
    let producer = init_ok(&broker, "adder", 60_000);
    assert_eq!(add_code(&broker, 3, "adder", (producer.0 + 1, 0), &[("known", &[0])]), INVALID_PRODUCER_ID_MAPPING);
    let mixed = add_partitions(&broker, 3, "adder", producer, &[("known", &[0, 7]), ("missing", &[0])]);
    assert_eq!(
        mixed,
        [
            ("known".to_owned(), 0, OPERATION_NOT_ATTEMPTED),
            ("known".to_owned(), 7, UNKNOWN_TOPIC_OR_PARTITION),
            ("missing".to_owned(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    let (_, state, _, _, topics) = describe_one(&broker, "adder");
    assert_eq!((state.as_str(), topics.len()), ("Empty", 0), "nothing was added");
    assert_eq!(add_code(&broker, 0, "", producer, &[("known", &[0])]), INVALID_REQUEST);
    // v0 (non-flexible) and v3 (flexible) adds; the second only repeats.
    assert_eq!(add_code(&broker, 0, "adder", producer, &[("known", &[0, 1])]), NONE);
    assert_eq!(add_code(&broker, 3, "adder", producer, &[("known", &[1])]), NONE);
    let (_, state, _, _, topics) = describe_one(&broker, "adder");
    assert_eq!((state.as_str(), topics), ("Ongoing", vec![("known".to_owned(), vec![0, 1])]));

    let verify = |version, producer, partitions: &[i32]| -> Vec<i16> {
        add_batched(&broker, version, "adder", producer, true, &[("known", partitions)]).iter().map(|r| r.2).collect()
    };
    assert_eq!(verify(4, producer, &[0, 1, 2]), [NONE, NONE, INVALID_TXN_STATE]);
    assert_eq!(verify(5, producer, &[0, 2]), [NONE, TRANSACTION_ABORTABLE]);
    assert_eq!(verify(5, (producer.0, producer.1 + 1), &[0]), [PRODUCER_FENCED]);
    assert_eq!(verify(5, (producer.0 + 1, producer.1), &[0]), [INVALID_PRODUCER_ID_MAPPING]);
    let unknown = add_batched(&broker, 5, "nobody", (1, 0), true, &[("known", &[0])]);
    assert_eq!(unknown, [("known".to_owned(), 0, INVALID_PRODUCER_ID_MAPPING)]);
    let added = add_batched(&broker, 5, "adder", producer, false, &[("known", &[2])]);
    assert_eq!(added, [("known".to_owned(), 2, NONE)]);
    assert_eq!(verify(5, producer, &[2]), [NONE]);
    let missing = add_batched(&broker, 4, "adder", producer, true, &[("known", &[0]), ("missing", &[1])]);
    assert_eq!(
        missing,
        [("known".to_owned(), 0, OPERATION_NOT_ATTEMPTED), ("missing".to_owned(), 1, UNKNOWN_TOPIC_OR_PARTITION)]
    );
}

#[test]
fn end_txn_states_retries_and_completion_without_markers() {
    // Proves EndTxn on an Empty id is INVALID_TXN_STATE and on an unknown
    // one INVALID_PRODUCER_ID_MAPPING; a transaction whose only partitions
    // were deleted commits (answered once PrepareCommit is durable, then
    // CompleteCommit once the markers are skipped), a retry of the same
    // result succeeds and the other result is INVALID_TXN_STATE; the abort
    // side alike; and the next InitProducerId bumps the epoch.
    let broker = Broker::start();
    let producer = init_ok(&broker, "ender", 60_000);
    assert_eq!(end_txn(&broker, 3, "ender", producer, true), INVALID_TXN_STATE);
    assert_eq!(end_txn(&broker, 3, "ender", producer, false), INVALID_TXN_STATE);
    assert_eq!(end_txn(&broker, 3, "nobody", (1, 0), true), INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(end_txn(&broker, 3, "", producer, true), INVALID_REQUEST);
    let aborter = init_ok(&broker, "aborter", 60_000);
    create_topic(&broker, "doomed", 2, &[]);
    assert_eq!(add_code(&broker, 3, "ender", producer, &[("doomed", &[0, 1])]), NONE);
    assert_eq!(add_code(&broker, 3, "aborter", aborter, &[("doomed", &[1])]), NONE);
    delete_topic(&broker, "doomed");

    assert_eq!(end_txn(&broker, 3, "ender", producer, true), NONE);
    let (_, _, id, epoch, topics) = wait_for_state(&broker, "ender", "CompleteCommit");
    assert_eq!((id, epoch, topics.len()), (producer.0, producer.1, 0), "completion clears the partitions");
    assert_eq!(end_txn(&broker, 3, "ender", producer, true), NONE, "a retry of a completed commit");
    assert_eq!(end_txn(&broker, 0, "ender", producer, false), INVALID_TXN_STATE);

    assert_eq!(end_txn(&broker, 0, "aborter", aborter, false), NONE);
    wait_for_state(&broker, "aborter", "CompleteAbort");
    assert_eq!(end_txn(&broker, 3, "aborter", aborter, false), NONE);
    assert_eq!(end_txn(&broker, 3, "aborter", aborter, true), INVALID_TXN_STATE);

    assert_eq!(init_ok(&broker, "ender", 60_000), (producer.0, producer.1 + 1));
}

#[test]
fn init_producer_id_on_an_ongoing_transaction_aborts_it_first() {
    // Proves InitProducerId while a transaction is ongoing fences it
    // (CONCURRENT_TRANSACTIONS, the transaction aborted with the epoch
    // bumped) and the producer's retry then gets the epoch bumped again.
    let broker = Broker::start();
    create_topic(&broker, "gone", 1, &[]);
    let producer = init_ok(&broker, "restarted-producer", 60_000);
    assert_eq!(add_code(&broker, 3, "restarted-producer", producer, &[("gone", &[0])]), NONE);
    delete_topic(&broker, "gone");
    assert_eq!(init(&broker, 4, Some("restarted-producer"), 60_000, (-1, -1)), (CONCURRENT_TRANSACTIONS, -1, -1));
    let (_, _, _, epoch, _) = wait_for_state(&broker, "restarted-producer", "CompleteAbort");
    assert_eq!(epoch, 1, "the abort was written with the fencing epoch");
    assert_eq!(init_ok(&broker, "restarted-producer", 60_000), (producer.0, 2));
    assert_eq!(add_code(&broker, 3, "restarted-producer", producer, &[("gone", &[0])]), UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn find_coordinator_names_this_node_for_transactional_ids() {
    // Proves FindCoordinator key type 1 (TRANSACTION) is answered with this
    // node, single (v1) and batched (v4), and key type 2 (SHARE) is still
    // INVALID_REQUEST.
    let broker = Broker::start();
    let mut find = FindCoordinatorRequest::default();
    find.key = text("some-transactional-id");
    find.key_type = 1;
    match raw_call(&broker, ApiKey::FindCoordinator, 1, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(r) => {
            assert_eq!((r.error_code, r.node_id.0, r.port), (NONE, 1, broker.port as i32));
            assert_eq!(r.host.as_str(), "127.0.0.1");
        }
        other => panic!("{other:?}"),
    }
    let mut find = FindCoordinatorRequest::default();
    find.key_type = 1;
    find.coordinator_keys = vec![text("a"), text("b"), text("c")];
    match raw_call(&broker, ApiKey::FindCoordinator, 4, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(r) => {
            assert_eq!(r.coordinators.len(), 3);
            assert!(r.coordinators.iter().all(|c| c.error_code == NONE && c.port == broker.port as i32));
        }
        other => panic!("{other:?}"),
    }
    let mut find = FindCoordinatorRequest::default();
    find.key_type = 2;
    find.coordinator_keys = vec![text("share")];
    match raw_call(&broker, ApiKey::FindCoordinator, 4, RequestKind::FindCoordinator(find)) {
        ResponseKind::FindCoordinator(r) => assert_eq!(r.coordinators[0].error_code, INVALID_REQUEST),
        other => panic!("{other:?}"),
    }
}

#[test]
fn describe_and_list_transactions() {
    // Proves DescribeTransactions reports state, producer, timeout, start
    // time and partitions by topic, TRANSACTIONAL_ID_NOT_FOUND for unknown
    // ids and INVALID_REQUEST for an empty one; and ListTransactions lists
    // every shard's ids with Kafka's state, producer id and (v1) duration
    // filters, naming unknown states.
    let broker = Broker::start();
    create_topic(&broker, "listed", 2, &[]);
    let idle = init_ok(&broker, "idle", 45_000);
    let busy = init_ok(&broker, "busy", 60_000);
    assert_eq!(add_code(&broker, 3, "busy", busy, &[("listed", &[1, 0])]), NONE);
    let states = describe(&broker, &["idle", "busy", "nobody", ""]);
    assert_eq!(states.len(), 4);
    let idle_state = &states[0];
    assert_eq!((idle_state.error_code, idle_state.transaction_state.as_str()), (NONE, "Empty"));
    assert_eq!((idle_state.producer_id.0, idle_state.producer_epoch), idle);
    assert_eq!((idle_state.transaction_timeout_ms, idle_state.transaction_start_time_ms), (45_000, -1));
    assert!(idle_state.topics.is_empty());
    let busy_state = &states[1];
    assert_eq!((busy_state.error_code, busy_state.transaction_state.as_str()), (NONE, "Ongoing"));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((now_ms - 60_000..=now_ms).contains(&busy_state.transaction_start_time_ms));
    assert_eq!(busy_state.topics.len(), 1);
    assert_eq!(
        (busy_state.topics[0].topic.0.as_str(), busy_state.topics[0].partitions.clone()),
        ("listed", vec![0, 1])
    );
    assert_eq!(states[2].error_code, TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(states[3].error_code, INVALID_REQUEST);

    let both = vec![("busy".to_owned(), busy.0, "Ongoing".to_owned()), ("idle".to_owned(), idle.0, "Empty".to_owned())];
    assert_eq!(list(&broker, 0, &[], &[], -1), (both.clone(), vec![]));
    assert_eq!(list(&broker, 0, &["Ongoing"], &[], -1), (vec![both[0].clone()], vec![]));
    assert_eq!(list(&broker, 1, &["Ongoing", "Bogus"], &[], -1), (vec![both[0].clone()], vec!["Bogus".to_owned()]));
    assert_eq!(list(&broker, 1, &["Bogus"], &[], -1), (vec![], vec!["Bogus".to_owned()]));
    assert_eq!(list(&broker, 0, &["ongoing"], &[], -1).1, ["ongoing"], "state names are case-sensitive");
    assert_eq!(list(&broker, 0, &[], &[idle.0], -1), (vec![both[1].clone()], vec![]));
    // v1: only transactions running longer than the duration; an id that
    // never started one has start time -1 and passes, as in Kafka.
    assert_eq!(list(&broker, 1, &[], &[], 3_600_000), (vec![both[1].clone()], vec![]));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(list(&broker, 1, &[], &[], 10), (both.clone(), vec![]));
    assert_eq!(list(&broker, 0, &[], &[], 3_600_000), (both, vec![]), "v0 sends no duration filter");
}

#[test]
fn transaction_state_survives_restarts_and_shard_count_changes() {
    // Proves every transactional id's state (producer id, epoch, state,
    // partitions) is durable across SIGTERM and kill -9, and follows a
    // change of the shard count both ways (ids handed over, logs of shards
    // that no longer run removed); epochs continue from the restored state.
    let mut broker = Broker::start();
    create_topic(&broker, "durable", 4, &[]);
    let ids: Vec<String> = (0..12).map(|i| format!("durable-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let producer = init_ok(&broker, id, 600_000);
        if i % 2 == 0 {
            let partitions = [(i % 4) as i32];
            assert_eq!(add_code(&broker, 3, id, producer, &[("durable", &partitions)]), NONE);
        }
        if i % 3 == 0 {
            assert_eq!(init_ok(&broker, &format!("{id}-bumped"), 600_000).1, 0);
            assert_eq!(init_ok(&broker, &format!("{id}-bumped"), 600_000).1, 1);
        }
    }
    let mut all: Vec<String> = ids.clone();
    all.extend(ids.iter().enumerate().filter(|(i, _)| i % 3 == 0).map(|(_, id)| format!("{id}-bumped")));
    let snapshot = |broker: &Broker| -> Vec<Described> { all.iter().map(|id| describe_one(broker, id)).collect() };
    let before = snapshot(&broker);
    assert!(before.iter().all(|d| d.0 == NONE));
    assert_eq!(before.iter().filter(|d| d.1 == "Ongoing").count(), 6);

    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    assert_eq!(snapshot(&broker), before, "after SIGTERM");
    broker.kill9();
    broker.restart();
    assert_eq!(snapshot(&broker), before, "after kill -9");
    broker.set_shards(3);
    broker.stop();
    broker.restart();
    assert_eq!(snapshot(&broker), before, "with 3 shards");
    broker.set_shards(1);
    broker.stop();
    broker.restart();
    assert_eq!(snapshot(&broker), before, "with 1 shard");
    let logs: Vec<String> = std::fs::read_dir(broker.data_dir.join("__transaction_state"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(logs, ["0"], "the logs of shards that no longer run were removed");
    let (_, _, producer_id, epoch, _) = before[1].clone();
    assert_eq!(init_ok(&broker, &all[1], 600_000), (producer_id, epoch + 1));
    let ongoing = before[0].clone();
    assert_eq!(add_code(&broker, 3, &all[0], (ongoing.2, ongoing.3), &[("durable", &[1])]), NONE);
    assert_eq!(describe_one(&broker, &all[0]).4, [("durable".to_owned(), vec![0, 1])]);
}

#[test]
fn a_timed_out_transaction_is_aborted_and_its_producer_fenced() {
    // Proves a transaction open longer than its timeout is aborted by the
    // periodic check with the epoch bumped (CompleteAbort at epoch 1), so
    // the zombie producer is fenced on every request, and the producer's
    // next InitProducerId bumps the epoch again.
    let (broker, _config) = fast_checking_broker(2, 604_800_000);
    create_topic(&broker, "slow", 1, &[]);
    let zombie = init_ok(&broker, "slowpoke", 1_000);
    assert_eq!(add_code(&broker, 3, "slowpoke", zombie, &[("slow", &[0])]), NONE);
    delete_topic(&broker, "slow");
    let (_, _, producer_id, epoch, _) = wait_for_state(&broker, "slowpoke", "CompleteAbort");
    assert_eq!((producer_id, epoch), (zombie.0, 1));
    assert!(broker.log().contains("aborting a transaction past its timeout"), "{}", broker.log());
    assert_eq!(add_offsets(&broker, 3, "slowpoke", zombie, "g"), PRODUCER_FENCED);
    assert_eq!(end_txn(&broker, 3, "slowpoke", zombie, false), PRODUCER_FENCED);
    assert_eq!(init_ok(&broker, "slowpoke", 1_000), (zombie.0, 2));
}

#[test]
fn idle_transactional_ids_expire_durably() {
    // Proves an id idle past transactional.id.expiration.ms is removed
    // (TRANSACTIONAL_ID_NOT_FOUND, not listed), stays removed after a
    // restart, and a new InitProducerId then starts it afresh with a new
    // producer id at epoch 0; an ongoing transaction does not expire.
    let (mut broker, _config) = fast_checking_broker(2, 1_000);
    create_topic(&broker, "kept", 1, &[]);
    let old = init_ok(&broker, "short-lived", 600_000);
    let open = init_ok(&broker, "open", 600_000);
    assert_eq!(add_code(&broker, 3, "open", open, &[("kept", &[0])]), NONE);
    let deadline = Instant::now() + Duration::from_secs(30);
    while describe_one(&broker, "short-lived").0 != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "never expired:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(list(&broker, 0, &[], &[], -1).0, [("open".to_owned(), open.0, "Ongoing".to_owned())]);
    broker.stop();
    broker.restart();
    assert_eq!(describe_one(&broker, "short-lived").0, TRANSACTIONAL_ID_NOT_FOUND);
    assert_eq!(describe_one(&broker, "open").1, "Ongoing");
    let fresh = init_ok(&broker, "short-lived", 600_000);
    assert_ne!(fresh.0, old.0);
    assert_eq!(fresh.1, 0);
}

#[test]
fn librdkafka_initializes_transactions_and_a_second_producer_fences_the_first() {
    // Proves librdkafka's transactional producer gets through
    // init_transactions (FindCoordinator key type 1, InitProducerId v4)
    // and begin/abort of an empty transaction, and that a second producer
    // with the same transactional.id bumps the epoch.
    let broker = Broker::start();
    let transactional =
        [("transactional.id", "rdkafka-txn"), ("transaction.timeout.ms", "30000"), ("message.timeout.ms", "30000")];
    let first = producer(&broker, &transactional);
    first.init_transactions(Duration::from_secs(30)).expect("init_transactions");
    first.begin_transaction().expect("begin_transaction");
    first.abort_transaction(Duration::from_secs(30)).expect("abort of an empty transaction");
    let (code, state, producer_id, epoch, _) = describe_one(&broker, "rdkafka-txn");
    assert_eq!((code, state.as_str(), epoch), (NONE, "Empty", 0));
    let second = producer(&broker, &transactional);
    second.init_transactions(Duration::from_secs(30)).expect("second init_transactions");
    let (_, _, second_id, second_epoch, _) = describe_one(&broker, "rdkafka-txn");
    assert_eq!((second_id, second_epoch), (producer_id, 1));
    let found = describe(&broker, &["rdkafka-txn"]).remove(0);
    assert_eq!(found.transaction_timeout_ms, 30_000);
}

#[test]
fn a_prepared_transaction_is_completed_after_a_crash() {
    // Proves a transaction whose PrepareCommit was durable when the broker
    // was killed is completed after the restart: the coordinator finds it
    // in its log and writes its markers again (here skipped, its topic
    // being deleted after the restart), then CompleteCommit, without the
    // producer asking again; and its EndTxn retry then succeeds.
    let (mut broker, _config) = fast_checking_broker(2, 604_800_000);
    create_topic(&broker, "recovered", 1, &[]);
    let producer = init_ok(&broker, "crashing", 600_000);
    assert_eq!(add_code(&broker, 3, "crashing", producer, &[("recovered", &[0])]), NONE);
    assert_eq!(end_txn(&broker, 3, "crashing", producer, true), NONE);
    let (_, state, _, _, _) = describe_one(&broker, "crashing");
    assert!(state == "PrepareCommit" || state == "CompleteCommit", "{state}");
    broker.kill9();
    broker.restart();
    delete_topic(&broker, "recovered");
    let (_, _, producer_id, epoch, topics) = wait_for_state(&broker, "crashing", "CompleteCommit");
    assert_eq!((producer_id, epoch, topics.len()), (producer.0, producer.1, 0));
    assert_eq!(end_txn(&broker, 3, "crashing", producer, true), NONE);
    assert_eq!(init(&broker, 4, Some("crashing"), 600_000, (-1, -1)), (NONE, producer.0, 1));
}
