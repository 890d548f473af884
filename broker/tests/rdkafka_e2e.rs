//! End-to-end tests with librdkafka (the `rdkafka` crate) against the real
//! `stele` binary on loopback, with real files: produce and consume,
//! compression, offsets by time, admin operations, restarts and kill -9.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::Consumer;
use rdkafka::Offset;

fn records(count: usize, keyed: bool) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    (0..count)
        .map(|i| (keyed.then(|| format!("key-{}", i % 7).into_bytes()), format!("value-{i}").into_bytes()))
        .collect()
}

#[test]
fn produce_and_consume_with_and_without_keys_across_shards() {
    // Proves records produced to several partitions (placed on both shards)
    // come back in order per partition, keys and values intact.
    let broker = Broker::start();
    create_topic(&broker, "orders", 4, &[]);
    let producer = producer(&broker, &[("acks", "all")]);
    let sent = records(200, true);
    for partition in 0..4 {
        produce_all(
            &producer,
            "orders",
            Some(partition),
            &sent[partition as usize * 50..(partition as usize + 1) * 50],
        );
    }
    produce_all(&producer, "orders", Some(0), &records(10, false));
    let consumer = consumer(&broker, &[]);
    let got = consume(&consumer, "orders", &[0, 1, 2, 3], Offset::Beginning, 210, Duration::from_secs(30));
    for partition in 0..4 {
        let mine: Vec<_> = got.iter().filter(|c| c.partition == partition).collect();
        let expected = if partition == 0 { 60 } else { 50 };
        assert_eq!(mine.len(), expected, "partition {partition}");
        for (i, record) in mine.iter().enumerate() {
            assert_eq!(record.offset, i as i64, "offsets are dense per partition");
            if i < 50 {
                let (key, value) = &sent[partition as usize * 50 + i];
                assert_eq!(&record.key, key);
                assert_eq!(&record.value, value);
            } else {
                assert_eq!(record.key, None);
                assert_eq!(record.value, format!("value-{}", i - 50).into_bytes());
            }
        }
    }
    assert!(drain(&consumer, Duration::from_millis(500)).is_empty(), "no records beyond those produced");
}

#[test]
fn every_compression_codec_round_trips() {
    // Proves batches compressed by librdkafka with each codec are stored and
    // served so that the consumer decompresses them to the same records.
    let broker = Broker::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&broker, &topic, 1, &[]);
        let producer = producer(&broker, &[("compression.codec", codec), ("linger.ms", "50")]);
        let sent = records(300, true);
        produce_all(&producer, &topic, Some(0), &sent);
        let consumer = consumer(&broker, &[]);
        let got = consume(&consumer, &topic, &[0], Offset::Beginning, 300, Duration::from_secs(30));
        let values: Vec<_> = got.iter().map(|c| c.value.clone()).collect();
        let expected: Vec<_> = sent.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(values, expected, "codec {codec}");
    }
}

#[test]
fn consume_from_earliest_latest_and_timestamp() {
    // Proves auto.offset.reset earliest/latest and offsets_for_times (ListOffsets
    // by timestamp) start the consumer where Kafka would.
    let broker = Broker::start();
    create_topic(&broker, "clock", 1, &[]);
    let producer = producer(&broker, &[]);
    produce_all(&producer, "clock", Some(0), &records(10, false));
    std::thread::sleep(Duration::from_millis(50));
    let middle = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(Duration::from_millis(50));
    produce_all(&producer, "clock", Some(0), &records(10, false));

    let consumer = consumer(&broker, &[]);
    let mut query = rdkafka::TopicPartitionList::new();
    query.add_partition_offset("clock", 0, Offset::Offset(middle)).unwrap();
    let found = consumer.offsets_for_times(query, Duration::from_secs(10)).unwrap();
    assert_eq!(found.find_partition("clock", 0).unwrap().offset(), Offset::Offset(10));

    let got = consume(&consumer, "clock", &[0], Offset::Offset(10), 10, Duration::from_secs(30));
    assert_eq!(got.first().map(|c| c.offset), Some(10));

    let (low, high) = consumer.fetch_watermarks("clock", 0, Duration::from_secs(10)).unwrap();
    assert_eq!((low, high), (0, 20));

    // Offset::End is ListOffsets(latest); committed offsets need consumer
    // groups, which are their own issue.
    let latest = common::consumer(&broker, &[]);
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset("clock", 0, Offset::End).unwrap();
    latest.assign(&assignment).unwrap();
    assert!(drain(&latest, Duration::from_secs(2)).is_empty(), "latest starts after the existing records");
    produce_all(&producer, "clock", Some(0), &records(1, false));
    let fresh = drain(&latest, Duration::from_secs(3));
    assert_eq!(fresh.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![20]);
}

#[test]
fn records_survive_a_clean_restart() {
    // Proves SIGTERM exits 0 and a restart brings back topics and records.
    let mut broker = Broker::start();
    create_topic(&broker, "durable", 3, &[]);
    let producer = producer(&broker, &[("acks", "all")]);
    let sent = records(90, true);
    for partition in 0..3 {
        produce_all(
            &producer,
            "durable",
            Some(partition),
            &sent[partition as usize * 30..(partition as usize + 1) * 30],
        );
    }
    drop(producer);
    assert!(broker.stop(), "clean exit on SIGTERM");
    broker.restart();
    let consumer = consumer(&broker, &[]);
    let got = consume(&consumer, "durable", &[0, 1, 2], Offset::Beginning, 90, Duration::from_secs(30));
    assert_eq!(got.len(), 90);
    assert!(drain(&consumer, Duration::from_millis(500)).is_empty());
}

#[test]
fn acknowledged_records_survive_kill_9() {
    // Proves acks=all records acknowledged before a kill -9 are all there
    // after restart (each acknowledgement waited for fdatasync).
    let mut broker = Broker::start();
    create_topic(&broker, "crash", 2, &[]);
    let producer = producer(&broker, &[("acks", "all"), ("linger.ms", "1")]);
    let sent = records(500, false);
    produce_all(&producer, "crash", Some(0), &sent[..250]);
    produce_all(&producer, "crash", Some(1), &sent[250..]);
    drop(producer);
    broker.kill9();
    broker.restart();
    let consumer = consumer(&broker, &[]);
    let got = consume(&consumer, "crash", &[0, 1], Offset::Beginning, 500, Duration::from_secs(30));
    let mut values: Vec<_> = got.iter().map(|c| c.value.clone()).collect();
    let mut expected: Vec<_> = sent.iter().map(|(_, v)| v.clone()).collect();
    values.sort();
    expected.sort();
    assert_eq!(values, expected);
}

#[test]
fn idempotent_producer_across_kill_9_has_no_duplicates_and_no_gaps() {
    // Proves an idempotent producer (librdkafka enable.idempotence) that keeps
    // sending while the broker is killed with -9 and restarted ends with every
    // record exactly once, in order: retries of batches that were already
    // appended are recognised from the producer state rebuilt from the log.
    let mut broker = Broker::start();
    create_topic(&broker, "exactly", 1, &[]);
    let producer = std::sync::Arc::new(producer(
        &broker,
        &[("enable.idempotence", "true"), ("linger.ms", "2"), ("batch.num.messages", "50"), ("retry.backoff.ms", "50")],
    ));
    const TOTAL: usize = 4000;
    let sending = {
        let producer = producer.clone();
        std::thread::spawn(move || {
            for i in 0..TOTAL {
                let value = format!("{i:06}");
                let mut record =
                    rdkafka::producer::BaseRecord::<(), String>::to("exactly").payload(&value).partition(0);
                loop {
                    producer.poll(Duration::ZERO);
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    broker.kill9();
    std::thread::sleep(Duration::from_millis(300));
    broker.restart();
    sending.join().unwrap();
    rdkafka::producer::Producer::flush(&*producer, Duration::from_secs(60)).expect("every record acknowledged");
    let consumer = consumer(&broker, &[]);
    let got = consume(&consumer, "exactly", &[0], Offset::Beginning, TOTAL, Duration::from_secs(60));
    let values: Vec<String> = got.iter().map(|c| String::from_utf8(c.value.clone()).unwrap()).collect();
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("{i:06}")).collect();
    assert_eq!(values, expected, "each record once, in order");
    assert!(drain(&consumer, Duration::from_millis(500)).is_empty(), "no duplicates after the last record");
}

#[test]
fn retention_deletes_old_segments_and_advances_the_low_watermark() {
    // Proves the shards apply retention.ms on their own schedule
    // (log.retention.check.interval.ms): old segments go, the log start
    // offset moves, and consumers from the beginning start there.
    let config_dir = tempfile::tempdir_in(test_tmp_dir()).unwrap();
    let config = config_dir.path().join("stele.toml");
    std::fs::write(&config, "[topics]\n\"log.retention.check.interval.ms\" = 200\n").unwrap();
    let broker = Broker::start_with(2, &["--config", config.to_str().unwrap()]);
    create_topic(&broker, "expiring", 1, &[("segment.bytes", "16384"), ("retention.ms", "1000")]);
    // Small batches: a batch larger than segment.bytes is refused, as in Kafka.
    let producer = producer(&broker, &[("linger.ms", "0"), ("batch.size", "4000")]);
    let big: Vec<_> = (0..40).map(|i| (None, vec![b'a' + (i % 26) as u8; 1000])).collect();
    produce_all(&producer, "expiring", Some(0), &big);
    let consumer = consumer(&broker, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (low, high) = loop {
        let (low, high) = consumer.fetch_watermarks("expiring", 0, Duration::from_secs(10)).unwrap();
        if low > 0 || std::time::Instant::now() > deadline {
            break (low, high);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(low > 0 && high == 40, "watermarks ({low}, {high}): retention did not run");
    let got = consume(&consumer, "expiring", &[0], Offset::Beginning, 1, Duration::from_secs(20));
    assert_eq!(got[0].offset, low, "a consumer from the beginning starts at the new log start");
    // The shard logs its summary once the whole pass is done, which can be
    // just after the consumer saw the new log start.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !broker.log().contains("retention deleted segments") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(broker.log().contains("retention deleted segments"), "{}", broker.log());
}

/// Produces one raw batch (v9, acks=all) and returns (error code, base offset).
fn produce_raw(broker: &Broker, topic: &str, batch: bytes::Bytes) -> (i16, i64) {
    use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind, TopicName};
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(batch);
    let mut data = TopicProduceData::default();
    data.name = TopicName(protocol::StrBytes::from_string(topic.to_owned()));
    data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    request.topic_data = vec![data];
    let ResponseKind::Produce(response) = raw_call(broker, ApiKey::Produce, 9, RequestKind::Produce(request)) else {
        panic!("not a Produce response");
    };
    let answer = &response.responses[0].partition_responses[0];
    if answer.error_code != 0 {
        eprintln!("produce error {}: {:?}", answer.error_code, answer.error_message);
    }
    (answer.error_code, answer.base_offset)
}

fn batch(producer: Option<(i64, i32)>, value: &[u8]) -> bytes::Bytes {
    use protocol::compression::Codec;
    use protocol::record_batch::RecordBatchBuilder;
    let mut builder = RecordBatchBuilder::new(Codec::None);
    if let Some((producer_id, sequence)) = producer {
        builder = builder.producer(producer_id, 0, sequence);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    builder.push(now, None, Some(value), &[]);
    builder.build().unwrap()
}

#[test]
fn a_retry_is_deduplicated_after_segment_rolls_and_kill_9() {
    // Proves the producer state rebuilt at restart reaches back past the
    // active segment: an idempotent batch written before several segment
    // rolls and a kill -9 is recognised when retried (original offset, no
    // error, nothing appended), and the next sequence is accepted.
    use protocol::messages::{ApiKey, InitProducerIdRequest, RequestKind, ResponseKind};
    let mut broker = Broker::start();
    create_topic(&broker, "dedup", 1, &[("segment.bytes", "16384")]);
    let mut init = InitProducerIdRequest::default();
    init.transactional_id = None;
    init.transaction_timeout_ms = 60_000;
    let ResponseKind::InitProducerId(id) =
        raw_call(&broker, ApiKey::InitProducerId, 4, RequestKind::InitProducerId(init))
    else {
        panic!("not an InitProducerId response");
    };
    assert_eq!((id.error_code, id.producer_epoch), (0, 0));
    let producer_id = id.producer_id.0;
    let first = batch(Some((producer_id, 0)), b"first");
    assert_eq!(produce_raw(&broker, "dedup", first.clone()), (0, 0));
    for i in 0..10 {
        assert_eq!(produce_raw(&broker, "dedup", batch(None, &[b'f'; 8000])), (0, 1 + i));
    }
    broker.kill9();
    broker.restart();
    assert!(std::fs::read_dir(broker.data_dir.join("dedup-0")).unwrap().count() > 4, "segments rolled");
    assert_eq!(produce_raw(&broker, "dedup", first), (0, 0), "the retry gets its original offset");
    assert_eq!(produce_raw(&broker, "dedup", batch(Some((producer_id, 1)), b"second")), (0, 11));
    let consumer = consumer(&broker, &[]);
    let (_, high) = consumer.fetch_watermarks("dedup", 0, Duration::from_secs(10)).unwrap();
    assert_eq!(high, 12, "the retry appended nothing");
}
