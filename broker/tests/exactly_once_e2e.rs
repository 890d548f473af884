//! End-to-end tests of transactions as a user sees them: librdkafka's
//! transactional producer and read_committed consumers against the real
//! `stele` binary, through the whole path (coordinator, KIP-890
//! verification, markers on partitions and on `__consumer_offsets`, LSO,
//! aborted-transaction lists): commit and abort at both isolation levels,
//! an open transaction holding consumers and the watermarks back, zombie
//! fencing, and a consume-transform-produce loop that stays exactly-once
//! across kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(broker: &Broker, transactional_id: &str) -> TestProducer {
    let producer = producer(
        broker,
        &[("transactional.id", transactional_id), ("transaction.timeout.ms", "60000"), ("linger.ms", "1")],
    );
    producer.init_transactions(TIMEOUT).expect("init_transactions");
    producer
}

/// Sends `values` to `topic`, spread over `partitions` round-robin, inside
/// the producer's current transaction, and flushes them (acknowledged,
/// not committed).
fn send(producer: &TestProducer, topic: &str, partitions: i32, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        let record = BaseRecord::<(), String>::to(topic).payload(value).partition(i as i32 % partitions);
        producer.send(record).map_err(|(err, _)| err).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(TIMEOUT).expect("flush");
    assert!(producer.context().failures().is_empty(), "{:?}", producer.context().failures());
}

fn values_of(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn isolated_reader(broker: &Broker, isolation: &str, group: &str) -> BaseConsumer {
    consumer(broker, &[("isolation.level", isolation), ("group.id", group), ("fetch.wait.max.ms", "50")])
}

/// Everything a consumer at `isolation` reads from the start of `topic`
/// until `quiet` passes without a record, as sorted values.
fn read_all(broker: &Broker, topic: &str, partitions: i32, isolation: &str, quiet: Duration) -> Vec<String> {
    let reader = isolated_reader(broker, isolation, &format!("reader-{isolation}"));
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    }
    reader.assign(&assignment).unwrap();
    let mut values: Vec<String> =
        drain(&reader, quiet).into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect();
    values.sort();
    values
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

#[test]
fn committed_transactions_are_read_and_aborted_ones_skipped_at_read_committed() {
    // Proves librdkafka's begin/send/commit and begin/send/abort over three partitions:
    // read_committed consumers see exactly the committed transactions' records,
    // read_uncommitted ones see the aborted records too, and a plain producer's records
    // written meanwhile are visible to both.
    let broker = Broker::start();
    create_topic(&broker, "eos-basic", 3, &[]);
    let transactional = transactional_producer(&broker, "eos-basic-app");
    let plain = producer(&broker, &[]);

    transactional.begin_transaction().unwrap();
    send(&transactional, "eos-basic", 3, &values_of("committed-a", 0..30));
    transactional.commit_transaction(TIMEOUT).expect("commit");
    transactional.begin_transaction().unwrap();
    send(&transactional, "eos-basic", 3, &values_of("aborted", 0..30));
    produce_all(&plain, "eos-basic", Some(1), &[(None, b"plain-during-abort".to_vec())]);
    transactional.abort_transaction(TIMEOUT).expect("abort");
    transactional.begin_transaction().unwrap();
    send(&transactional, "eos-basic", 3, &values_of("committed-b", 0..30));
    transactional.commit_transaction(TIMEOUT).expect("second commit");

    let mut expected: Vec<String> = values_of("committed-a", 0..30);
    expected.extend(values_of("committed-b", 0..30));
    expected.push("plain-during-abort".to_owned());
    let committed = read_all(&broker, "eos-basic", 3, "read_committed", Duration::from_secs(3));
    assert_eq!(committed, sorted(expected.clone()));
    expected.extend(values_of("aborted", 0..30));
    let everything = read_all(&broker, "eos-basic", 3, "read_uncommitted", Duration::from_secs(3));
    assert_eq!(everything, sorted(expected));
}

#[test]
fn an_open_transaction_holds_back_read_committed_consumers_and_watermarks() {
    // Proves that acknowledged records of an open transaction are invisible to a
    // read_committed consumer and its high watermark query (the LSO), visible to a
    // read_uncommitted one, and released to the waiting consumer by the commit, whose
    // marker the LSO has passed when the commit returns.
    let broker = Broker::start();
    create_topic(&broker, "eos-open", 1, &[]);
    let plain = producer(&broker, &[]);
    produce_all(&plain, "eos-open", Some(0), &[(None, b"before".to_vec())]);
    let transactional = transactional_producer(&broker, "eos-open-app");
    transactional.begin_transaction().unwrap();
    send(&transactional, "eos-open", 1, &values_of("open", 0..5));

    let committed = isolated_reader(&broker, "read_committed", "open-committed");
    let got = consume(&committed, "eos-open", &[0], Offset::Beginning, 1, TIMEOUT);
    assert_eq!(got[0].value, b"before");
    assert!(drain(&committed, Duration::from_millis(1500)).is_empty(), "nothing past the LSO");
    assert_eq!(committed.fetch_watermarks("eos-open", 0, TIMEOUT).unwrap(), (0, 1), "read_committed: the LSO");
    let uncommitted = isolated_reader(&broker, "read_uncommitted", "open-uncommitted");
    assert_eq!(uncommitted.fetch_watermarks("eos-open", 0, TIMEOUT).unwrap(), (0, 6));
    assert_eq!(consume(&uncommitted, "eos-open", &[0], Offset::Beginning, 6, TIMEOUT).len(), 6);

    transactional.commit_transaction(TIMEOUT).expect("commit");
    // EndTxn is answered once the markers are durable (docs/transactions.md),
    // so the LSO has passed the COMMIT marker when the commit returns.
    assert_eq!(committed.fetch_watermarks("eos-open", 0, TIMEOUT).unwrap(), (0, 7));
    let mut released = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while released.len() < 5 && Instant::now() < deadline {
        released.extend(drain(&committed, Duration::from_millis(200)));
    }
    let released: Vec<String> = released.into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect();
    assert_eq!(released, values_of("open", 0..5));
}

#[test]
fn a_new_instance_fences_the_zombie_and_aborts_its_transaction() {
    // Proves zombie fencing: a second producer with the same transactional.id aborts the
    // first one's open transaction (its records are never read_committed) and the first
    // one's commit fails as fenced, while the new instance's own transaction commits.
    let broker = Broker::start();
    create_topic(&broker, "eos-zombie", 2, &[]);
    let zombie = transactional_producer(&broker, "eos-zombie-app");
    zombie.begin_transaction().unwrap();
    send(&zombie, "eos-zombie", 2, &values_of("zombie", 0..10));
    let successor = transactional_producer(&broker, "eos-zombie-app");
    let fenced = zombie.commit_transaction(TIMEOUT).expect_err("the zombie's commit must fail");
    let fatal = fenced.rdkafka_error_code();
    assert!(
        matches!(
            fatal,
            Some(rdkafka::types::RDKafkaErrorCode::Fenced)
                | Some(rdkafka::types::RDKafkaErrorCode::ProducerFenced)
                | Some(rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch)
        ),
        "the zombie is told it was fenced: {fenced}"
    );
    successor.begin_transaction().unwrap();
    send(&successor, "eos-zombie", 2, &values_of("successor", 0..10));
    successor.commit_transaction(TIMEOUT).expect("the successor commits");
    let committed = read_all(&broker, "eos-zombie", 2, "read_committed", Duration::from_secs(3));
    assert_eq!(committed, sorted(values_of("successor", 0..10)));
    let everything = read_all(&broker, "eos-zombie", 2, "read_uncommitted", Duration::from_secs(3));
    assert_eq!(everything.len(), 20, "the zombie's records are in the log, aborted");
}

/// One instance of the consume-transform-produce application: a
/// read_committed consumer of `eos-in` in group `eos-app` (offsets from
/// the group, committed only through the transaction) and a transactional
/// producer to `eos-out`.
struct App {
    consumer: BaseConsumer,
    producer: TestProducer,
}

impl App {
    fn start(broker: &Broker) -> App {
        let producer = transactional_producer(broker, "eos-app-producer");
        let consumer = consumer(
            broker,
            &[("isolation.level", "read_committed"), ("group.id", "eos-app"), ("fetch.wait.max.ms", "50")],
        );
        let mut assignment = TopicPartitionList::new();
        for partition in 0..2 {
            assignment.add_partition_offset("eos-in", partition, Offset::Stored).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        App { consumer, producer }
    }

    /// Reads up to `count` input records (waiting up to `TIMEOUT` for the
    /// first), produces their transformed values and the consumer's next
    /// offsets in one transaction, and leaves it open.
    fn transform(&self, count: usize) -> usize {
        self.producer.begin_transaction().unwrap();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + TIMEOUT;
        let mut taken = 0;
        while taken < count && Instant::now() < deadline {
            let Some(message) = self.consumer.poll(Duration::from_millis(100)) else {
                if taken > 0 {
                    break;
                }
                continue;
            };
            let message = message.expect("consume");
            use rdkafka::Message;
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            let transformed = format!("out:{value}");
            let out = BaseRecord::<(), String>::to("eos-out").payload(&transformed).partition(0);
            self.producer.send(out).map_err(|(err, _)| err).expect("send");
            next.insert(message.partition(), message.offset() + 1);
            taken += 1;
        }
        self.producer.flush(TIMEOUT).expect("flush");
        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next {
            offsets.add_partition_offset("eos-in", partition, Offset::Offset(offset)).unwrap();
        }
        let metadata = self.consumer.group_metadata().expect("group metadata");
        self.producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT).expect("send_offsets_to_transaction");
        taken
    }
}

#[test]
fn consume_transform_produce_is_exactly_once_across_kill_9() {
    // Proves the exactly-once loop: input records are transformed in transactions that
    // also commit the consumer's offsets. A kill -9 with a transaction open (its output and
    // offsets are aborted when the next instance initializes) and a kill -9 right after a
    // commit was answered (its markers are finished after restart) leave read_committed
    // output holding each input record exactly once, and the group's committed offsets at
    // the end of the input.
    let mut broker = Broker::start();
    create_topic(&broker, "eos-in", 2, &[]);
    create_topic(&broker, "eos-out", 1, &[]);
    let input = values_of("in", 0..200);
    let plain = producer(&broker, &[]);
    for (i, value) in input.iter().enumerate() {
        produce_all(&plain, "eos-in", Some(i as i32 % 2), &[(None, value.clone().into_bytes())]);
    }
    drop(plain);

    let app = App::start(&broker);
    let mut done = 0;
    for _ in 0..3 {
        done += app.transform(20);
        app.producer.commit_transaction(TIMEOUT).expect("commit");
    }
    // Crash with a transaction open: its 20 outputs and offsets must vanish.
    assert!(app.transform(20) > 0);
    broker.kill9();
    drop(app);
    broker.restart();

    let app = App::start(&broker);
    done += app.transform(30);
    app.producer.commit_transaction(TIMEOUT).expect("commit after the first crash");
    // Crash right after a commit was answered: its outputs and offsets must stay.
    broker.kill9();
    drop(app);
    broker.restart();

    let app = App::start(&broker);
    let deadline = Instant::now() + Duration::from_secs(120);
    while done < input.len() {
        assert!(Instant::now() < deadline, "the application did not finish the input ({done} records)");
        done += app.transform(50);
        app.producer.commit_transaction(TIMEOUT).expect("commit");
    }
    assert_eq!(done, input.len(), "committed transactions took each input record once");
    let committed = app.consumer.committed(TIMEOUT).unwrap();
    for partition in 0..2 {
        assert_eq!(committed.find_partition("eos-in", partition).unwrap().offset(), Offset::Offset(100));
    }
    let output = read_all(&broker, "eos-out", 1, "read_committed", Duration::from_secs(3));
    let expected: Vec<String> = input.iter().map(|value| format!("out:{value}")).collect();
    assert_eq!(output, sorted(expected), "each input record exactly once");
    let everything = read_all(&broker, "eos-out", 1, "read_uncommitted", Duration::from_secs(3));
    assert!(everything.len() > output.len(), "the aborted transaction's outputs are in the log");
}
