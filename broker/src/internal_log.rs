//! A coordinator's durable state: an append-only log of payloads (the
//! owner's flatbuffers record batches) on the engine's [`PartitionLog`], in
//! `<data_dir>/<name>/<shard>/`, read whole when the shard starts and
//! compacted by writing the owner's live state again as a snapshot.
//!
//! Each payload is the value of the only record of one Kafka v2 batch, so
//! the engine's CRC32C, torn-tail recovery, O_DIRECT writes and group commit
//! (concurrent appends share one fdatasync) all apply, and a payload
//! survives a crash whole or not at all. Consumer groups
//! (`__consumer_offsets`) and transaction coordinators
//! (`__transaction_state`) use it, and so do share-partitions
//! (`<partition dir>/share-state/`, see `crate::share::log`).
//!
//! Invariants:
//! - payloads are placed (given their offset) one at a time, in the order
//!   [`InternalLog::append`] was called (the placement semaphore is FIFO),
//!   and each is encoded only when its turn has come;
//! - owners learn that their appends are durable in log order, one at a
//!   time, so effects applied then are applied in log order too;
//! - a snapshot placed at offset S states everything placed before S:
//!   compaction holds the placement turn and waits until every earlier
//!   append was applied by its owner before it asks the owner for its
//!   state, and whatever is placed after S was encoded after that;
//! - the log start moves to S only once the whole snapshot is durable, so a
//!   crash at any point replays either the old records, or the old records
//!   and part of the snapshot (which only restates them), or the snapshot
//!   and what followed it.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use engine::{EngineError, FlushPolicy, LogConfig, PartitionLog, ShardResources};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::{Semaphore, StaticPermit};
use protocol::compression::Codec;
use protocol::record_batch::{self, RecordBatchBuilder};

/// Placements that may wait for durability and their owner at once; the
/// next append waits for one of them (backpressure, never growth).
pub const UNAPPLIED_MAX: u64 = 4096;
/// Largest payload a snapshot should be cut into.
pub const SNAPSHOT_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// What one read of the replay asks the engine for.
const REPLAY_READ_BYTES: usize = 4 << 20;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What the owner does once its append is durable (`Ok`) or can never be
/// (`Err` with the reason): apply the effect, answer the client.
pub type OnDurable = Box<dyn FnOnce(std::result::Result<(), String>)>;

/// A placed append waiting for durability, in the applier's queue.
struct Unapplied {
    log_offset: i64,
    on_durable: OnDurable,
    _permit: StaticPermit,
}

pub struct InternalLog {
    log: PartitionLog,
    placing: Semaphore,
    unapplied: Rc<Semaphore>,
    /// The applier's queue; `None` once closed.
    to_apply: std::cell::RefCell<Option<LocalSender<Unapplied>>>,
    /// Compaction starts once this many bytes were appended since the last
    /// snapshot, or as many as the snapshot held, whichever is more.
    compaction_bytes_min: u64,
    bytes_since_snapshot: Cell<u64>,
    snapshot_bytes: Cell<u64>,
    compacting: Cell<bool>,
}

/// The engine settings of an internal log: segments of `segment_bytes`,
/// nothing ever deleted by age or size (only compaction moves the start),
/// every append flushed (group commit).
pub fn log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes_max: segment_bytes,
        segment_age_max: None,
        retention_bytes_max: None,
        retention_age_max: None,
        flush_policy: FlushPolicy::Always,
        preallocate_bytes: segment_bytes.min(16 << 20),
        ..LogConfig::default()
    }
}

/// The directory of shard `shard`'s log named `name` (`__consumer_offsets`).
pub fn log_dir(data_dir: &Path, name: &str, shard: usize) -> PathBuf {
    data_dir.join(name).join(shard.to_string())
}

impl InternalLog {
    /// Opens (creating if absent) the log in `dir` and returns every payload
    /// from its start, in order, with its offset. A payload that fails its batch's CRC32C in
    /// a segment recovery trusted is corruption: the error names the
    /// directory and offset. Must run inside the shard's executor: it starts
    /// the task that hands durable appends back to their owner.
    pub async fn open(
        dir: PathBuf,
        segment_bytes: u64,
        resources: Rc<ShardResources>,
    ) -> Result<(InternalLog, Vec<(i64, Bytes)>)> {
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io { path: dir.clone(), source })?;
        let log = PartitionLog::open(dir, log_config(segment_bytes), resources).await?;
        let (payloads, bytes) = replay(&log).await?;
        let (to_apply, applier_queue) = local_channel::new_unbounded();
        glommio::spawn_local(apply_in_order(log.clone(), applier_queue)).detach();
        let internal = InternalLog {
            log,
            placing: Semaphore::new(1),
            unapplied: Rc::new(Semaphore::new(UNAPPLIED_MAX)),
            to_apply: std::cell::RefCell::new(Some(to_apply)),
            compaction_bytes_min: segment_bytes,
            bytes_since_snapshot: Cell::new(bytes),
            snapshot_bytes: Cell::new(0),
            compacting: Cell::new(false),
        };
        Ok((internal, payloads))
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// Appends the payload `encode` returns, called once this append's turn
    /// has come (after every earlier append is placed), so that a payload
    /// stating the owner's memory states it as of its place in the log.
    /// Returns the payload's offset once placed; `on_durable` runs later,
    /// once it is durable, after the `on_durable` of every earlier append.
    pub async fn append(&self, encode: impl FnOnce() -> Vec<u8>, on_durable: OnDurable) -> Result<i64> {
        let _turn = self.placing.acquire_permit(1).await.map_err(|_| self.closed())?;
        let permit = self.unapplied.acquire_static_permit(1).await.map_err(|_| self.closed())?;
        let batch = batch_of(&encode());
        let bytes = batch.len() as u64;
        let log_offset = self.log.append(batch).await?.base_offset;
        self.bytes_since_snapshot.set(self.bytes_since_snapshot.get() + bytes);
        let unapplied = Unapplied { log_offset, on_durable, _permit: permit };
        let queue = self.to_apply.borrow();
        match queue.as_ref().map(|queue| queue.try_send(unapplied)) {
            Some(Ok(())) => {}
            // The applier is gone only when the log is closing.
            Some(Err(glommio::GlommioError::Closed(glommio::ResourceType::Channel(unapplied)))) => {
                (unapplied.on_durable)(Err(self.closed().to_string()))
            }
            Some(Err(other)) => unreachable!("an unbounded channel refused an item: {other}"),
            None => unreachable!("appends end when the placement semaphore closes, before the queue does"),
        }
        Ok(log_offset)
    }

    /// Whether enough was appended since the last snapshot to rewrite it.
    pub fn wants_compaction(&self) -> bool {
        !self.compacting.get()
            && self.bytes_since_snapshot.get() >= self.compaction_bytes_min.max(self.snapshot_bytes.get())
    }

    /// Writes the owner's live state (`snapshot()`, called once every
    /// earlier append was applied) as the new start of the log, and drops
    /// what lies before it. Appends wait only while the snapshot is placed.
    /// Returns the snapshot's bytes; a compaction already running makes
    /// this return 0 at once.
    pub async fn compact(&self, snapshot: impl FnOnce() -> Vec<Vec<u8>>) -> Result<u64> {
        if self.compacting.replace(true) {
            return Ok(0);
        }
        let result = self.rewrite(snapshot).await;
        self.compacting.set(false);
        result
    }

    async fn rewrite(&self, snapshot: impl FnOnce() -> Vec<Vec<u8>>) -> Result<u64> {
        let (start, end, bytes) = {
            let _turn = self.placing.acquire_permit(1).await.map_err(|_| self.closed())?;
            let _quiet = self.unapplied.acquire_permit(UNAPPLIED_MAX).await.map_err(|_| self.closed())?;
            let start = self.log.log_end_offset();
            let mut bytes = 0u64;
            for payload in snapshot() {
                let batch = batch_of(&payload);
                bytes += batch.len() as u64;
                self.log.append(batch).await?;
            }
            self.bytes_since_snapshot.set(0);
            (start, self.log.log_end_offset(), bytes)
        };
        self.log.wait_durable(end).await?;
        self.log.delete_records_before(start).await?;
        self.snapshot_bytes.set(bytes);
        tracing::info!(dir = %self.dir().display(), log_start_offset = start, snapshot_bytes = bytes, "compacted internal log");
        Ok(bytes)
    }

    /// Flushes everything and closes the log (clean shutdown marker); the
    /// appends still waiting are told their outcome first.
    pub async fn close(&self) -> Result<()> {
        self.placing.close();
        let flushed = self.log.flush().await;
        // Every placed append is durable now: wait until all were applied.
        let _ = self.unapplied.acquire_permit(UNAPPLIED_MAX).await;
        self.unapplied.close();
        self.to_apply.borrow_mut().take();
        flushed?;
        self.log.close().await
    }

    fn closed(&self) -> EngineError {
        EngineError::Closed { path: self.dir().to_path_buf() }
    }
}

/// Hands each placed append back to its owner in log order, once durable.
async fn apply_in_order(log: PartitionLog, queue: LocalReceiver<Unapplied>) {
    while let Some(unapplied) = queue.recv().await {
        let outcome = log.wait_durable(unapplied.log_offset + 1).await.map_err(|err| err.to_string());
        (unapplied.on_durable)(outcome);
    }
}

/// One v2 batch whose only record's value is `payload`.
fn batch_of(payload: &[u8]) -> Bytes {
    let mut builder = RecordBatchBuilder::new(Codec::None);
    builder.push(crate::partition::now_ms(), None, Some(payload), &[]);
    builder.build().expect("an uncompressed batch always builds")
}

/// Every payload from the log start to its end with its offset, and their
/// batches' bytes.
async fn replay(log: &PartitionLog) -> Result<(Vec<(i64, Bytes)>, u64)> {
    let mut payloads = Vec::new();
    let mut bytes = 0u64;
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let read = log.read(offset, REPLAY_READ_BYTES, None).await?;
        if read.records.is_empty() {
            break;
        }
        for run in read.records {
            for batch in record_batch::batches(run, usize::MAX) {
                let batch = batch.map_err(|err| corrupt(log, offset, &err.to_string()))?;
                batch.verify_crc().map_err(|err| corrupt(log, batch.base_offset(), &err.to_string()))?;
                bytes += batch.bytes().len() as u64;
                let next = batch.last_offset() + 1;
                // The read starts at the batch holding `offset`; a batch
                // before the log start is not part of the state.
                if next > offset {
                    for record in batch.records(usize::MAX).map_err(|err| corrupt(log, offset, &err.to_string()))? {
                        let record = record.map_err(|err| corrupt(log, batch.base_offset(), &err.to_string()))?;
                        let value =
                            record.value.ok_or_else(|| corrupt(log, batch.base_offset(), "record without value"))?;
                        payloads.push((batch.base_offset(), value));
                    }
                    offset = next;
                }
            }
        }
    }
    Ok((payloads, bytes))
}

fn corrupt(log: &PartitionLog, offset: i64, reason: &str) -> EngineError {
    EngineError::Corrupt { path: log.dir().to_path_buf(), position: 0, offset, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
        engine::memlock::ensure_memlock(4 << 20).unwrap();
        glommio::LocalExecutorBuilder::default().spawn(move || async move { test().await }).unwrap().join().unwrap();
    }

    fn resources() -> Rc<ShardResources> {
        ShardResources::new(engine::ShardLimits::default()).unwrap()
    }

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Appends `payload` and waits until it is durable.
    async fn append_durably(log: &InternalLog, payload: Vec<u8>) {
        let (done, durable) = futures::channel::oneshot::channel();
        log.append(move || payload, Box::new(move |outcome| done.send(outcome).unwrap())).await.unwrap();
        durable.await.unwrap().unwrap();
    }

    fn ignore_outcome() -> OnDurable {
        Box::new(|_| {})
    }

    #[test]
    fn payloads_come_back_in_order_after_reopen() {
        // Proves appends are durable once reported so and replay returns
        // them in the order they were appended.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, found) = InternalLog::open(path.clone(), 1 << 20, resources()).await.unwrap();
            assert!(found.is_empty());
            for i in 0..10u8 {
                append_durably(&log, vec![i; 100]).await;
            }
            log.close().await.unwrap();
            let (_log, found) = InternalLog::open(path, 1 << 20, resources()).await.unwrap();
            let firsts: Vec<u8> = found.iter().map(|(_, payload)| payload[0]).collect();
            assert_eq!(firsts, (0..10).collect::<Vec<u8>>());
        });
    }

    #[test]
    fn owners_hear_of_durability_in_log_order() {
        // Proves `on_durable` runs for every append, in the order they were
        // placed, even when many share one fdatasync.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, _) = InternalLog::open(path, 1 << 20, resources()).await.unwrap();
            let heard = Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut offsets = Vec::new();
            for i in 0..50u8 {
                let heard = heard.clone();
                let on_durable = Box::new(move |outcome: std::result::Result<(), String>| {
                    outcome.unwrap();
                    heard.borrow_mut().push(i);
                });
                offsets.push(log.append(move || vec![i; 10], on_durable).await.unwrap());
            }
            assert!(offsets.windows(2).all(|pair| pair[0] < pair[1]), "{offsets:?}");
            log.close().await.unwrap();
            assert_eq!(*heard.borrow(), (0..50).collect::<Vec<u8>>());
        });
    }

    #[test]
    fn compaction_replaces_the_history_with_the_snapshot() {
        // Proves a snapshot becomes the log's start: after reopening only
        // the snapshot and what was appended after it come back, and the
        // log asks for compaction only once enough was appended.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, _) = InternalLog::open(path.clone(), 8192, resources()).await.unwrap();
            assert!(!log.wants_compaction());
            for i in 0..100u8 {
                log.append(move || vec![i; 200], ignore_outcome()).await.unwrap();
            }
            assert!(log.wants_compaction(), "20 KB appended over an 8 KiB threshold");
            let bytes = log.compact(|| vec![b"state-a".to_vec(), b"state-b".to_vec()]).await.unwrap();
            assert!(bytes > 0);
            assert!(!log.wants_compaction());
            append_durably(&log, b"after".to_vec()).await;
            log.close().await.unwrap();
            let (_log, found) = InternalLog::open(path, 8192, resources()).await.unwrap();
            let found: Vec<&[u8]> = found.iter().map(|(_, p)| p.as_ref()).collect();
            assert_eq!(found, vec![&b"state-a"[..], b"state-b", b"after"]);
        });
    }

    #[test]
    fn the_snapshot_is_taken_after_earlier_appends_were_applied() {
        // Proves compaction asks for the owner's state only after every
        // earlier append was reported durable (and so applied by its
        // owner): the snapshot always contains what was placed before it.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, _) = InternalLog::open(path, 8192, resources()).await.unwrap();
            let applied = Rc::new(Cell::new(0));
            for _ in 0..20 {
                let applied = applied.clone();
                let on_durable = Box::new(move |_| applied.set(applied.get() + 1));
                log.append(|| vec![1; 300], on_durable).await.unwrap();
            }
            let seen = applied.clone();
            log.compact(move || {
                assert_eq!(seen.get(), 20, "the snapshot was taken before the owner applied every append");
                vec![b"with-every-append".to_vec()]
            })
            .await
            .unwrap();
        });
    }
}
