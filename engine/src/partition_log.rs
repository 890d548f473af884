//! A partition log: a sequence of segments owned by one shard, with an
//! appender that coalesces batches into large O_DIRECT writes, a flusher
//! task that writes and fsyncs them (group commit), a tail cache that serves
//! recent batches from memory, and recovery, retention and truncation.
//!
//! Offsets, in order: `log_start_offset <= durable_offset <= written_offset
//! <= next_offset`. An append gets its offsets as soon as its bytes are in a
//! write buffer (`next_offset` advances); the flusher advances
//! `written_offset` when the writes complete and `durable_offset` when an
//! fdatasync covers them. Every batch at or above `written_offset` is in the
//! tail cache, so reads never touch bytes that are not on disk yet.
//!
//! The log is single-threaded (one glommio executor owns it); `&self`
//! methods borrow the state only between awaits.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::io::DmaBuffer;

use crate::batch::{self, BatchHeader, HeaderParse};
use crate::budget::{ShardResources, TailCache};
use crate::config::{FlushPolicy, LogConfig};
use crate::error::{BatchError, EngineError, Result};
use crate::notify::Notify;
use crate::segment::{self, ScanStop, Segment};
use crate::storage_file::{self, IoMode, SegmentFile};
use crate::BLOCK_BYTES;

/// Name of the clean-shutdown marker in a partition directory.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean_shutdown";
const CLEAN_SHUTDOWN_MAGIC: [u8; 4] = *b"SXCS";
const CLEAN_SHUTDOWN_VERSION: u16 = 1;
/// Name of the file holding a log start offset moved by
/// [`PartitionLog::delete_records_before`] (Kafka's DeleteRecords). Absent
/// in directories where no records were ever deleted that way: the start is
/// then the first segment's base offset, as before this file existed.
pub const LOG_START_OFFSET_FILE: &str = "log_start_offset";
const LOG_START_OFFSET_MAGIC: [u8; 4] = *b"SXLS";
const LOG_START_OFFSET_VERSION: u16 = 1;
/// The first preallocation of a segment; each later one doubles the file,
/// up to `LogConfig::preallocate_bytes` per step.
const PREALLOCATE_FIRST_BYTES: u64 = 4 << 20;
/// Smallest chunk a write buffer starts with; chunks double up to
/// `ShardLimits::write_chunk_bytes_max` while a log stays busy, so that it
/// writes large blocks, and shrink again when it goes quiet.
const CHUNK_BYTES_MIN: usize = 64 * 1024;

/// Whether an append hashes its batches (see [`PartitionLog::append_verified`]).
#[derive(Clone, Copy)]
enum CrcCheck {
    Verify,
    AlreadyVerified,
}

/// Offsets and timestamps assigned to an appended record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub batches: usize,
}

/// The result of a read: whole batches in offset order, plus the log's
/// offsets at the time of the read.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// Runs of whole batches, in order. Concatenated they form a valid
    /// Kafka record set.
    pub records: Vec<Bytes>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub durable_offset: i64,
}

impl LogRead {
    pub fn size_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }

    /// Headers of the returned batches.
    pub fn batch_headers(&self) -> Vec<BatchHeader> {
        self.records.iter().flat_map(|run| batch::run_headers(run).map(|(_, header)| header)).collect()
    }
}

/// The first batch holding a record at or after a timestamp.
#[derive(Debug, Clone)]
pub struct TimestampMatch {
    /// Base offset of that batch. The broker refines this to the exact
    /// record (which may need decompression).
    pub base_offset: i64,
    pub max_timestamp: i64,
    pub batch: Bytes,
}

/// Counters of the I/O a log has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Write rounds issued (each takes what appends have staged).
    pub rounds: u64,
    /// Write operations issued (each up to `write_chunk_bytes_max`).
    pub writes: u64,
    /// Bytes written, including rewrites of partial blocks and padding.
    pub bytes_written: u64,
    /// fdatasync calls covering appended data.
    pub fsyncs: u64,
    /// Reads served from the tail cache and from disk.
    pub cache_reads: u64,
    pub disk_reads: u64,
}

/// A summary of one segment, for tests and for DescribeLogDirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
    pub sealed: bool,
}

/// A write buffer: a DMA buffer covering the file range starting at
/// `position` (block aligned) of segment `segment_base`.
struct StagedChunk {
    segment_base: i64,
    file: Rc<SegmentFile>,
    position: u64,
    buf: DmaBuffer,
    filled: usize,
    /// Write-budget bytes to release once this chunk is on disk.
    charged: usize,
}

impl StagedChunk {
    fn space(&self) -> usize {
        self.buf.len() - self.filled
    }
}

/// A write round: the chunks taken from the write buffers at one moment,
/// written concurrently. Rounds retire in order, so `written_offset` only
/// covers rounds whose writes, and all earlier rounds' writes, completed.
struct Round {
    id: u64,
    /// `next_offset` when the round was taken: every batch below it is in
    /// this round or an earlier one.
    end_offset: i64,
    /// Segments to seal once this round is written.
    seals: Vec<i64>,
    /// Files written, or the first error, once every write completed.
    outcome: Option<Result<Vec<Rc<SegmentFile>>>>,
}

/// Rounds a log keeps in flight: while one round's writes complete, the
/// next is already issued, so the disk queue does not drain between rounds.
const ROUNDS_IN_FLIGHT_MAX: usize = 64;

struct CachedBatch {
    base_offset: i64,
    last_offset: i64,
    segment_base: i64,
    /// Byte position of the batch in its segment file.
    position: u64,
    bytes: Bytes,
}

struct LogState {
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    next_offset: i64,
    written_offset: i64,
    durable_offset: i64,
    leader_epoch: i32,
    /// Full chunks waiting for the flusher, in file order.
    staged: VecDeque<StagedChunk>,
    /// The chunk of the active segment that appends fill.
    filling: Option<StagedChunk>,
    /// Capacity of the last chunk allocated; the next one doubles it (up to
    /// the shard's chunk size), and quiet rounds halve it.
    last_chunk_bytes: usize,
    /// Segments rolled away from, to seal once their data is written.
    seals: Vec<i64>,
    /// Seals running in tasks of their own (see `retire_round`).
    sealing: usize,
    /// A roll created a segment file whose directory entry no fsync has
    /// covered yet; the next `fsync_written` syncs the directory too.
    dir_unsynced: bool,
    /// Files written since their last fdatasync.
    unsynced: Vec<Rc<SegmentFile>>,
    /// When the oldest append not yet covered by an fdatasync was made.
    oldest_unflushed: Option<Instant>,
    /// `flush()` asked for everything below this offset to be fsynced.
    flush_requested_offset: i64,
    tail_cache: VecDeque<CachedBatch>,
    /// How many batches at the front of the tail cache are written and
    /// counted in the shard's tail-cache bytes.
    stats: LogStats,
    failed: Option<String>,
    rolling: bool,
    /// Set while a truncation runs; appends wait.
    exclusive: bool,
    /// Set while `delete_records_before` writes the log start offset file:
    /// one writer of that file at a time.
    moving_log_start: bool,
    /// True while the flusher awaits one of its steps.
    flusher_busy: bool,
    /// Write rounds issued and not yet retired, oldest first.
    rounds: VecDeque<Round>,
    next_round_id: u64,
    /// Appended data below this offset has been taken into a round.
    taken_offset: i64,
    /// The block the newest round wrote partially (segment base, position,
    /// round id): the next write of that block must wait for that round.
    partial_block: Option<(i64, u64, u64)>,
    closing: bool,
    flusher_done: bool,
}

impl LogState {
    /// No rolled segment waits for its seal or is being sealed.
    fn seals_settled(&self) -> bool {
        self.seals.is_empty() && self.sealing == 0
    }
}

struct Shared {
    dir: PathBuf,
    io_mode: IoMode,
    resources: Rc<ShardResources>,
    state: RefCell<LogState>,
    changed: Notify,
}

impl Shared {
    fn uncount_cached(&self, len: usize) {
        let shard_cache = &self.resources.tail_cache_bytes;
        shard_cache.set(shard_cache.get() - len);
    }
}

impl TailCache for Shared {
    fn evict_written(&self, wanted: usize) -> usize {
        // The log whose append or write round triggered the shrink has
        // released its borrow; any other borrow means a caller broke that
        // rule, and skipping this log is the safe answer.
        let Ok(mut state) = self.state.try_borrow_mut() else {
            return 0;
        };
        let mut freed = 0;
        while freed < wanted {
            match state.tail_cache.front() {
                Some(front) if front.last_offset < state.written_offset => {
                    let entry = state.tail_cache.pop_front().expect("a front entry");
                    freed += entry.bytes.len();
                    self.uncount_cached(entry.bytes.len());
                }
                _ => break,
            }
        }
        freed
    }
}

/// A handle to a partition log. Cheap to clone; all clones share the log.
/// Call [`PartitionLog::close`] for a clean shutdown.
#[derive(Clone)]
pub struct PartitionLog {
    shared: Rc<Shared>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn align_down(v: u64) -> u64 {
    v - v % BLOCK_BYTES as u64
}

fn align_up(v: usize) -> usize {
    v.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing), recovering it if it was
    /// not shut down cleanly. Must run on the executor that will own it.
    pub async fn open(dir: impl Into<PathBuf>, config: LogConfig, resources: Rc<ShardResources>) -> Result<Self> {
        let dir = dir.into();
        config.validate()?;
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        // glommio opens directories relative to no descriptor: paths must be absolute.
        let dir = std::path::absolute(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let io_mode = storage_file::probe_io_mode(&dir).await?;
        let recovered = crate::recovery::recover(&dir, io_mode, &config).await?;
        let next_offset = recovered.segments.values().next_back().map(|s| s.next_offset).unwrap_or(0);
        let first_base = recovered.segments.values().next().map(|s| s.base_offset).unwrap_or(0);
        // A start moved by DeleteRecords was only ever written below durable
        // data, so it cannot lie past the recovered end; clamp anyway rather
        // than serve a start beyond the end.
        let log_start_offset = read_log_start_offset(&dir)
            .await?
            .map_or(first_base, |saved| saved.clamp(first_base, next_offset.max(first_base)));
        let state = LogState {
            config,
            segments: recovered.segments,
            log_start_offset,
            next_offset,
            written_offset: next_offset,
            durable_offset: next_offset,
            leader_epoch: 0,
            staged: VecDeque::new(),
            filling: None,
            last_chunk_bytes: 0,
            seals: Vec::new(),
            sealing: 0,
            dir_unsynced: false,
            unsynced: Vec::new(),
            oldest_unflushed: None,
            flush_requested_offset: 0,
            tail_cache: VecDeque::new(),
            stats: LogStats::default(),
            failed: None,
            rolling: false,
            exclusive: false,
            moving_log_start: false,
            flusher_busy: false,
            rounds: VecDeque::new(),
            next_round_id: 0,
            taken_offset: next_offset,
            partial_block: None,
            closing: false,
            flusher_done: false,
        };
        let log = PartitionLog {
            shared: Rc::new(Shared { dir, io_mode, resources, state: RefCell::new(state), changed: Notify::default() }),
        };
        let cache: Rc<dyn TailCache> = log.shared.clone();
        log.shared.resources.register_tail_cache(Rc::downgrade(&cache));
        log.load_partial_block().await?;
        let flusher = log.clone();
        // One task queue on purpose: with several, glommio 0.9 can park the
        // executor while a queue is still runnable and never wake up (a hang
        // seen in this suite; fixed only in a later glommio).
        glommio::spawn_local(async move { flusher.run_flusher().await }).detach();
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn io_mode(&self) -> IoMode {
        self.shared.io_mode
    }

    pub fn log_start_offset(&self) -> i64 {
        self.shared.state.borrow().log_start_offset
    }

    /// The offset the next appended record gets (Kafka's log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.shared.state.borrow().next_offset
    }

    /// Every record below this offset is covered by an fdatasync.
    pub fn durable_offset(&self) -> i64 {
        self.shared.state.borrow().durable_offset
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared.state.borrow().segments.values().map(|s| s.size_bytes).sum()
    }

    pub fn segments(&self) -> Vec<SegmentInfo> {
        self.shared
            .state
            .borrow()
            .segments
            .values()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size_bytes: s.size_bytes,
                max_timestamp: s.max_timestamp,
                sealed: s.sealed,
            })
            .collect()
    }

    pub fn stats(&self) -> LogStats {
        self.shared.state.borrow().stats
    }

    pub fn config(&self) -> LogConfig {
        self.shared.state.borrow().config.clone()
    }

    /// Changes the log's settings (AlterConfigs); they apply to the next
    /// append, roll, flush and retention pass.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.shared.state.borrow_mut().config = config;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// The leader epoch written into each appended batch.
    pub fn set_leader_epoch(&self, leader_epoch: i32) {
        self.shared.state.borrow_mut().leader_epoch = leader_epoch;
    }

    fn check_usable(&self, state: &LogState) -> Result<()> {
        if let Some(reason) = &state.failed {
            return Err(EngineError::Failed { path: self.shared.dir.clone(), reason: reason.clone() });
        }
        if state.closing {
            return Err(EngineError::Closed { path: self.shared.dir.clone() });
        }
        Ok(())
    }

    /// Appends a record set (one or more whole v2 batches, as a producer
    /// sends them). Each batch is validated (length, magic, CRC32C), given
    /// its base offset and the leader epoch, and copied into the write
    /// buffer. Returns once offsets are assigned; use
    /// [`PartitionLog::wait_durable`] to wait for fdatasync.
    pub async fn append(&self, records: Bytes) -> Result<AppendInfo> {
        let headers = self.validate_record_set(&records, CrcCheck::Verify)?;
        self.append_validated(records, &headers).await
    }

    /// [`PartitionLog::append`] for a record set whose every batch the
    /// caller has just CRC-checked in full (the broker validates each
    /// produced batch, records included): the headers are still checked, the
    /// bytes are not hashed a second time on the produce path.
    pub async fn append_verified(&self, records: Bytes) -> Result<AppendInfo> {
        let headers = self.validate_record_set(&records, CrcCheck::AlreadyVerified)?;
        self.append_validated(records, &headers).await
    }

    fn validate_record_set(&self, records: &Bytes, crc: CrcCheck) -> Result<Vec<BatchHeader>> {
        if records.is_empty() {
            return Err(BatchError::Empty.into());
        }
        let segment_bytes_max = self.shared.state.borrow().config.segment_bytes_max;
        if records.len() as u64 > segment_bytes_max {
            return Err(BatchError::TooLarge { len: records.len(), size_bytes_max: segment_bytes_max }.into());
        }
        let mut headers = Vec::new();
        let mut at = 0;
        while at < records.len() {
            let header = match crc {
                CrcCheck::Verify => batch::validate_batch(&records[at..], at, records.len() - at)?,
                CrcCheck::AlreadyVerified => batch::parse_whole_header(&records[at..], at, records.len() - at)?,
            };
            at += header.size_bytes;
            headers.push(header);
        }
        Ok(headers)
    }

    async fn append_validated(&self, records: Bytes, headers: &[BatchHeader]) -> Result<AppendInfo> {
        let records_total: i64 = headers.iter().map(|h| i64::from(h.last_offset_delta) + 1).sum();
        let budget = &self.shared.resources.write_buffer;
        // Every check and the staging itself happen without an await in
        // between, so what was checked still holds when the batch is staged.
        enum Next {
            WaitForLog,
            WaitForBudget,
            Roll,
            Stage,
        }
        loop {
            let next = {
                let state = self.shared.state.borrow();
                self.check_usable(&state)?;
                if state.rolling || state.exclusive {
                    Next::WaitForLog
                } else if !budget.has_room(records.len()) {
                    Next::WaitForBudget
                } else if needs_roll(&state, records.len() as u64, records_total) {
                    Next::Roll
                } else {
                    Next::Stage
                }
            };
            match next {
                Next::WaitForLog => {
                    self.shared
                        .changed
                        .wait_for(|| {
                            let s = self.shared.state.borrow();
                            (!s.rolling && !s.exclusive || s.failed.is_some() || s.closing).then_some(())
                        })
                        .await
                }
                Next::WaitForBudget => budget.wait_for_room(records.len()).await,
                Next::Roll => self.roll().await?,
                Next::Stage if !self.shared.resources.copy_allowed() => self.shared.resources.pace_copy().await,
                Next::Stage => break,
            }
        }
        self.shared.resources.note_copied(records.len());
        let info = self.stage(records, headers);
        self.shared.resources.shrink_tail_caches();
        self.shared.changed.notify_all();
        Ok(info)
    }

    /// Copies a validated record set into the write buffer. Synchronous: no
    /// other task can interleave between offset assignment and staging.
    fn stage(&self, records: Bytes, headers: &[BatchHeader]) -> AppendInfo {
        let mut state = self.shared.state.borrow_mut();
        let state = &mut *state;
        let leader_epoch = state.leader_epoch;
        let base_offset = state.next_offset;
        // Patch offsets in place when we own the only reference, else copy.
        let mut owned = records.try_into_mut().unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
        let mut at = 0;
        let mut next = base_offset;
        for header in headers {
            batch::patch_offset_and_epoch(&mut owned[at..], next, leader_epoch);
            next += i64::from(header.last_offset_delta) + 1;
            at += header.size_bytes;
        }
        let records = owned.freeze();
        let budget = &self.shared.resources.write_buffer;
        let chunk_max = self.shared.resources.limits.write_chunk_bytes_max;
        let index_interval = state.config.index_interval_bytes;
        let (active_base, active) = state.segments.iter_mut().next_back().expect("a log always has an active segment");
        let active_base = *active_base;
        let mut at = 0;
        let mut info = AppendInfo { base_offset, last_offset: base_offset, max_timestamp: -1, batches: headers.len() };
        for header in headers {
            let mut header = *header;
            header.base_offset = state.next_offset;
            let bytes = records.slice(at..at + header.size_bytes);
            // Copy into DMA chunks, opening new ones as they fill.
            let mut src = &bytes[..];
            while !src.is_empty() {
                let need_chunk = state.filling.as_ref().is_none_or(|c| c.space() == 0);
                if need_chunk {
                    let position = match &state.filling {
                        Some(full) => full.position + full.buf.len() as u64,
                        None => active.size_bytes + (bytes.len() - src.len()) as u64,
                    };
                    debug_assert_eq!(position % BLOCK_BYTES as u64, 0, "chunks start on block boundaries");
                    let wanted = align_up(src.len()).max(state.last_chunk_bytes * 2).max(CHUNK_BYTES_MIN);
                    let capacity = wanted.min(chunk_max);
                    state.last_chunk_bytes = capacity;
                    let chunk = StagedChunk {
                        segment_base: active_base,
                        file: active.file.clone(),
                        position,
                        buf: self.shared.resources.take_write_buffer(capacity),
                        filled: 0,
                        charged: budget.acquire_now(capacity),
                    };
                    if let Some(full) = state.filling.replace(chunk) {
                        state.staged.push_back(full);
                    }
                }
                let chunk = state.filling.as_mut().expect("a chunk to fill");
                let n = chunk.space().min(src.len());
                chunk.buf.as_bytes_mut()[chunk.filled..chunk.filled + n].copy_from_slice(&src[..n]);
                chunk.filled += n;
                src = &src[n..];
            }
            let position = active.size_bytes;
            active.record_batch(&header, index_interval);
            info.last_offset = header.last_offset();
            info.max_timestamp = info.max_timestamp.max(header.max_timestamp);
            state.next_offset = header.last_offset() + 1;
            let shard_cache = &self.shared.resources.tail_cache_bytes;
            shard_cache.set(shard_cache.get() + bytes.len());
            state.tail_cache.push_back(CachedBatch {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                segment_base: active_base,
                position,
                bytes,
            });
            at += header.size_bytes;
        }
        state.oldest_unflushed.get_or_insert_with(Instant::now);
        info
    }

    /// Starts a new active segment at the current log end. The old one is
    /// sealed by the flusher once its data is written.
    async fn roll(&self) -> Result<()> {
        let new_base = {
            let mut state = self.shared.state.borrow_mut();
            state.rolling = true;
            state.next_offset
        };
        let path = self.shared.dir.join(segment::segment_file_name(new_base));
        let opened = SegmentFile::open(path, self.shared.io_mode, true).await;
        let opened = match opened {
            Ok(file) => file.truncate(0).await.map(|()| file),
            Err(err) => Err(err),
        };
        let mut state = self.shared.state.borrow_mut();
        state.rolling = false;
        // The new file's directory entry must be durable before any data in
        // it is called durable (an fdatasync of the file does not cover
        // it), but appends need not wait for that: the fsync that would
        // call the first of them durable syncs the directory too.
        state.dir_unsynced |= opened.is_ok();
        self.shared.changed.notify_all();
        let file = opened?;
        let old_base = *state.segments.keys().next_back().expect("an active segment");
        if let Some(chunk) = state.filling.take() {
            state.staged.push_back(chunk);
        }
        state.seals.push(old_base);
        state.segments.insert(new_base, Segment::new_empty(new_base, Rc::new(file)));
        tracing::debug!(dir = %self.shared.dir.display(), old_base, new_base, "rolled segment");
        Ok(())
    }

    /// Waits until every record below `offset` is covered by an fdatasync
    /// (under the log's flush policy; see [`PartitionLog::flush`] to force).
    pub async fn wait_durable(&self, offset: i64) -> Result<()> {
        self.shared
            .changed
            .wait_for(|| {
                let state = self.shared.state.borrow();
                if state.durable_offset >= offset {
                    Some(Ok(()))
                } else if let Some(reason) = &state.failed {
                    Some(Err(EngineError::Failed { path: self.shared.dir.clone(), reason: reason.clone() }))
                } else if state.flusher_done {
                    Some(Err(EngineError::Closed { path: self.shared.dir.clone() }))
                } else {
                    None
                }
            })
            .await
    }

    /// Waits until a record at or above `offset` exists: durable ones only
    /// when `durable` (a consumer's view under the always-flush policy),
    /// appended ones otherwise. Fetch long-polls use it; a failed or closed
    /// log ends the wait too, so the caller re-reads and sees the error.
    pub async fn wait_for_records_from(&self, offset: i64, durable: bool) {
        self.shared
            .changed
            .wait_for(|| {
                let state = self.shared.state.borrow();
                let end = if durable { state.durable_offset } else { state.next_offset };
                (end > offset || state.failed.is_some() || state.closing || state.flusher_done).then_some(())
            })
            .await
    }

    /// Writes and fsyncs everything appended so far, whatever the policy,
    /// and waits for the seals of segments rolled away from (so that
    /// retention may delete them).
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut state = self.shared.state.borrow_mut();
            state.flush_requested_offset = state.flush_requested_offset.max(state.next_offset);
            state.next_offset
        };
        self.shared.changed.notify_all();
        self.wait_durable(target).await?;
        self.wait_for_seals().await;
        Ok(())
    }

    /// Waits until no rolled segment waits for its seal or is being sealed
    /// (or the log failed).
    async fn wait_for_seals(&self) {
        self.shared
            .changed
            .wait_for(|| {
                let s = self.shared.state.borrow();
                (s.seals_settled() || s.failed.is_some()).then_some(())
            })
            .await
    }

    /// The flusher: one task per log that starts write rounds as data is
    /// appended (up to [`ROUNDS_IN_FLIGHT_MAX`] at once), retires them in
    /// order, fsyncs per policy and seals rolled segments.
    async fn run_flusher(self) {
        enum Step {
            Start,
            Retire,
            Fsync,
            Exit,
        }
        loop {
            let wait = self.shared.changed.wait_for(|| {
                let state = self.shared.state.borrow();
                if state.failed.is_some() {
                    return Some(Step::Exit);
                }
                if state.rounds.front().is_some_and(|r| r.outcome.is_some()) {
                    return Some(Step::Retire);
                }
                let new_work =
                    state.next_offset > state.taken_offset || !state.staged.is_empty() || !state.seals.is_empty();
                if new_work && state.rounds.len() < ROUNDS_IN_FLIGHT_MAX {
                    return Some(Step::Start);
                }
                // With rounds in flight, retiring them decides on the fsync:
                // fsyncing now would cover only part of what made it due.
                if state.rounds.is_empty() && fsync_due(&state) {
                    return Some(Step::Fsync);
                }
                (state.closing && state.rounds.is_empty() && state.sealing == 0 && !new_work).then_some(Step::Exit)
            });
            let step = match self.flush_deadline() {
                Some(after) => {
                    futures_lite::future::or(wait, async {
                        glommio::timer::sleep(after).await;
                        Step::Fsync
                    })
                    .await
                }
                None => wait.await,
            };
            self.shared.state.borrow_mut().flusher_busy = true;
            let result = match step {
                Step::Start => self.start_round().await,
                Step::Retire => self.retire_round().await,
                Step::Fsync => self.fsync_written().await,
                Step::Exit => break,
            };
            self.shared.state.borrow_mut().flusher_busy = false;
            if let Err(err) = result {
                self.fail("write failed", &err);
            }
            self.shared.changed.notify_all();
        }
        let mut state = self.shared.state.borrow_mut();
        state.flusher_busy = false;
        state.flusher_done = true;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Marks the log failed after a write, fsync or seal error (the first
    /// one is kept): it accepts no more appends.
    fn fail(&self, what: &str, err: &EngineError) {
        tracing::error!(dir = %self.shared.dir.display(), error = %err, "{what}; the log accepts no more appends");
        self.shared.state.borrow_mut().failed.get_or_insert_with(|| err.to_string());
    }

    /// How long until the interval policy wants an fsync, if it will.
    fn flush_deadline(&self) -> Option<std::time::Duration> {
        let state = self.shared.state.borrow();
        match state.config.flush_policy {
            FlushPolicy::Interval { interval: Some(interval), .. } if !state.unsynced.is_empty() => {
                let since = state.oldest_unflushed.map(|t| t.elapsed()).unwrap_or_default();
                Some(interval.saturating_sub(since))
            }
            _ => None,
        }
    }

    /// Takes what appends have staged and issues it as a new round, whose
    /// writes run in a task of their own.
    async fn start_round(&self) -> Result<()> {
        let (id, chunks, overlap) = self.take_staged();
        self.preallocate(&chunks).await?;
        let log = self.clone();
        glommio::spawn_local(async move { log.write_round(id, chunks, overlap).await }).detach();
        Ok(())
    }

    async fn write_round(self, id: u64, chunks: Vec<StagedChunk>, overlap: Option<(usize, u64)>) {
        let resources = &self.shared.resources;
        let writes = chunks.into_iter().enumerate().map(|(i, chunk)| {
            let log = &self;
            async move {
                if let Some((_, earlier)) = overlap.filter(|(at, _)| *at == i) {
                    log.shared.changed.wait_for(|| (!log.round_in_flight(earlier)).then_some(())).await;
                }
                let _slot = resources.write_slots.acquire_permit(1).await.expect("write slots are never closed");
                let mut chunk = chunk;
                let len = align_up(chunk.filled);
                chunk.buf.as_bytes_mut()[chunk.filled..len].fill(0);
                let charged = chunk.charged;
                let result = if len == chunk.buf.len() {
                    // A whole buffer: written without trimming, so that it
                    // can be filled again.
                    let (result, buf) = chunk.file.write_whole_at(chunk.buf, chunk.position).await;
                    if let Some(buf) = buf {
                        resources.recycle_write_buffer(buf);
                    }
                    result
                } else {
                    chunk.file.write_at(chunk.buf, len, chunk.position).await
                };
                resources.write_buffer.release(charged);
                result.map(|()| chunk.file)
            }
        });
        let outcome: Result<Vec<Rc<SegmentFile>>> = futures::future::join_all(writes).await.into_iter().collect();
        if let Some(round) = self.shared.state.borrow_mut().rounds.iter_mut().find(|r| r.id == id) {
            round.outcome = Some(outcome);
        }
        self.shared.changed.notify_all();
    }

    /// Whether round `id` still has writes in flight.
    fn round_in_flight(&self, id: u64) -> bool {
        self.shared.state.borrow().rounds.iter().any(|r| r.id == id && r.outcome.is_none())
    }

    /// Retires the oldest round once all its writes completed, with every
    /// finished round after it: their batches count as written, an fsync
    /// follows if the policy wants one, and the segments they finished are
    /// sealed. Retiring the finished rounds together lets one fsync cover
    /// them all: with `FlushPolicy::Always` and small appends (a
    /// coordinator's log) several rounds finish while an fsync runs, and
    /// an fsync each would make the last appender wait for all of them.
    async fn retire_round(&self) -> Result<()> {
        let (seals, sync) = {
            let mut state = self.shared.state.borrow_mut();
            let mut seals = Vec::new();
            while state.rounds.front().is_some_and(|round| round.outcome.is_some()) {
                let round = state.rounds.pop_front().expect("checked");
                let files = round.outcome.expect("checked")?;
                for file in files {
                    if !state.unsynced.iter().any(|f| Rc::ptr_eq(f, &file)) {
                        state.unsynced.push(file);
                    }
                }
                state.written_offset = round.end_offset;
                seals.extend(round.seals);
            }
            let sync = fsync_due(&state) || !seals.is_empty();
            (seals, sync)
        };
        // Batches this round wrote have become evictable.
        self.shared.resources.shrink_tail_caches();
        self.shared.changed.notify_all();
        if sync {
            self.fsync_written().await?;
        }
        // A seal is a truncate, an fdatasync and two index files written
        // atomically (each an fdatasync, a rename and a directory sync):
        // tens of milliseconds on a busy disk, during which this flusher
        // would retire no round and every acknowledgement would wait. The
        // data is durable already, so the seal runs beside the flusher;
        // retention deletes only sealed segments, and truncation and close
        // wait for seals in flight.
        for base in seals {
            self.shared.state.borrow_mut().sealing += 1;
            let log = self.clone();
            glommio::spawn_local(async move {
                let result = log.seal(base, false).await;
                log.shared.state.borrow_mut().sealing -= 1;
                if let Err(err) = result {
                    log.fail("sealing a segment failed", &err);
                }
                log.shared.changed.notify_all();
            })
            .detach();
        }
        Ok(())
    }

    /// Takes the staged chunks as a new round and registers it, all without
    /// awaiting, so that the partial-block bookkeeping sees exactly the
    /// chunks taken. The last block of the filling chunk, if partial, is
    /// copied into a fresh chunk so appends can go on while the round
    /// writes; a later round rewrites that block, after this one's write of
    /// it completed. Returns the round's id, its chunks and, if one of them
    /// rewrites a block an earlier round wrote partially, its index and
    /// that round's id.
    fn take_staged(&self) -> (u64, Vec<StagedChunk>, Option<(usize, u64)>) {
        let mut state = self.shared.state.borrow_mut();
        let state = &mut *state;
        let mut chunks: Vec<StagedChunk> = state.staged.drain(..).collect();
        if let Some(filling) = state.filling.take() {
            let full_blocks = align_down(filling.filled as u64) as usize;
            if filling.filled > full_blocks {
                let mut carry = glommio::allocate_dma_buffer(BLOCK_BYTES);
                let tail = filling.filled - full_blocks;
                carry.as_bytes_mut()[..tail].copy_from_slice(&filling.buf.as_bytes()[full_blocks..filling.filled]);
                // Not charged to the write budget: at most one block per log,
                // and an idle log would otherwise hold budget that appends
                // to other logs wait for.
                state.filling = Some(StagedChunk {
                    segment_base: filling.segment_base,
                    file: filling.file.clone(),
                    position: filling.position + full_blocks as u64,
                    buf: carry,
                    filled: tail,
                    charged: 0,
                });
            }
            if filling.filled > 0 {
                chunks.push(filling);
            } else {
                self.shared.resources.write_buffer.release(filling.charged);
            }
        }
        // Chunk sizes carry over between rounds so that a busy log keeps
        // writing large blocks; a round that would not have filled half of
        // the last chunk halves it, so a log that turns quiet stops
        // allocating large buffers for small appends.
        let round_bytes: usize = chunks.iter().map(|c| c.filled).sum();
        if round_bytes < state.last_chunk_bytes / 2 {
            state.last_chunk_bytes /= 2;
        }
        let id = state.next_round_id;
        state.next_round_id += 1;
        let overlap = state.partial_block.and_then(|(base, position, round)| {
            chunks.iter().position(|c| c.segment_base == base && c.position == position).map(|i| (i, round))
        });
        state.partial_block = state.filling.as_ref().map(|carry| (carry.segment_base, carry.position, id));
        state.stats.rounds += 1;
        state.stats.writes += chunks.len() as u64;
        state.stats.bytes_written += chunks.iter().map(|c| align_up(c.filled) as u64).sum::<u64>();
        let seals = std::mem::take(&mut state.seals);
        state.taken_offset = state.next_offset;
        state.rounds.push_back(Round { id, end_offset: state.next_offset, seals, outcome: None });
        (id, chunks, overlap)
    }

    /// Extends segment files ahead of the writes so that O_DIRECT writes do
    /// not change the file size (which would serialise them).
    async fn preallocate(&self, chunks: &[StagedChunk]) -> Result<()> {
        let mut plans: Vec<(Rc<SegmentFile>, i64, u64)> = Vec::new();
        {
            let state = self.shared.state.borrow();
            let step = state.config.preallocate_bytes;
            let cap = align_up(state.config.segment_bytes_max as usize) as u64;
            for chunk in chunks {
                let end = chunk.position + align_up(chunk.filled) as u64;
                let segment = &state.segments[&chunk.segment_base];
                if end > segment.allocated_bytes && plans.iter().all(|(_, b, _)| *b != chunk.segment_base) {
                    let max_end = chunks
                        .iter()
                        .filter(|c| c.segment_base == chunk.segment_base)
                        .map(|c| c.position + align_up(c.filled) as u64)
                        .max()
                        .unwrap_or(end);
                    // Grow geometrically from a small first step: a partition
                    // that is written rarely keeps megabytes on disk, not a
                    // whole step, while a busy one reaches full steps (and
                    // their rare queue-draining fallocates) within a few.
                    let grow = segment.allocated_bytes.max(PREALLOCATE_FIRST_BYTES).min(step);
                    let target = (segment.allocated_bytes + grow).min(cap).max(max_end);
                    plans.push((chunk.file.clone(), chunk.segment_base, target));
                }
            }
        }
        for (file, base, target) in plans {
            file.preallocate(target).await?;
            if let Some(segment) = self.shared.state.borrow_mut().segments.get_mut(&base) {
                segment.allocated_bytes = target;
            }
        }
        Ok(())
    }

    async fn fsync_written(&self) -> Result<()> {
        let (files, covered, dir_unsynced) = {
            let mut state = self.shared.state.borrow_mut();
            let dir_unsynced = std::mem::take(&mut state.dir_unsynced);
            (std::mem::take(&mut state.unsynced), state.written_offset, dir_unsynced)
        };
        // All at once: after a roll the old and the new segment (and the
        // directory) each need one, and the disk serves them together.
        let dir_sync = async {
            match dir_unsynced {
                true => storage_file::sync_dir(&self.shared.dir).await,
                false => Ok(()),
            }
        };
        let file_syncs = futures::future::try_join_all(files.iter().map(|file| file.fdatasync()));
        futures::future::try_join(dir_sync, file_syncs).await?;
        let mut state = self.shared.state.borrow_mut();
        state.stats.fsyncs += files.len() as u64;
        state.durable_offset = state.durable_offset.max(covered);
        // Appends made during this fsync are not covered; their age counts
        // from now, which is at most the fsync's duration late.
        state.oldest_unflushed = (state.next_offset > covered).then(Instant::now);
        Ok(())
    }

    /// Seals a rolled segment: truncates the preallocated file to its data,
    /// makes that durable and writes the index files, durably only when
    /// `durable_indexes` (at close; see `segment::write_index_files`).
    async fn seal(&self, base: i64, durable_indexes: bool) -> Result<()> {
        let (file, size, offset_index, time_index) = {
            let mut state = self.shared.state.borrow_mut();
            let Some(segment) = state.segments.get_mut(&base) else {
                return Ok(());
            };
            segment.finish_time_index();
            (segment.file.clone(), segment.size_bytes, segment.offset_index.clone(), segment.time_index.clone())
        };
        file.truncate(size).await?;
        file.fdatasync().await?;
        segment::write_index_files(&self.shared.dir, base, &offset_index, &time_index, durable_indexes).await?;
        if let Some(segment) = self.shared.state.borrow_mut().segments.get_mut(&base) {
            segment.sealed = true;
            segment.allocated_bytes = size;
        }
        Ok(())
    }

    fn evict_front(&self, state: &mut LogState) {
        let entry = state.tail_cache.pop_front().expect("an entry to evict");
        self.shared.uncount_cached(entry.bytes.len());
    }

    /// Reads whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (at least one batch is returned so a consumer always makes
    /// progress, as Kafka does) and below `upper_bound` (exclusive; the log
    /// end when `None`). An offset outside [log start, log end] is
    /// `OffsetOutOfRange`.
    pub async fn read(&self, offset: i64, max_bytes: usize, upper_bound: Option<i64>) -> Result<LogRead> {
        let mut out = self.read_frame(offset)?;
        let bound = upper_bound.unwrap_or(i64::MAX).min(out.log_end_offset);
        if offset >= bound {
            return Ok(out);
        }
        if self.read_from_cache(offset, max_bytes, bound, &mut out, 0) {
            self.shared.state.borrow_mut().stats.cache_reads += 1;
            return Ok(out);
        }
        self.shared.state.borrow_mut().stats.disk_reads += 1;
        let mut segment_base = {
            let state = self.shared.state.borrow();
            match state.segments.range(..=offset).next_back() {
                Some((base, _)) => *base,
                None => return Ok(out),
            }
        };
        // Walk segments until one yields data: the offset may sit at the
        // very end of a segment.
        loop {
            if let Some((run, next_offset)) = self.read_from_segment(segment_base, offset, max_bytes, bound).await? {
                let taken = run.len();
                out.records.push(run);
                // Unwritten batches right after the disk data are in the
                // cache: continue there while the byte limit allows.
                self.read_from_cache(next_offset, max_bytes, bound, &mut out, taken);
                return Ok(out);
            }
            let state = self.shared.state.borrow();
            match state.segments.range(segment_base + 1..).next() {
                Some((base, _)) if *base < bound => segment_base = *base,
                _ => {
                    drop(state);
                    // The data may have moved into the cache's range meanwhile.
                    self.read_from_cache(offset, max_bytes, bound, &mut out, 0);
                    return Ok(out);
                }
            }
        }
    }

    fn read_frame(&self, offset: i64) -> Result<LogRead> {
        let state = self.shared.state.borrow();
        if offset < state.log_start_offset || offset > state.next_offset {
            return Err(EngineError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset,
                log_end_offset: state.next_offset,
            });
        }
        Ok(LogRead {
            records: Vec::new(),
            log_start_offset: state.log_start_offset,
            log_end_offset: state.next_offset,
            durable_offset: state.durable_offset,
        })
    }

    /// Serves the read from the tail cache if the cache holds `offset`.
    /// `taken` bytes are already in `out`; with none, the first batch is
    /// returned whatever its size.
    fn read_from_cache(&self, offset: i64, max_bytes: usize, bound: i64, out: &mut LogRead, taken: usize) -> bool {
        let state = self.shared.state.borrow();
        let Some(front) = state.tail_cache.front() else {
            return false;
        };
        if offset < front.base_offset {
            return false;
        }
        let first = state.tail_cache.partition_point(|b| b.last_offset < offset);
        let mut total = taken;
        for entry in state.tail_cache.range(first..) {
            if entry.base_offset >= bound || (total > 0 && total + entry.bytes.len() > max_bytes) {
                break;
            }
            total += entry.bytes.len();
            out.records.push(entry.bytes.clone());
        }
        true
    }

    /// Reads from one segment's file, validating every returned batch's
    /// CRC. `None` when the segment holds nothing at or after `offset` on
    /// disk. A damaged batch ends the read after the good ones before it;
    /// if it is the first wanted batch the error names file and position.
    async fn read_from_segment(
        &self,
        segment_base: i64,
        offset: i64,
        max_bytes: usize,
        bound: i64,
    ) -> Result<Option<(Bytes, i64)>> {
        let (file, start, limit, interval) = {
            let state = self.shared.state.borrow();
            let Some(segment) = state.segments.get(&segment_base) else {
                return Ok(None);
            };
            if offset >= segment.next_offset {
                return Ok(None);
            }
            let relative = segment::relative(offset.max(segment_base), segment_base);
            let start = segment.offset_index.lookup(relative).map(|e| u64::from(e.position)).unwrap_or(0);
            // Unwritten bytes live in the tail cache; never read past them.
            let cache_position = self.cached_position_in(&state, segment);
            (
                segment.file.clone(),
                start,
                cache_position.unwrap_or(segment.size_bytes),
                state.config.index_interval_bytes,
            )
        };
        if start >= limit {
            return Ok(None);
        }
        let want = (max_bytes as u64 + u64::from(interval) + 64 * 1024).min(limit - start) as usize;
        let mut window_start = start;
        let mut data = file.read_at(window_start, want).await?;
        let mut at = 0usize;
        let mut first: Option<usize> = None;
        let mut end = 0usize;
        let mut next_offset = offset;
        loop {
            let position = window_start + at as u64;
            if position >= limit {
                break;
            }
            let header = match batch::parse_header(&data[at..], position as usize, (limit - position) as usize) {
                HeaderParse::Complete(header) => header,
                HeaderParse::Incomplete { needed: Some(needed) } if first.is_none() => {
                    // A batch larger than the window and nothing taken yet:
                    // re-read from this batch with room for all of it.
                    window_start = position;
                    data = file.read_at(window_start, needed.max(want)).await?;
                    at = 0;
                    if data.len() < needed {
                        return Err(corrupt(&file, position, offset, "the file ends inside a batch"));
                    }
                    continue;
                }
                HeaderParse::Incomplete { .. } => break,
                HeaderParse::Invalid(err) => {
                    if first.is_some() {
                        break;
                    }
                    return Err(corrupt(&file, position, offset, &err.to_string()));
                }
            };
            let batch_end = at + header.size_bytes;
            if header.last_offset() < offset {
                at = batch_end;
                continue;
            }
            if header.base_offset >= bound || first.is_some_and(|f| batch_end - f > max_bytes) {
                break;
            }
            if let Err(err) = batch::check_crc(&data[at..batch_end], &header, position as usize) {
                if first.is_some() {
                    break;
                }
                return Err(corrupt(&file, position, header.base_offset, &err.to_string()));
            }
            first.get_or_insert(at);
            end = batch_end;
            at = batch_end;
            next_offset = header.last_offset() + 1;
        }
        Ok(first.map(|f| (data.slice(f..end), next_offset)))
    }

    /// File position of the first cached batch if it lies in `segment`.
    fn cached_position_in(&self, state: &LogState, segment: &Segment) -> Option<u64> {
        let front = state.tail_cache.front()?;
        (front.segment_base == segment.base_offset).then_some(front.position)
    }

    /// Finds the first batch whose max timestamp is at or after `timestamp`
    /// (ListOffsets by timestamp). `None` if no record is that new.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampMatch>> {
        let start = {
            let state = self.shared.state.borrow();
            let Some(segment) = state.segments.values().find(|s| s.max_timestamp >= timestamp) else {
                return Ok(None);
            };
            let relative = segment.time_index.lookup_before(timestamp).map(|e| e.relative_offset).unwrap_or(0);
            (segment.base_offset + i64::from(relative)).max(state.log_start_offset)
        };
        let mut offset = start;
        loop {
            let read = match self.read(offset, 1 << 20, None).await {
                Ok(read) => read,
                Err(EngineError::OffsetOutOfRange { .. }) => return Ok(None),
                Err(err) => return Err(err),
            };
            if read.records.is_empty() {
                return Ok(None);
            }
            for run in &read.records {
                for (at, header) in batch::run_headers(run) {
                    if header.max_timestamp >= timestamp && header.last_offset() >= start {
                        return Ok(Some(TimestampMatch {
                            base_offset: header.base_offset,
                            max_timestamp: header.max_timestamp,
                            batch: run.slice(at..at + header.size_bytes),
                        }));
                    }
                    offset = header.last_offset() + 1;
                }
            }
        }
    }

    /// Deletes whole segments, oldest first, while the log is larger than
    /// `retention.bytes` or the segment's newest record is older than
    /// `retention.ms` at `now_ms`. The active segment is never deleted.
    /// Returns the number of segments deleted; the log start offset moves to
    /// the first remaining segment.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let doomed: Vec<Segment> = {
            let mut state = self.shared.state.borrow_mut();
            let mut total: u64 = state.segments.values().map(|s| s.size_bytes).sum();
            let retention_bytes = state.config.retention_bytes_max;
            let retention_ms = state.config.retention_age_max.map(|d| d.as_millis() as i64);
            let mut doomed = Vec::new();
            while state.segments.len() > 1 {
                let oldest = state.segments.values().next().expect("segments");
                let too_big = retention_bytes.is_some_and(|max| total - oldest.size_bytes >= max);
                let too_old =
                    retention_ms.is_some_and(|ms| oldest.max_timestamp >= 0 && oldest.max_timestamp < now_ms - ms);
                // Wholly below a start moved by DeleteRecords: unreadable, so
                // deleted whatever the retention settings say.
                let below_start = oldest.next_offset <= state.log_start_offset;
                if !(oldest.sealed && (too_big || too_old || below_start)) {
                    break;
                }
                let (_, segment) = state.segments.pop_first().expect("segments");
                total -= segment.size_bytes;
                doomed.push(segment);
            }
            if !doomed.is_empty() {
                let new_start = state.segments.values().next().expect("the active segment remains").base_offset;
                state.log_start_offset = state.log_start_offset.max(new_start);
                while state.tail_cache.front().is_some_and(|b| b.base_offset < new_start) {
                    self.evict_front(&mut state);
                }
            }
            doomed
        };
        for segment in &doomed {
            tracing::info!(path = %segment.path().display(), base_offset = segment.base_offset, "retention deleted segment");
            segment::remove_segment_files(&self.shared.dir, segment.base_offset).await?;
        }
        if !doomed.is_empty() {
            storage_file::sync_dir(&self.shared.dir).await?;
        }
        Ok(doomed.len())
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords):
    /// records below it can no longer be read, and sealed segments wholly
    /// below it are deleted. The new start is durable on return (it
    /// survives a restart or a crash). Returns the log start offset after the
    /// call, which is the current one when `offset` is not above it. An
    /// offset beyond the log end is `OffsetOutOfRange`; the caller (the
    /// broker) enforces Kafka's tighter bound, the high watermark.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        {
            let state = self.shared.state.borrow();
            self.check_usable(&state)?;
            if offset < 0 || offset > state.next_offset {
                return Err(EngineError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.next_offset,
                });
            }
            if offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
        }
        // The saved start must never lie past what a crash keeps: recovery
        // could otherwise cut the log below its own start.
        if offset > self.durable_offset() {
            self.flush().await?;
        }
        self.shared
            .changed
            .wait_for(|| {
                let mut state = self.shared.state.borrow_mut();
                (!state.moving_log_start).then(|| state.moving_log_start = true)
            })
            .await;
        let result = self.move_log_start(offset).await;
        self.shared.state.borrow_mut().moving_log_start = false;
        self.shared.changed.notify_all();
        result
    }

    async fn move_log_start(&self, offset: i64) -> Result<i64> {
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        let path = self.shared.dir.join(LOG_START_OFFSET_FILE);
        storage_file::write_file_atomically(&path, encode_log_start_offset(offset)).await?;
        // Only sealed segments are deleted; let the seals of recent rolls
        // finish so that every segment wholly below the start goes now.
        self.wait_for_seals().await;
        let doomed: Vec<Segment> = {
            let mut state = self.shared.state.borrow_mut();
            state.log_start_offset = offset;
            while state
                .tail_cache
                .front()
                .is_some_and(|b| b.last_offset < offset && b.last_offset < state.written_offset)
            {
                self.evict_front(&mut state);
            }
            let mut doomed = Vec::new();
            while state.segments.len() > 1 {
                let oldest = state.segments.values().next().expect("segments");
                if !(oldest.sealed && oldest.next_offset <= offset) {
                    break;
                }
                doomed.push(state.segments.pop_first().expect("segments").1);
            }
            doomed
        };
        for segment in &doomed {
            tracing::info!(path = %segment.path().display(), base_offset = segment.base_offset, "deleted segment below the log start offset");
            segment::remove_segment_files(&self.shared.dir, segment.base_offset).await?;
        }
        if !doomed.is_empty() {
            storage_file::sync_dir(&self.shared.dir).await?;
        }
        tracing::info!(dir = %self.shared.dir.display(), log_start_offset = offset, "log start offset moved");
        Ok(offset)
    }

    /// Removes every batch at or after the one holding `offset` (Kafka's
    /// truncateTo: the cut is at a batch boundary). Returns the new log end.
    /// Appends wait while it runs.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64> {
        {
            let state = self.shared.state.borrow();
            self.check_usable(&state)?;
            if offset >= state.next_offset {
                return Ok(state.next_offset);
            }
            if offset < state.log_start_offset {
                return Err(EngineError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.next_offset,
                });
            }
        }
        self.shared
            .changed
            .wait_for(|| {
                let mut s = self.shared.state.borrow_mut();
                (!s.exclusive && !s.rolling).then(|| s.exclusive = true)
            })
            .await;
        let result = self.truncate_exclusive(offset).await;
        self.shared.state.borrow_mut().exclusive = false;
        self.shared.changed.notify_all();
        result
    }

    async fn truncate_exclusive(&self, offset: i64) -> Result<i64> {
        self.flush().await?;
        // Wait for seals queued by earlier rolls to finish too.
        self.shared
            .changed
            .wait_for(|| {
                let s = self.shared.state.borrow();
                (s.seals_settled() && s.rounds.is_empty() && !s.flusher_busy || s.failed.is_some()).then_some(())
            })
            .await;
        let (target_base, doomed) = {
            let mut state = self.shared.state.borrow_mut();
            let target_base = *state.segments.range(..=offset).next_back().expect("offset >= log start").0;
            let doomed: Vec<Segment> = {
                let later: Vec<i64> = state.segments.range(target_base + 1..).map(|(b, _)| *b).collect();
                later.into_iter().filter_map(|b| state.segments.remove(&b)).collect()
            };
            if let Some(chunk) = state.filling.take() {
                self.shared.resources.write_buffer.release(chunk.charged);
            }
            (target_base, doomed)
        };
        for segment in doomed.iter().rev() {
            segment::remove_segment_files(&self.shared.dir, segment.base_offset).await?;
        }
        // Find the cut: the start of the batch holding `offset`.
        let cut = self.position_of_batch_holding(target_base, offset).await?;
        let file = self.shared.state.borrow().segments[&target_base].file.clone();
        file.truncate(cut).await?;
        file.fdatasync().await?;
        segment::remove_index_files(&self.shared.dir, target_base).await?;
        storage_file::sync_dir(&self.shared.dir).await?;
        let mut rebuilt = Segment::new_empty(target_base, file);
        let interval = self.shared.state.borrow().config.index_interval_bytes;
        let stop = segment::scan_segment(&mut rebuilt, cut, interval).await?;
        assert_eq!(stop, ScanStop::End, "data before a truncation point was validated when written");
        rebuilt.allocated_bytes = cut;
        let new_end = rebuilt.next_offset;
        {
            let mut state = self.shared.state.borrow_mut();
            state.segments.insert(target_base, rebuilt);
            state.next_offset = new_end;
            state.taken_offset = new_end;
            state.written_offset = new_end;
            state.durable_offset = new_end;
            state.partial_block = None;
            while state.tail_cache.back().is_some_and(|b| b.base_offset >= new_end) {
                let entry = state.tail_cache.pop_back().expect("an entry");
                self.shared.uncount_cached(entry.bytes.len());
            }
        }
        self.load_partial_block().await?;
        tracing::info!(dir = %self.shared.dir.display(), offset, new_end, "truncated log");
        Ok(new_end)
    }

    async fn position_of_batch_holding(&self, base: i64, offset: i64) -> Result<u64> {
        let (file, start, size) = {
            let state = self.shared.state.borrow();
            let segment = &state.segments[&base];
            let relative = segment::relative(offset, base);
            let start = segment.offset_index.lookup(relative).map(|e| u64::from(e.position)).unwrap_or(0);
            (segment.file.clone(), start, segment.size_bytes)
        };
        let mut position = start;
        while position < size {
            let header_bytes = file.read_at(position, batch::HEADER_BYTES).await?;
            let header = batch::peek_header(&header_bytes, position as usize, (size - position) as usize)
                .map_err(|err| corrupt(&file, position, offset, &err.to_string()))?
                .ok_or_else(|| corrupt(&file, position, offset, "the file ends inside a batch header"))?;
            if header.last_offset() >= offset {
                return Ok(position);
            }
            position += header.size_bytes as u64;
        }
        Ok(size)
    }

    /// After open or truncation: if the active segment ends inside a block,
    /// load that block so the next write rewrites it whole.
    async fn load_partial_block(&self) -> Result<()> {
        let (file, base, size) = {
            let state = self.shared.state.borrow();
            let (base, segment) = state.segments.iter().next_back().expect("an active segment");
            (segment.file.clone(), *base, segment.size_bytes)
        };
        let block_start = align_down(size);
        let tail = (size - block_start) as usize;
        if tail == 0 {
            return Ok(());
        }
        let bytes = file.read_at(block_start, tail).await?;
        if bytes.len() != tail {
            return Err(corrupt(&file, block_start, -1, "segment shorter than its recovered size"));
        }
        let mut buf = glommio::allocate_dma_buffer(BLOCK_BYTES);
        buf.as_bytes_mut()[..tail].copy_from_slice(&bytes);
        // Like the flusher's carried block, not charged to the write budget.
        self.shared.state.borrow_mut().filling =
            Some(StagedChunk { segment_base: base, file, position: block_start, buf, filled: tail, charged: 0 });
        Ok(())
    }

    /// Clean shutdown: writes and fsyncs everything, seals the active
    /// segment and leaves a marker so the next open skips the recovery scan.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        self.shared.state.borrow_mut().closing = true;
        self.shared.changed.notify_all();
        self.shared.changed.wait_for(|| self.shared.state.borrow().flusher_done.then_some(())).await;
        flushed?;
        let (base, next_offset, size) = {
            let state = self.shared.state.borrow();
            if let Some(reason) = &state.failed {
                return Err(EngineError::Failed { path: self.shared.dir.clone(), reason: reason.clone() });
            }
            let (base, segment) = state.segments.iter().next_back().expect("an active segment");
            (*base, state.next_offset, segment.size_bytes)
        };
        self.seal(base, true).await?;
        {
            let mut state = self.shared.state.borrow_mut();
            if let Some(chunk) = state.filling.take() {
                self.shared.resources.write_buffer.release(chunk.charged);
            }
            while !state.tail_cache.is_empty() {
                self.evict_front(&mut state);
            }
        }
        let marker = encode_clean_shutdown(base, size, next_offset);
        storage_file::write_file_atomically(&self.shared.dir.join(CLEAN_SHUTDOWN_FILE), marker).await
    }
}

fn corrupt(file: &SegmentFile, position: u64, offset: i64, reason: &str) -> EngineError {
    EngineError::Corrupt { path: file.path().to_path_buf(), position, offset, reason: reason.to_string() }
}

fn needs_roll(state: &LogState, incoming_bytes: u64, incoming_records: i64) -> bool {
    let active = state.segments.values().next_back().expect("an active segment");
    if active.is_empty() {
        return false;
    }
    let too_big = active.size_bytes + incoming_bytes > state.config.segment_bytes_max;
    let offsets_overflow = state.next_offset + incoming_records - active.base_offset > i64::from(u32::MAX);
    let too_old = match (state.config.segment_age_max, active.roll_timestamp) {
        (Some(max), Some(first)) => now_ms() - first > max.as_millis() as i64,
        _ => false,
    };
    too_big || offsets_overflow || too_old
}

fn fsync_due(state: &LogState) -> bool {
    if state.unsynced.is_empty() || state.written_offset <= state.durable_offset {
        return false;
    }
    if state.flush_requested_offset > state.durable_offset {
        return true;
    }
    match state.config.flush_policy {
        FlushPolicy::Always => true,
        FlushPolicy::Interval { messages, interval } => {
            // Kafka's flush.messages: records appended but not yet flushed.
            messages.is_some_and(|n| (state.next_offset - state.durable_offset) as u64 >= n)
                || interval.is_some_and(|i| state.oldest_unflushed.is_some_and(|t| t.elapsed() >= i))
        }
    }
}

/// Marker layout: magic "SXCS", version u16, reserved u16, active segment
/// base offset i64, active segment size u64, next offset i64, CRC32C u32 of
/// the preceding bytes. All big-endian.
pub(crate) fn encode_clean_shutdown(active_base: i64, active_size: u64, next_offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&CLEAN_SHUTDOWN_MAGIC);
    out.extend_from_slice(&CLEAN_SHUTDOWN_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&active_base.to_be_bytes());
    out.extend_from_slice(&active_size.to_be_bytes());
    out.extend_from_slice(&next_offset.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Log start offset file layout: magic "SXLS", version u16, reserved u16,
/// log start offset i64, CRC32C u32 of the preceding bytes. All big-endian.
pub(crate) fn encode_log_start_offset(log_start_offset: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&LOG_START_OFFSET_MAGIC);
    out.extend_from_slice(&LOG_START_OFFSET_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&log_start_offset.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The saved log start offset, if intact.
pub(crate) fn decode_log_start_offset(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != 20 || bytes[0..4] != LOG_START_OFFSET_MAGIC {
        return None;
    }
    if u16::from_be_bytes(bytes[4..6].try_into().ok()?) != LOG_START_OFFSET_VERSION {
        return None;
    }
    if crc32c::crc32c(&bytes[..16]) != u32::from_be_bytes(bytes[16..20].try_into().ok()?) {
        return None;
    }
    Some(i64::from_be_bytes(bytes[8..16].try_into().ok()?))
}

/// Reads the log start offset file. A damaged one is an error, not a
/// silent reset: it is written atomically, so damage means the disk lost
/// bytes, and guessing a lower start would resurrect deleted records.
async fn read_log_start_offset(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    let Some(bytes) = storage_file::read_small_file(&path).await? else {
        return Ok(None);
    };
    decode_log_start_offset(&bytes).map(Some).ok_or_else(|| EngineError::Corrupt {
        path,
        position: 0,
        offset: -1,
        reason: "log start offset file: bad magic, version, length or CRC".to_string(),
    })
}

/// The clean-shutdown marker's contents, if it is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanShutdown {
    pub(crate) active_base: i64,
    pub(crate) active_size: u64,
    pub(crate) next_offset: i64,
}

pub(crate) fn decode_clean_shutdown(bytes: &[u8]) -> Option<CleanShutdown> {
    if bytes.len() != 36 || bytes[0..4] != CLEAN_SHUTDOWN_MAGIC {
        return None;
    }
    if u16::from_be_bytes(bytes[4..6].try_into().ok()?) != CLEAN_SHUTDOWN_VERSION {
        return None;
    }
    if crc32c::crc32c(&bytes[..32]) != u32::from_be_bytes(bytes[32..36].try_into().ok()?) {
        return None;
    }
    Some(CleanShutdown {
        active_base: i64::from_be_bytes(bytes[8..16].try_into().ok()?),
        active_size: u64::from_be_bytes(bytes[16..24].try_into().ok()?),
        next_offset: i64::from_be_bytes(bytes[24..32].try_into().ok()?),
    })
}
