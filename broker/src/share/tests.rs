//! Shard-level tests: a real `Shard` in its own glommio executor, a real
//! `Partition` in a temporary data directory, and its share-state log next
//! to it. Running again on the same directory is a restart; returning
//! without closing anything is a kill -9 (only what was fsynced survives).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use glommio::channels::channel_mesh::MeshBuilder;
use protocol::compression::Codec;
use protocol::record_batch::RecordBatchBuilder;
use protocol::ErrorCode;
use uuid::Uuid;

use super::log::{share_state_dir, SHARE_STATE_DIR};
use super::*;
use crate::config::Config;
use crate::metadata::MetadataImage;
use crate::partition::{now_ms, Partition, ProduceContext};
use crate::shard::{self, Job, Shard};
use crate::topic_config::EffectiveTopicConfig;

const TOPIC_ID: Uuid = Uuid::from_u128(0x5348_4152_4500_0000_0000_0000_0000_0001);
const PRODUCER: i64 = 7000;

/// How a test run ends: a clean shutdown, or a crash (nothing closed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Clean,
    Crash,
}

/// Runs `test` on a one-shard broker core over `data_dir`, with partition
/// `t-0` open on it, and returns what it returns.
fn with_shard<T, F, Fut>(data_dir: &Path, end: End, test: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, Rc<Partition>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    with_shard_logged(data_dir, end, None, test)
}

fn with_shard_logged<T, F, Fut>(data_dir: &Path, end: End, logs: Option<Captured>, test: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>, Rc<Partition>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    engine::memlock::ensure_memlock(4 << 20).unwrap();
    let data_dir: PathBuf = data_dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            if let Some(logs) = logs {
                Captured::install();
                CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs));
            }
            let (senders, receivers) = MeshBuilder::<Job, _>::full(1, 16).join().await.expect("a mesh of one");
            let mut config = Config::from_toml_str("", Path::new("test.toml")).expect("default config");
            config.data_dir = data_dir;
            config.shards = 1;
            let resources = engine::ShardResources::new(engine::ShardLimits::default()).expect("shard resources");
            let metadata = Arc::new(MetadataImage::default());
            let shard = Rc::new(Shard::new(Arc::new(config), resources, metadata, senders, None));
            let jobs = glommio::spawn_local(shard::serve_jobs(shard.clone(), receivers));
            let dir = shard.partition_dir("t", 0);
            let partition = Partition::open(
                dir,
                "t".into(),
                TOPIC_ID,
                0,
                0,
                EffectiveTopicConfig::default(),
                shard.resources.clone(),
            )
            .await
            .expect("the partition opens");
            let partition = Rc::new(partition);
            shard.insert_partition(partition.clone());
            let result = test(shard.clone(), partition.clone()).await;
            if end == End::Clean {
                shard.share.close().await;
                partition.log.close().await.unwrap();
            }
            shard::close_job_queues(&shard);
            jobs.await;
            result
        })
        .expect("an executor")
        .join()
        .expect("the test's executor ran")
}

/// Log lines written by a test's executor thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// The global subscriber's writer: the capture of the writing thread, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(captured) = capture.borrow().as_ref() {
                captured.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// A global subscriber (a thread-local one loses events to the callsite
    /// interest cache while other test threads register callsites).
    fn install() {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn batch(records: usize, producer: Option<i32>) -> Bytes {
    let mut builder = RecordBatchBuilder::new(Codec::None);
    if let Some(sequence) = producer {
        builder = builder.producer(PRODUCER, 0, sequence).transactional(true);
    }
    for _ in 0..records {
        builder.push(now_ms(), None, Some(b"value"), &[]);
    }
    builder.build().unwrap()
}

/// Produces one batch and waits until it is durable (visible).
async fn produce(partition: &Partition, records: usize) {
    produce_batch(partition, batch(records, None)).await;
}

async fn produce_batch(partition: &Partition, records: Bytes) {
    let context = ProduceContext { produce_version: 12, transactional_id: Some("txn"), verifier: None };
    let outcome = partition.produce(records, &context).await;
    assert_eq!(outcome.error, None, "{:?}", outcome.message);
    partition.log.wait_durable(outcome.durable_end_offset.unwrap()).await.unwrap();
}

fn earliest() -> ShareSettings {
    ShareSettings { auto_offset_reset: AutoOffsetReset::Earliest, ..ShareSettings::default() }
}

fn ack(first_offset: i64, last_offset: i64, types: &[u8]) -> AckBatch {
    AckBatch { first_offset, last_offset, types: types.to_vec() }
}

fn range(first_offset: i64, last_offset: i64, delivery_count: u16) -> AcquiredRange {
    AcquiredRange { first_offset, last_offset, delivery_count }
}

/// The base offsets of the batches in a fetch answer.
fn bases(fetched: &ShareFetchPartition) -> Vec<i64> {
    let records = fetched.records.clone().unwrap_or_default();
    protocol::record_batch::batches(records, usize::MAX).map(|b| b.unwrap().base_offset()).collect()
}

/// Writes 10 records in two batches, acquires them all for "a", accepts
/// 0..=4 and releases 7; leaves 5, 6, 8, 9 acquired.
async fn acquire_and_acknowledge(shard: Rc<Shard>, partition: Rc<Partition>) {
    produce(&partition, 5).await;
    produce(&partition, 5).await;
    let settings = earliest();
    let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
    let fetched = share.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
    assert_eq!(fetched.error, None);
    assert_eq!(fetched.acquired, vec![range(0, 9, 1)]);
    assert_eq!(bases(&fetched), vec![0, 5]);
    assert_eq!(fetched.high_watermark, 10);
    share
        .acknowledge("a", &[ack(0, 4, &[ack_type::ACCEPT]), ack(7, 7, &[ack_type::RELEASE])], &settings, now_ms())
        .await
        .unwrap();
    assert_eq!(share.start_offset(), 5);
}

/// After a restart: acknowledged records are never offered again; every
/// other one is, with the count of the delivery it had.
async fn check_after_restart(shard: Rc<Shard>, partition: Rc<Partition>) {
    let settings = earliest();
    let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
    assert_eq!(share.start_offset(), 5, "the acceptance of 0..=4 is durable");
    let fetched = share.acquire("b", 1 << 20, 500, &settings, now_ms()).await;
    assert_eq!(
        fetched.acquired,
        vec![range(5, 9, 2)],
        "acquired-but-unacknowledged come back Available with their count"
    );
    assert_eq!(bases(&fetched), vec![5]);
}

#[test]
fn acknowledged_records_survive_a_clean_restart_and_acquired_ones_come_back() {
    // Proves the durable share state: after acknowledge, clean close and
    // reopen (replay of the share-state log), accepted records are never
    // acquired again, while acquired-but-unacknowledged and released ones are
    // Available with their delivery count, and are acquired with count + 1.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, acquire_and_acknowledge);
    assert!(dir.path().join("t-0").join(SHARE_STATE_DIR).is_dir(), "the log lives in the partition directory");
    with_shard(dir.path(), End::Clean, check_after_restart);
}

#[test]
fn a_crash_keeps_every_answered_change() {
    // Proves kill -9 loses nothing that was answered: acquisitions and
    // acknowledgements are answered only once durable, so after a crash (no
    // close, no flush) the restart sees exactly what the clients were told.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Crash, acquire_and_acknowledge);
    with_shard(dir.path(), End::Clean, check_after_restart);
}

#[test]
fn a_torn_tail_of_the_share_state_log_is_cut_with_a_log_line_naming_the_file() {
    // Proves a share-state log whose last write was torn by a crash opens
    // with that write cut (the engine names the segment file), and the state
    // is what the writes before it stated.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Crash, |shard, partition| async move {
        acquire_and_acknowledge(shard.clone(), partition.clone()).await;
        let settings = earliest();
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        // The last write: accept 5..=6. Torn below, so they come back.
        share.acknowledge("a", &[ack(5, 6, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap();
    });
    let segment = share_state_dir(&dir.path().join("t-0")).join("00000000000000000000.log");
    let bytes = std::fs::read(&segment).unwrap();
    let mut at = 0usize;
    let mut last = 0usize;
    while let protocol::record_batch::header::HeaderParse::Complete(header) =
        protocol::record_batch::header::parse_header(&bytes[at..], at, bytes.len() - at)
    {
        last = at;
        at += header.size_bytes;
    }
    assert!(last > 0, "several writes");
    let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len((last + (at - last) / 2) as u64).unwrap();
    let logs = Captured::default();
    with_shard_logged(dir.path(), End::Clean, Some(logs.clone()), |shard, partition| async move {
        let settings = earliest();
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        assert_eq!(share.start_offset(), 5, "the accept of 5..=6 was torn away");
        let fetched = share.acquire("b", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(5, 9, 2)]);
    });
    let text = logs.text();
    assert!(text.contains("truncating torn tail"), "{text}");
    assert!(text.contains(&segment.display().to_string()), "the line names the file: {text}");
}

#[test]
fn auto_offset_reset_latest_earliest_and_by_duration() {
    // Proves a new share-partition starts at the high watermark (latest, the
    // default), the log start (earliest), or the first record at or after now
    // minus the duration (by_duration; latest when there is none), and that
    // the start chosen is durable: a restart does not choose again.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce(&partition, 3).await;
        let latest = shard.share.get_or_open(&shard, "latest", &partition, &ShareSettings::default()).await.unwrap();
        assert_eq!(latest.start_offset(), 3);
        let from_start = shard.share.get_or_open(&shard, "earliest", &partition, &earliest()).await.unwrap();
        assert_eq!(from_start.start_offset(), 0);
        let hour = ShareSettings { auto_offset_reset: AutoOffsetReset::ByDuration(3_600_000), ..Default::default() };
        let by_duration = shard.share.get_or_open(&shard, "hour", &partition, &hour).await.unwrap();
        assert_eq!(by_duration.start_offset(), 0, "every record is younger than an hour");
        glommio::timer::sleep(std::time::Duration::from_millis(30)).await;
        let recent = ShareSettings { auto_offset_reset: AutoOffsetReset::ByDuration(10), ..Default::default() };
        let none = shard.share.get_or_open(&shard, "recent", &partition, &recent).await.unwrap();
        assert_eq!(none.start_offset(), 3, "no record in the last 10 ms: latest");
        produce(&partition, 2).await;
        // The lag counts records not yet delivered to completion.
        assert_eq!(latest.offsets(IsolationLevel::ReadUncommitted).lag, 2);
        assert_eq!(from_start.offsets(IsolationLevel::ReadUncommitted).lag, 5);
    });
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let latest = shard.share.get_or_open(&shard, "latest", &partition, &ShareSettings::default()).await.unwrap();
        assert_eq!(latest.start_offset(), 3, "initialized once, not again at the new high watermark 5");
    });
}

#[test]
fn read_committed_never_acquires_aborted_records_or_markers() {
    // Proves read_committed acquisition archives the batches of an aborted
    // transaction and every control batch, acquires committed and plain
    // records, stops at the LSO while a transaction is open, and that
    // read_uncommitted acquires the aborted records but not the markers.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce_batch(&partition, batch(2, Some(0))).await; // 0..=1 aborted
        partition.write_txn_marker_durably(PRODUCER, 0, false, 0).await.unwrap(); // 2 ABORT
        produce(&partition, 1).await; // 3 plain
        produce_batch(&partition, batch(2, Some(2))).await; // 4..=5 committed
        partition.write_txn_marker_durably(PRODUCER, 0, true, 0).await.unwrap(); // 6 COMMIT
        produce_batch(&partition, batch(1, Some(4))).await; // 7 open
        let committed = ShareSettings { isolation: IsolationLevel::ReadCommitted, ..earliest() };
        let share = shard.share.get_or_open(&shard, "rc", &partition, &committed).await.unwrap();
        let fetched = share.acquire("a", 1 << 20, 500, &committed, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(3, 5, 1)]);
        assert_eq!(fetched.last_stable_offset, 7);
        assert_eq!(share.start_offset(), 3, "the aborted batch and its marker are archived");
        share.acknowledge("a", &[ack(3, 5, &[ack_type::ACCEPT])], &committed, now_ms()).await.unwrap();
        assert_eq!(share.start_offset(), 7, "past the COMMIT marker, held at the open transaction");
        let nothing = share.acquire("a", 1 << 20, 500, &committed, now_ms()).await;
        assert_eq!(nothing.acquired, vec![]);
        let uncommitted = earliest();
        let all = shard.share.get_or_open(&shard, "ru", &partition, &uncommitted).await.unwrap();
        let fetched = all.acquire("a", 1 << 20, 500, &uncommitted, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(0, 1, 1), range(3, 5, 1), range(7, 7, 1)]);
    });
}

#[test]
fn lock_expiry_releases_records_and_wakes_waiters() {
    // Proves the sweep (with an injected clock) releases lapsed locks, waking
    // a waiting fetch, whose acquisition then counts a second delivery; that
    // new records in the log wake a waiter too; and that an acknowledgement
    // after the lock lapsed is INVALID_RECORD_STATE.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce(&partition, 2).await;
        let settings = ShareSettings { record_lock_duration_ms: 1000, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        let now = now_ms();
        assert_eq!(share.acquire("a", 1 << 20, 500, &settings, now).await.acquired, vec![range(0, 1, 1)]);
        let waiter = {
            let share = share.clone();
            glommio::spawn_local(async move { share.wait_for_acquirable(&settings).await })
        };
        futures_lite::future::yield_now().await;
        shard.share.sweep(now + 999).await;
        assert_eq!(share.offsets(IsolationLevel::ReadUncommitted).acquired_records, 2, "not lapsed yet");
        shard.share.sweep(now + 1000).await;
        waiter.await;
        let again = share.acquire("b", 1 << 20, 500, &settings, now + 1001).await;
        assert_eq!(again.acquired, vec![range(0, 1, 2)]);
        let late = share.acknowledge("b", &[ack(0, 1, &[ack_type::ACCEPT])], &settings, now + 2001).await.unwrap_err();
        assert_eq!(late.error, ErrorCode::InvalidRecordState);
        // Available again (the lock lapsed): acquire it, then wait for new records.
        share.acquire("b", 1 << 20, 500, &settings, now + 2002).await;
        let waiter = {
            let share = share.clone();
            glommio::spawn_local(async move { share.wait_for_acquirable(&settings).await })
        };
        produce(&partition, 1).await;
        waiter.await;
        assert_eq!(share.acquire("b", 1 << 20, 500, &settings, now + 2003).await.acquired, vec![range(2, 2, 1)]);
    });
}

#[test]
fn release_member_and_the_delivery_limit() {
    // Proves a member's release makes its records Available (another member
    // then acquires them) and that a record released at delivery.count.limit
    // is archived: never offered again, even after a restart.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Crash, |shard, partition| async move {
        produce(&partition, 1).await;
        produce(&partition, 1).await;
        let settings = ShareSettings { delivery_count_limit: 2, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        assert_eq!(share.acquire("a", 1 << 20, 1, &settings, now_ms()).await.acquired, vec![range(0, 0, 1)]);
        share.release_member("a").await.unwrap();
        assert_eq!(share.acquire("b", 1 << 20, 1, &settings, now_ms()).await.acquired, vec![range(0, 0, 2)]);
        share.release_member("b").await.unwrap();
        assert_eq!(share.start_offset(), 1, "archived at the limit");
        assert_eq!(share.acquire("c", 1 << 20, 10, &settings, now_ms()).await.acquired, vec![range(1, 1, 1)]);
    });
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let settings = ShareSettings { delivery_count_limit: 2, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        assert_eq!(share.start_offset(), 1);
        assert_eq!(share.acquire("d", 1 << 20, 10, &settings, now_ms()).await.acquired, vec![range(1, 1, 2)]);
    });
}

#[test]
fn alter_and_delete_reset_the_state_durably() {
    // Proves alter_start_offset starts again at the offset with a new state
    // epoch, and delete removes the state: after a restart the altered start
    // holds and the deleted group initializes again by auto.offset.reset;
    // delete_group finds the group's share-partitions on this shard.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce(&partition, 10).await;
        let settings = earliest();
        let altered = shard.share.get_or_open(&shard, "altered", &partition, &settings).await.unwrap();
        altered.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        altered.alter_start_offset(7).await.unwrap();
        assert_eq!((altered.start_offset(), altered.state_epoch()), (7, 1));
        assert_eq!(altered.offsets(IsolationLevel::ReadUncommitted).acquired_records, 0, "locks forgotten");
        let deleted = shard.share.get_or_open(&shard, "deleted", &partition, &settings).await.unwrap();
        deleted.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        deleted.acknowledge("a", &[ack(0, 9, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap();
        assert_eq!(shard.share.delete_group(&shard, "deleted").await.unwrap(), 1);
        assert!(shard.share.get(&shard, "deleted", &partition).await.unwrap().is_none());
        let stale = deleted.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(stale.error, Some(ErrorCode::UnknownTopicOrPartition), "a deleted handle is dead");
    });
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let altered = shard.share.get(&shard, "altered", &partition).await.unwrap().unwrap();
        assert_eq!((altered.start_offset(), altered.state_epoch()), (7, 1));
        let settings = earliest();
        let fetched = altered.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(7, 9, 1)]);
        assert!(shard.share.get(&shard, "deleted", &partition).await.unwrap().is_none());
        let again = shard.share.get_or_open(&shard, "deleted", &partition, &settings).await.unwrap();
        assert_eq!(again.start_offset(), 0, "initialized again from the log start");
    });
}

#[test]
fn compaction_rewrites_the_state_and_loses_nothing() {
    // Proves that with a small segment size the share-state log compacts
    // (its log start moves past the history) and a restart replays the
    // snapshot to the same state as before.
    let dir = tempfile::tempdir().unwrap();
    let before = with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let registry = SharePartitions::new(8 << 10);
        for _ in 0..300 {
            produce(&partition, 1).await;
        }
        let settings = earliest();
        let share = registry.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        for offset in 0..300 {
            let fetched = share.acquire("a", 1 << 20, 1, &settings, now_ms()).await;
            assert_eq!(fetched.acquired, vec![range(offset, offset, 1)]);
            // Every third record stays acquired; the others are accepted.
            if offset % 3 != 0 {
                share.acknowledge("a", &[ack(offset, offset, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap();
            }
        }
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        let state = share.state().snapshot_ranges();
        registry.close().await;
        (state, share.start_offset())
    });
    let log_dir = share_state_dir(&dir.path().join("t-0"));
    assert!(log_dir.join("log_start_offset").exists(), "compaction moved the log start");
    let after = with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let registry = SharePartitions::new(8 << 10);
        let share = registry.get(&shard, "g", &partition).await.unwrap().unwrap();
        let state = (share.state().snapshot_ranges(), share.start_offset());
        registry.close().await;
        state
    });
    assert_eq!(after, before);
}

#[test]
fn the_in_flight_bound_holds_back_new_records() {
    // Proves group.share.partition.max.record.locks: no more than that many
    // records lie between the start and end offsets; once the first ones are
    // acknowledged, more are acquired.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce(&partition, 4).await;
        produce(&partition, 4).await;
        let settings = ShareSettings { partition_max_record_locks: 6, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        let fetched = share.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(0, 5, 1)]);
        assert_eq!(bases(&fetched), vec![0, 4], "whole batches; the consumer keeps the acquired offsets");
        assert!(share.acquire("b", 1 << 20, 500, &settings, now_ms()).await.acquired.is_empty());
        share.acknowledge("a", &[ack(0, 1, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap();
        let more = share.acquire("b", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(more.acquired, vec![range(6, 7, 1)]);
        assert_eq!(bases(&more), vec![4]);
    });
}

#[test]
fn records_deleted_below_the_log_start_leave_the_window() {
    // Proves DeleteRecords (or retention) moving the log start past in-flight
    // records takes them out of the share-partition, acquired or not: the
    // start offset follows, their acknowledgement is INVALID_RECORD_STATE,
    // and acquisition goes on from the new start.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        produce(&partition, 3).await;
        produce(&partition, 3).await;
        let settings = earliest();
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        assert_eq!(share.acquire("a", 1 << 20, 1, &settings, now_ms()).await.acquired, vec![range(0, 2, 1)]);
        partition.log.delete_records_before(4).await.unwrap();
        assert_eq!(share.start_offset(), 4);
        let gone = share.acknowledge("a", &[ack(0, 2, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap_err();
        assert_eq!(gone.error, ErrorCode::InvalidRecordState);
        let fetched = share.acquire("a", 1 << 20, 500, &settings, now_ms()).await;
        assert_eq!(fetched.acquired, vec![range(4, 5, 1)], "3 lies below the log start too");
    });
}

#[test]
fn acquisitions_take_batches_from_one_read_and_each_record_once() {
    // Proves the read-ahead: members taking a few records each, one after
    // another, get every record exactly once and in log order (whole
    // batches, from kept reads and prefetches), while the share-partition
    // reads the log far less often than once per acquisition; the kept
    // read is dropped once idle; a record released back below the end is
    // acquired again.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let value = vec![b'v'; 1000];
        for _ in 0..400 {
            let mut builder = RecordBatchBuilder::new(Codec::None);
            for _ in 0..5 {
                builder.push(now_ms(), None, Some(&value), &[]);
            }
            produce_batch(&partition, builder.build().unwrap()).await;
        }
        let settings = ShareSettings { partition_max_record_locks: 10_000, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        let reads_before = partition.log.stats().cache_reads + partition.log.stats().disk_reads;
        let mut next = 0;
        let mut acquisitions = 0;
        while next < 2000 {
            let member = ["a", "b", "c"][acquisitions % 3];
            let fetched = share.acquire(member, 1 << 20, 10, &settings, now_ms()).await;
            acquisitions += 1;
            assert_eq!(fetched.error, None);
            assert_eq!(fetched.acquired.first().map(|r| r.first_offset), Some(next), "in log order, none skipped");
            let last = fetched.acquired.last().unwrap().last_offset;
            assert_eq!(fetched.acquired, vec![range(next, last, 1)]);
            assert_eq!(bases(&fetched).first(), Some(&next), "the answer starts at the first acquired batch");
            share.acknowledge(member, &[ack(next, last, &[ack_type::ACCEPT])], &settings, now_ms()).await.unwrap();
            next = last + 1;
        }
        let reads = partition.log.stats().cache_reads + partition.log.stats().disk_reads - reads_before;
        assert!(reads * 2 <= acquisitions as u64, "{reads} log reads for {acquisitions} acquisitions");
        assert!(share.read_ahead_bytes() > 0, "the last read is kept");
        share.drop_idle_read_ahead(std::time::Duration::from_secs(3600));
        assert!(share.read_ahead_bytes() > 0, "kept while in use");
        share.drop_idle_read_ahead(std::time::Duration::ZERO);
        assert_eq!(share.read_ahead_bytes(), 0, "an idle share-partition holds no read");
        assert!(share.acquire("a", 1 << 20, 10, &settings, now_ms()).await.acquired.is_empty(), "nothing twice");

        produce(&partition, 5).await; // 2000..=2004
        produce(&partition, 5).await; // 2005..=2009
        let first = share.acquire("a", 1 << 20, 10, &settings, now_ms()).await;
        assert_eq!(first.acquired, vec![range(2000, 2009, 1)]);
        share.acknowledge("a", &[ack(2002, 2002, &[ack_type::RELEASE])], &settings, now_ms()).await.unwrap();
        let again = share.acquire("b", 1 << 20, 10, &settings, now_ms()).await;
        assert_eq!(again.acquired, vec![range(2002, 2002, 2)]);
        assert_eq!(bases(&again), vec![2000], "the batch holding the released record");
    });
}

#[test]
fn concurrent_acquisitions_wait_for_one_read_and_take_different_records() {
    // Proves that acquisitions arriving while another reads the log wait
    // for that read instead of reading the same offset again, and then
    // take the records after the ones it took: no record twice, none
    // skipped, and one log read for all of them.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        for _ in 0..6 {
            produce(&partition, 5).await;
        }
        let settings = earliest();
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        let reads_before = partition.log.stats().cache_reads + partition.log.stats().disk_reads;
        let (a, b, c) = futures::join!(
            share.acquire("a", 1 << 20, 10, &settings, now_ms()),
            share.acquire("b", 1 << 20, 10, &settings, now_ms()),
            share.acquire("c", 1 << 20, 10, &settings, now_ms()),
        );
        assert_eq!(a.acquired, vec![range(0, 9, 1)]);
        assert_eq!(b.acquired, vec![range(10, 19, 1)]);
        assert_eq!(c.acquired, vec![range(20, 29, 1)]);
        let reads = partition.log.stats().cache_reads + partition.log.stats().disk_reads - reads_before;
        assert_eq!(reads, 1, "the waiting acquisitions took from the first one's read");
    });
}

#[test]
fn a_redelivery_below_the_read_ahead_leaves_it_in_place() {
    // Proves that acquiring a released record, below the kept read, reads
    // that record's batch on the side: the redelivery gets it with its
    // delivery counted, and the kept read stays where it was for the next
    // acquisition at the window's end, which continues in order.
    let dir = tempfile::tempdir().unwrap();
    with_shard(dir.path(), End::Clean, |shard, partition| async move {
        let value = vec![b'v'; 1000];
        for _ in 0..400 {
            let mut builder = RecordBatchBuilder::new(Codec::None);
            for _ in 0..5 {
                builder.push(now_ms(), None, Some(&value), &[]);
            }
            produce_batch(&partition, builder.build().unwrap()).await;
        }
        let settings = ShareSettings { partition_max_record_locks: 10_000, ..earliest() };
        let share = shard.share.get_or_open(&shard, "g", &partition, &settings).await.unwrap();
        let held = share.acquire("a", 1 << 20, 10, &settings, now_ms()).await;
        assert_eq!(held.acquired, vec![range(0, 9, 1)]);
        // Past the first read (1 MiB, about 1000 records) so that the kept
        // read starts above offset 5.
        let mut next = 10;
        while share.read_ahead_start().is_none_or(|start| start <= 5) {
            let fetched = share.acquire("b", 1 << 20, 10, &settings, now_ms()).await;
            next = fetched.acquired.last().unwrap().last_offset + 1;
        }
        let kept_at = share.read_ahead_start();
        share.acknowledge("a", &[ack(5, 5, &[ack_type::RELEASE])], &settings, now_ms()).await.unwrap();
        let again = share.acquire("c", 1 << 20, 10, &settings, now_ms()).await;
        assert_eq!(again.acquired, vec![range(5, 5, 2)]);
        assert_eq!(bases(&again), vec![5]);
        assert_eq!(share.read_ahead_start(), kept_at, "the kept read stayed");
        let onward = share.acquire("c", 1 << 20, 10, &settings, now_ms()).await;
        assert_eq!(onward.acquired.first().map(|r| r.first_offset), Some(next));
    });
}
