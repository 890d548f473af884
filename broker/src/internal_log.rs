//! A coordinator's durable state: an append-only log of payloads (the
//! owner's flatbuffers record batches) on the engine's [`PartitionLog`], in
//! `<data_dir>/<name>/<shard>/`, read whole when the shard starts and
//! compacted by writing the owner's live state again as a snapshot.
//!
//! Each payload is the value of the only record of one Kafka v2 batch, so
//! the engine's CRC32C, torn-tail recovery, O_DIRECT writes and group commit
//! (concurrent appends share one fdatasync) all apply, and a payload
//! survives a crash whole or not at all. Consumer group offsets use it now;
//! transaction and share-group state are meant to.
//!
//! Invariants:
//! - payloads are placed (given their offset) one at a time, in the order
//!   [`InternalLog::append`] was called: the placement semaphore is FIFO;
//! - a snapshot placed at offset S states everything placed before S:
//!   compaction holds the placement turn and waits until every earlier
//!   placement was applied by its owner (its [`Placed`] dropped) before it
//!   asks the owner for its state, and whatever is placed after S was
//!   encoded after that state was taken;
//! - the log start moves to S only once the whole snapshot is durable, so a
//!   crash at any point replays either the old records, or the old records
//!   and part of the snapshot (which only restates them), or the snapshot
//!   and what followed it.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use engine::{EngineError, FlushPolicy, LogConfig, PartitionLog, ShardResources};
use glommio::sync::{Semaphore, StaticPermit};
use protocol::compression::Codec;
use protocol::record_batch::{self, RecordBatchBuilder};

/// Placements that may wait for durability and their owner at once; the
/// next append waits for one of them (backpressure, never growth).
pub const UNAPPLIED_MAX: u64 = 4096;
/// Largest payload a snapshot is cut into.
pub const SNAPSHOT_PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// What one read of the replay asks the engine for.
const REPLAY_READ_BYTES: usize = 4 << 20;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// A placed append: it has its offset. The owner applies the payload's
/// effect to memory (after [`InternalLog::wait_durable`] when the effect
/// must be durable first) and then drops this, which lets compaction run.
pub struct Placed {
    pub log_offset: i64,
    _unapplied: StaticPermit,
}

pub struct InternalLog {
    log: PartitionLog,
    placing: Semaphore,
    unapplied: Rc<Semaphore>,
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
    /// from its start, in order. A payload that fails its batch's CRC32C in
    /// a segment recovery trusted is corruption: the error names the
    /// directory and offset.
    pub async fn open(
        dir: PathBuf,
        segment_bytes: u64,
        resources: Rc<ShardResources>,
    ) -> Result<(InternalLog, Vec<Bytes>)> {
        std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io { path: dir.clone(), source })?;
        let log = PartitionLog::open(dir, log_config(segment_bytes), resources).await?;
        let (payloads, bytes) = replay(&log).await?;
        let internal = InternalLog {
            log,
            placing: Semaphore::new(1),
            unapplied: Rc::new(Semaphore::new(UNAPPLIED_MAX)),
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

    /// Places `payload` after every earlier append. Returns once it has its
    /// offset; durability is [`InternalLog::wait_durable`].
    pub async fn append(&self, payload: &[u8]) -> Result<Placed> {
        let _turn = self.placing.acquire_permit(1).await.map_err(|_| self.closed())?;
        let unapplied = self.unapplied.acquire_static_permit(1).await.map_err(|_| self.closed())?;
        let batch = batch_of(payload);
        let bytes = batch.len() as u64;
        let info = self.log.append(batch).await?;
        self.bytes_since_snapshot.set(self.bytes_since_snapshot.get() + bytes);
        Ok(Placed { log_offset: info.base_offset, _unapplied: unapplied })
    }

    /// Waits until `placed` is covered by an fdatasync.
    pub async fn wait_durable(&self, placed: &Placed) -> Result<()> {
        self.log.wait_durable(placed.log_offset + 1).await
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

    /// Flushes everything and closes the log (clean shutdown marker).
    pub async fn close(&self) -> Result<()> {
        self.placing.close();
        self.unapplied.close();
        self.log.close().await
    }

    fn closed(&self) -> EngineError {
        EngineError::Closed { path: self.dir().to_path_buf() }
    }
}

/// One v2 batch whose only record's value is `payload`.
fn batch_of(payload: &[u8]) -> Bytes {
    let mut builder = RecordBatchBuilder::new(Codec::None);
    builder.push(crate::partition::now_ms(), None, Some(payload), &[]);
    builder.build().expect("an uncompressed batch always builds")
}

/// Every payload from the log start to its end, and their batches' bytes.
async fn replay(log: &PartitionLog) -> Result<(Vec<Bytes>, u64)> {
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
                        payloads.push(value);
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

    #[test]
    fn payloads_come_back_in_order_after_reopen() {
        // Proves appends are durable once waited for and replay returns them
        // in the order they were appended.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, found) = InternalLog::open(path.clone(), 1 << 20, resources()).await.unwrap();
            assert!(found.is_empty());
            for i in 0..10u8 {
                let placed = log.append(&[i; 100]).await.unwrap();
                log.wait_durable(&placed).await.unwrap();
            }
            log.close().await.unwrap();
            let (_log, found) = InternalLog::open(path, 1 << 20, resources()).await.unwrap();
            let firsts: Vec<u8> = found.iter().map(|payload| payload[0]).collect();
            assert_eq!(firsts, (0..10).collect::<Vec<u8>>());
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
                let _placed = log.append(&[i; 200]).await.unwrap();
            }
            assert!(log.wants_compaction(), "20 KB appended over an 8 KiB threshold");
            let bytes = log.compact(|| vec![b"state-a".to_vec(), b"state-b".to_vec()]).await.unwrap();
            assert!(bytes > 0);
            assert!(!log.wants_compaction());
            let placed = log.append(b"after").await.unwrap();
            log.wait_durable(&placed).await.unwrap();
            drop(placed);
            log.close().await.unwrap();
            let (_log, found) = InternalLog::open(path, 8192, resources()).await.unwrap();
            let found: Vec<&[u8]> = found.iter().map(|p| p.as_ref()).collect();
            assert_eq!(found, vec![&b"state-a"[..], b"state-b", b"after"]);
        });
    }

    #[test]
    fn compaction_waits_for_placed_appends_to_be_applied() {
        // Proves the snapshot is taken only after every placed append was
        // applied by its owner (its ticket dropped), so the snapshot always
        // contains what was placed before it.
        let dir = temp_dir();
        let path = dir.path().join("log");
        run(move || async move {
            let (log, _) = InternalLog::open(path, 8192, resources()).await.unwrap();
            let log = Rc::new(log);
            let applied = Rc::new(Cell::new(false));
            let placed = log.append(&[1; 5000]).await.unwrap();
            let compactor = {
                let (log, applied) = (log.clone(), applied.clone());
                glommio::spawn_local(async move {
                    log.compact(|| {
                        assert!(applied.get(), "the snapshot was taken before the owner applied the append");
                        vec![b"with-the-append".to_vec()]
                    })
                    .await
                    .unwrap();
                })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            log.wait_durable(&placed).await.unwrap();
            applied.set(true);
            drop(placed);
            compactor.await;
        });
    }
}
