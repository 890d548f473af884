//! Model-based property test of [`PartitionLog`]: random sequences of
//! appends, reads, timestamp lookups, retention, truncation, flushes, clean
//! reopens and simulated crashes, each checked against a plain in-memory list
//! of batches.
//!
//! The model knows nothing about segment boundaries; where the engine's
//! behaviour depends on them (retention) the test reads `segments()` before
//! and after and checks that what happened is consistent with the documented
//! policy and with the model's batches. Segment sizes are tiny so that rolls
//! happen all the time, and the shard's tail cache is sometimes tiny too so
//! that reads go to disk.
//!
//! No assertion depends on wall-clock time: `segment.ms` is either off or so
//! small relative to the (1970s) test timestamps that every append rolls,
//! the flush policy never uses an interval, and retention by age gets an
//! explicit `now_ms`. Each operation has a generous timeout only so that a
//! hang fails the test instead of stalling CI.
//!
//! `PROPTEST_CASES=N` runs more cases than the default 32; `MODEL_TRACE=1`
//! (with `--nocapture`) prints every case, operation and resulting log state.

mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use common::{batch, run, tags};
use engine::batch::HEADER_BYTES;
use engine::{
    BatchError, EngineError, FlushPolicy, LogConfig, LogRead, PartitionLog, SegmentInfo, ShardLimits, ShardResources,
};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Timestamps of the test batches start here (1970, so `segment.ms` of an
/// hour is always exceeded when it is set).
const TS_BASE: i64 = 1_000_000;
/// Spread of the random timestamps.
const TS_SPREAD: i64 = 4096;
/// Retention by age: `retention.ms` used by the age-retention operation.
const RETENTION_MS: i64 = 1000;
/// Longest any single operation may take before the test calls it a hang.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Generated input

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsMode {
    /// Each batch's timestamp is at or after the previous one.
    Monotone,
    /// Mostly increasing, sometimes stepping back.
    Jittery,
    /// Uniform in [TS_BASE, TS_BASE + TS_SPREAD).
    Random,
}

#[derive(Debug, Clone)]
struct Setup {
    segment_bytes_max: u64,
    index_interval_bytes: u32,
    /// `segment.ms` of one hour, which every test timestamp exceeds: the log
    /// rolls before every append into a non-empty segment.
    roll_every_append: bool,
    /// `None`: FlushPolicy::Always; `Some(n)`: fsync every n messages.
    flush_messages: Option<u64>,
    tail_cache_bytes_max: usize,
    write_chunk_bytes_max: usize,
    write_buffer_bytes_max: usize,
    writes_in_flight_max: usize,
    ts_mode: TsMode,
}

#[derive(Debug, Clone)]
struct BatchSpec {
    records: i32,
    payload_bytes: usize,
    /// Interpreted according to the case's [`TsMode`].
    ts_raw: u16,
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        batches: Vec<BatchSpec>,
        /// Wait for durability afterwards (flush under an interval policy,
        /// where waiting could take forever).
        wait: bool,
    },
    /// Several record sets appended by concurrent tasks; their order in the
    /// log is whatever order the engine staged them in.
    AppendConcurrently {
        sets: Vec<Vec<BatchSpec>>,
    },
    /// Offset mapped into [log start - 2, log end + 2], half the time onto a
    /// batch boundary; bound likewise.
    Read {
        offset_raw: u32,
        max_bytes: usize,
        bound_raw: Option<u32>,
    },
    /// Target mapped into a range a little wider than the timestamps used.
    OffsetForTimestamp {
        ts_raw: u16,
    },
    /// `retention.bytes` set to `percent` of the current log size.
    RetainBytes {
        percent: u8,
        flush: bool,
    },
    /// `retention.ms` = RETENTION_MS, `now_ms` chosen so that the cutoff
    /// falls inside the timestamps used.
    RetainAge {
        cutoff_raw: u16,
        flush: bool,
    },
    /// Offset mapped into [log start - 1, log end + 1], half the time onto a
    /// batch boundary.
    Truncate {
        offset_raw: u32,
    },
    SetLeaderEpoch(i32),
    Flush,
    Reopen,
    Crash,
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        // Mostly a few batches per segment, sometimes a dozen or more.
        prop_oneof![3 => 8192u64..16384, 1 => 16384u64..=65536],
        256u32..=4096,
        prop::bool::weighted(0.15),
        prop::option::weighted(0.3, 1u64..40),
        prop_oneof![Just(0usize), Just(8 << 10), Just(64 << 10), Just(1 << 20)],
        prop_oneof![Just(4096usize), Just(8192), Just(64 << 10), Just(256 << 10)],
        prop::bool::weighted(0.2),
        1usize..=4,
        prop_oneof![Just(TsMode::Monotone), Just(TsMode::Jittery), Just(TsMode::Random)],
    )
        .prop_map(|(seg, interval, roll, flush_messages, tail, chunk, small_buffer, in_flight, ts_mode)| Setup {
            segment_bytes_max: seg,
            index_interval_bytes: interval,
            roll_every_append: roll,
            flush_messages,
            tail_cache_bytes_max: tail,
            write_chunk_bytes_max: chunk,
            // A budget small enough that appends wait for writes, or plenty.
            // Not below 16 KiB: a partial-block carry (4 KiB) plus the
            // largest record set (~9 KiB) must fit, see
            // `append_larger_than_budget_minus_carry_hangs`.
            write_buffer_bytes_max: if small_buffer { (2 * chunk).max(16 << 10) } else { 8 << 20 },
            writes_in_flight_max: in_flight,
            ts_mode,
        })
}

fn batch_spec_strategy() -> impl Strategy<Value = BatchSpec> {
    (1i32..=20, 8usize..=3000, any::<u16>()).prop_map(|(records, payload_bytes, ts_raw)| BatchSpec {
        records,
        payload_bytes,
        ts_raw,
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => (prop::collection::vec(batch_spec_strategy(), 1..=3), prop::bool::weighted(0.2))
            .prop_map(|(batches, wait)| Op::Append { batches, wait }),
        2 => prop::collection::vec(prop::collection::vec(batch_spec_strategy(), 1..=2), 2..=4)
            .prop_map(|sets| Op::AppendConcurrently { sets }),
        6 => (any::<u32>(), 1usize..=200_000, prop::option::weighted(0.3, any::<u32>()))
            .prop_map(|(offset_raw, max_bytes, bound_raw)| Op::Read { offset_raw, max_bytes, bound_raw }),
        3 => any::<u16>().prop_map(|ts_raw| Op::OffsetForTimestamp { ts_raw }),
        3 => (prop_oneof![0u8..=60, 0u8..=100], any::<bool>())
            .prop_map(|(percent, flush)| Op::RetainBytes { percent, flush }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(cutoff_raw, flush)| Op::RetainAge { cutoff_raw, flush }),
        2 => any::<u32>().prop_map(|offset_raw| Op::Truncate { offset_raw }),
        1 => (0i32..5).prop_map(Op::SetLeaderEpoch),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

// ---------------------------------------------------------------------------
// The model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelBatch {
    base: i64,
    last: i64,
    max_ts: i64,
    tag: u64,
    size: usize,
    leader_epoch: i32,
}

#[derive(Debug, Default)]
struct Model {
    /// Retained batches, contiguous from `start` to `end`.
    batches: Vec<ModelBatch>,
    start: i64,
    end: i64,
    leader_epoch: i32,
    next_tag: u64,
    /// Timestamp of the last appended batch in the monotone modes.
    clock: i64,
    /// Smallest and largest timestamps ever appended (to pick lookup
    /// targets and retention cutoffs).
    ts_low: i64,
    ts_high: i64,
}

impl Model {
    fn new() -> Self {
        Model { clock: TS_BASE, ts_low: TS_BASE, ts_high: TS_BASE, ..Model::default() }
    }

    fn next_timestamp(&mut self, mode: TsMode, raw: u16) -> i64 {
        let raw = i64::from(raw);
        let ts = match mode {
            TsMode::Monotone => {
                self.clock += raw % 64;
                self.clock
            }
            TsMode::Jittery => {
                if raw % 5 == 0 {
                    (self.clock - raw % 700).max(0)
                } else {
                    self.clock += raw % 64;
                    self.clock
                }
            }
            TsMode::Random => TS_BASE + raw % TS_SPREAD,
        };
        self.ts_low = self.ts_low.min(ts);
        self.ts_high = self.ts_high.max(ts);
        ts
    }

    /// A timestamp in [lowest - 10, highest + 10] of those appended so far;
    /// for even `raw`, one of a retained batch's, give or take one.
    fn timestamp_in_range(&self, raw: u16) -> i64 {
        let raw = u64::from(raw);
        if raw % 2 == 0 && !self.batches.is_empty() {
            let b = &self.batches[(raw / 6) as usize % self.batches.len()];
            b.max_ts + (raw / 2 % 3) as i64 - 1
        } else {
            let span = (self.ts_high - self.ts_low + 21) as u64;
            self.ts_low - 10 + (raw / 2 % span) as i64
        }
    }

    /// An offset in [start - margin, end + margin]: for even `raw` a batch
    /// boundary (a batch's base offset or the log end, where segments and
    /// index entries begin), else any offset.
    fn offset_in_range(&self, raw: u32, margin: i64) -> i64 {
        let raw = u64::from(raw);
        if raw % 2 == 0 {
            let i = (raw / 2) as usize % (self.batches.len() + 1);
            self.batches.get(i).map_or(self.end, |b| b.base)
        } else {
            let span = (self.end - self.start + 2 * margin + 1) as u64;
            self.start - margin + (raw / 2 % span) as i64
        }
    }

    /// Index of the batch holding `offset` (or the first after it).
    fn index_of(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last < offset)
    }

    fn size_bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.size as u64).sum()
    }

    fn check_contiguous(&self) {
        let mut next = self.start;
        for b in &self.batches {
            assert_eq!(b.base, next, "model batches are contiguous");
            next = b.last + 1;
        }
        assert_eq!(next, self.end, "model ends after its last batch");
    }
}

// ---------------------------------------------------------------------------
// The harness: a log, its model, and how to reopen it

struct Harness {
    root: PathBuf,
    generation: u32,
    dir: PathBuf,
    setup: Setup,
    config: LogConfig,
    shard: Rc<ShardResources>,
    log: PartitionLog,
    model: Model,
}

fn log_config(setup: &Setup) -> LogConfig {
    LogConfig {
        segment_bytes_max: setup.segment_bytes_max,
        segment_age_max: setup.roll_every_append.then(|| Duration::from_secs(3600)),
        retention_bytes_max: None,
        retention_age_max: None,
        index_interval_bytes: setup.index_interval_bytes,
        flush_policy: match setup.flush_messages {
            None => FlushPolicy::Always,
            Some(n) => FlushPolicy::Interval { messages: Some(n), interval: None },
        },
        preallocate_bytes: 16 << 10,
    }
}

async fn timed<T>(what: impl std::fmt::Display, fut: impl Future<Output = T>) -> T {
    let timeout = async {
        glommio::timer::sleep(OP_TIMEOUT).await;
        None
    };
    match futures_lite::future::or(async { Some(fut.await) }, timeout).await {
        Some(value) => value,
        None => panic!("{what} did not finish within {OP_TIMEOUT:?}: the log hangs"),
    }
}

fn copy_dir_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

impl Harness {
    async fn new(root: PathBuf, setup: Setup) -> Self {
        let shard = ShardResources::new(ShardLimits {
            write_buffer_bytes_max: setup.write_buffer_bytes_max,
            tail_cache_bytes_max: setup.tail_cache_bytes_max,
            writes_in_flight_max: setup.writes_in_flight_max,
            write_chunk_bytes_max: setup.write_chunk_bytes_max,
        })
        .unwrap();
        let config = log_config(&setup);
        let dir = root.join("p0");
        let log = timed("open", PartitionLog::open(&dir, config.clone(), shard.clone())).await.unwrap();
        Harness { root, generation: 0, dir, setup, config, shard, log, model: Model::new() }
    }

    async fn apply(&mut self, step: usize, op: &Op) {
        let what = format!("step {step}: {op:?}");
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("TRACE {what}");
        }
        match op {
            Op::Append { batches, wait } => timed(&what, self.append(batches, *wait)).await,
            Op::AppendConcurrently { sets } => timed(&what, self.append_concurrently(sets)).await,
            Op::Read { offset_raw, max_bytes, bound_raw } => {
                let offset = self.model.offset_in_range(*offset_raw, 2);
                let bound = bound_raw.map(|raw| self.model.offset_in_range(raw, 2));
                timed(&what, self.check_read(offset, *max_bytes, bound)).await
            }
            Op::OffsetForTimestamp { ts_raw } => {
                let ts = self.model.timestamp_in_range(*ts_raw);
                timed(&what, self.check_offset_for_timestamp(ts)).await
            }
            Op::RetainBytes { percent, flush } => {
                if *flush {
                    timed(&what, self.flush()).await;
                }
                let bytes = self.log.size_bytes() * u64::from(*percent) / 100;
                let config = LogConfig { retention_bytes_max: Some(bytes), ..self.config.clone() };
                timed(&what, self.retention(config, 0)).await
            }
            Op::RetainAge { cutoff_raw, flush } => {
                if *flush {
                    timed(&what, self.flush()).await;
                }
                let cutoff = self.model.timestamp_in_range(*cutoff_raw);
                let config = LogConfig {
                    retention_age_max: Some(Duration::from_millis(RETENTION_MS as u64)),
                    ..self.config.clone()
                };
                timed(&what, self.retention(config, cutoff + RETENTION_MS)).await
            }
            Op::Truncate { offset_raw } => {
                let offset = self.model.offset_in_range(*offset_raw, 1);
                timed(&what, self.truncate(offset)).await
            }
            Op::SetLeaderEpoch(epoch) => {
                self.log.set_leader_epoch(*epoch);
                self.model.leader_epoch = *epoch;
            }
            Op::Flush => timed(&what, self.flush()).await,
            Op::Reopen => timed(&what, self.reopen(false)).await,
            Op::Crash => timed(&what, self.reopen(true)).await,
        }
        self.check_invariants(&what);
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!(
                "TRACE   -> start {} durable {} end {} buffers {} cache {} stats {:?} segs {:?}",
                self.log.log_start_offset(),
                self.log.durable_offset(),
                self.log.log_end_offset(),
                self.shard.write_buffer_bytes(),
                self.shard.tail_cache_bytes(),
                self.log.stats(),
                self.log
                    .segments()
                    .iter()
                    .map(|s| (s.base_offset, s.next_offset, s.size_bytes, s.sealed))
                    .collect::<Vec<_>>()
            );
        }
    }

    async fn append(&mut self, specs: &[BatchSpec], wait: bool) {
        let mut records = BytesMut::new();
        let mut pending = Vec::new();
        let mut base = self.model.end;
        for spec in specs {
            let ts = self.model.next_timestamp(self.setup.ts_mode, spec.ts_raw);
            let tag = self.model.next_tag;
            self.model.next_tag += 1;
            let bytes = batch(spec.records, ts, tag, spec.payload_bytes);
            assert_eq!(bytes.len(), HEADER_BYTES + spec.payload_bytes);
            pending.push(ModelBatch {
                base,
                last: base + i64::from(spec.records) - 1,
                max_ts: ts,
                tag,
                size: bytes.len(),
                leader_epoch: self.model.leader_epoch,
            });
            base += i64::from(spec.records);
            records.extend_from_slice(&bytes);
        }
        let len = records.len();
        let result = self.log.append(records.freeze()).await;
        if len as u64 > self.config.segment_bytes_max {
            match result {
                Err(EngineError::InvalidBatch(BatchError::TooLarge { .. })) => {}
                other => panic!("a {len}-byte record set must be refused as too large, got {other:?}"),
            }
            return;
        }
        let info = result.unwrap();
        assert_eq!(info.base_offset, self.model.end, "append base offset");
        assert_eq!(info.last_offset, base - 1, "append last offset");
        assert_eq!(info.batches, specs.len());
        assert_eq!(info.max_timestamp, pending.iter().map(|b| b.max_ts).max().unwrap());
        self.model.batches.extend(pending);
        self.model.end = base;
        if wait {
            if self.setup.flush_messages.is_none() {
                self.log.wait_durable(self.model.end).await.unwrap();
            } else {
                self.log.flush().await.unwrap();
            }
            assert!(self.log.durable_offset() >= self.model.end);
        }
    }

    async fn append_concurrently(&mut self, sets: &[Vec<BatchSpec>]) {
        // Build every record set first (timestamps and tags in set order),
        // then let the engine order them.
        let mut pending = Vec::new();
        let mut tasks = Vec::new();
        for specs in sets {
            let mut records = BytesMut::new();
            let mut batches = Vec::new();
            for spec in specs {
                let ts = self.model.next_timestamp(self.setup.ts_mode, spec.ts_raw);
                let tag = self.model.next_tag;
                self.model.next_tag += 1;
                let bytes = batch(spec.records, ts, tag, spec.payload_bytes);
                batches.push((spec.records, ts, tag, bytes.len()));
                records.extend_from_slice(&bytes);
            }
            let len = records.len();
            let log = self.log.clone();
            tasks.push(glommio::spawn_local(async move { log.append(records.freeze()).await }));
            pending.push((len, batches));
        }
        let mut appended = Vec::new();
        for (task, (len, batches)) in tasks.into_iter().zip(pending) {
            let result = task.await;
            if len as u64 > self.config.segment_bytes_max {
                assert!(
                    matches!(result, Err(EngineError::InvalidBatch(BatchError::TooLarge { .. }))),
                    "a {len}-byte record set must be refused as too large, got {result:?}"
                );
                continue;
            }
            let info = result.unwrap();
            assert_eq!(info.batches, batches.len());
            appended.push((info, batches));
        }
        appended.sort_by_key(|(info, _)| info.base_offset);
        for (info, batches) in appended {
            assert_eq!(info.base_offset, self.model.end, "concurrent appends get contiguous offsets");
            let mut base = info.base_offset;
            for (records, ts, tag, size) in batches {
                let last = base + i64::from(records) - 1;
                let leader_epoch = self.model.leader_epoch;
                self.model.batches.push(ModelBatch { base, last, max_ts: ts, tag, size, leader_epoch });
                base = last + 1;
            }
            assert_eq!(info.last_offset, base - 1);
            self.model.end = base;
        }
    }

    async fn flush(&mut self) {
        self.log.flush().await.unwrap();
        assert_eq!(self.log.durable_offset(), self.model.end, "flush makes everything durable");
        // Not checked: that rolled segments are sealed once flush() returns.
        // The flusher seals after the fsync that flush() waits for.
    }

    /// Checks a read of `offset` against the model.
    async fn check_read(&self, offset: i64, max_bytes: usize, bound: Option<i64>) {
        let model = &self.model;
        let result = self.log.read(offset, max_bytes, bound).await;
        if offset < model.start || offset > model.end {
            match result {
                Err(EngineError::OffsetOutOfRange { offset: o, log_start_offset, log_end_offset }) => {
                    assert_eq!((o, log_start_offset, log_end_offset), (offset, model.start, model.end));
                }
                other => panic!(
                    "read({offset}) outside [{}, {}] must be OffsetOutOfRange, got {:?}",
                    model.start,
                    model.end,
                    other.map(|r| summarize(&r))
                ),
            }
            return;
        }
        let read = result.unwrap_or_else(|err| panic!("read({offset}, {max_bytes}, {bound:?}) failed: {err}"));
        assert_eq!(read.log_start_offset, model.start);
        assert_eq!(read.log_end_offset, model.end);
        assert!(read.durable_offset >= model.start && read.durable_offset <= model.end);
        let got = summarize(&read);
        let limit = bound.unwrap_or(i64::MAX).min(model.end);
        let first = model.index_of(offset);
        // A reader at or past the bound (a consumer at the high watermark)
        // gets nothing, even from a batch that straddles the bound.
        let wanted: Vec<ModelBatch> = if offset >= limit {
            Vec::new()
        } else {
            model.batches[first..].iter().take_while(|b| b.base < limit).copied().collect()
        };
        let context = || {
            format!(
                "read({offset}, max_bytes {max_bytes}, bound {bound:?}) in log [{}, {}]: got {got:?}, model from \
                 there {wanted:?}",
                model.start, model.end
            )
        };
        if wanted.is_empty() {
            assert!(got.is_empty(), "{}", context());
            return;
        }
        assert!(!got.is_empty(), "a read below the bound returns at least one batch: {}", context());
        assert!(got.len() <= wanted.len() && got[..] == wanted[..got.len()], "{}", context());
        let total: usize = got.iter().map(|b| b.size).sum();
        assert_eq!(total, read.size_bytes());
        assert!(got.len() == 1 || total <= max_bytes, "read exceeds max_bytes: {}", context());
    }

    async fn check_offset_for_timestamp(&self, ts: i64) {
        let found = self.log.offset_for_timestamp(ts).await.unwrap();
        let expected = self.model.batches.iter().find(|b| b.max_ts >= ts);
        match (found, expected) {
            (None, None) => {}
            (Some(found), Some(expected)) => {
                let batch = LogRead { records: vec![found.batch.clone()], ..LogRead::default() };
                let got = summarize(&batch);
                assert_eq!(
                    (found.base_offset, found.max_timestamp, &got[..]),
                    (expected.base, expected.max_ts, &[*expected][..]),
                    "offset_for_timestamp({ts})"
                );
            }
            (found, expected) => panic!(
                "offset_for_timestamp({ts}): got {:?}, model says {expected:?}",
                found.map(|f| (f.base_offset, f.max_timestamp))
            ),
        }
    }

    /// Runs retention under `config` and checks the deleted segments against
    /// the documented policy and the model.
    async fn retention(&mut self, config: LogConfig, now_ms: i64) {
        self.log.set_config(config.clone()).unwrap();
        let before = self.log.segments();
        let expected = expected_retention(&before, &config, now_ms);
        let deleted = self.log.apply_retention(now_ms).await.unwrap();
        self.log.set_config(self.config.clone()).unwrap();
        let after = self.log.segments();
        assert_eq!(deleted, expected, "segments deleted by retention (now {now_ms}, {config:?}) from {before:?}");
        assert_eq!(
            after.iter().map(segment_key).collect::<Vec<_>>(),
            before[deleted..].iter().map(segment_key).collect::<Vec<_>>(),
            "retention deletes a prefix of the segments and leaves the rest alone"
        );
        let new_start = after[0].base_offset;
        assert_eq!(self.log.log_start_offset(), new_start);
        assert!(new_start >= self.model.start);
        let cut = self.model.index_of(new_start);
        assert!(self.model.batches.get(cut).is_none_or(|b| b.base == new_start), "retention cuts at a batch boundary");
        if new_start > self.model.start {
            self.model.batches.drain(..cut);
            self.model.start = new_start;
            match self.log.read(new_start - 1, 1 << 20, None).await {
                Err(EngineError::OffsetOutOfRange { .. }) => {}
                other => panic!("read below the new log start must fail, got {:?}", other.map(|r| summarize(&r))),
            }
        }
        self.check_all().await;
    }

    async fn truncate(&mut self, offset: i64) {
        let result = self.log.truncate_to(offset).await;
        if offset < self.model.start {
            assert!(matches!(result, Err(EngineError::OffsetOutOfRange { .. })), "truncate_to({offset}): {result:?}");
            return;
        }
        let new_end = result.unwrap();
        let cut = self.model.batches.partition_point(|b| b.last < offset);
        if cut < self.model.batches.len() {
            self.model.end = self.model.batches[cut].base;
            self.model.batches.truncate(cut);
            assert_eq!(self.log.durable_offset(), self.model.end, "what remains after a truncation is durable");
        }
        assert_eq!(new_end, self.model.end, "truncate_to({offset}) returns the new log end");
        self.check_all().await;
    }

    /// Reopens the log: cleanly (close, open) or as after a kill -9 once
    /// everything was flushed (the files copied while the log is open).
    async fn reopen(&mut self, crash: bool) {
        self.log.flush().await.unwrap();
        if crash {
            self.generation += 1;
            let copy = self.root.join(format!("p{}", self.generation));
            copy_dir_files(&self.dir, &copy);
            assert!(!copy.join(engine::partition_log::CLEAN_SHUTDOWN_FILE).exists());
            self.log.close().await.unwrap();
            self.dir = copy;
        } else {
            self.log.close().await.unwrap();
        }
        assert_eq!(self.shard.write_buffer_bytes(), 0, "a closed log holds no write buffers");
        assert_eq!(self.shard.tail_cache_bytes(), 0, "a closed log holds no tail cache");
        self.log = PartitionLog::open(&self.dir, self.config.clone(), self.shard.clone()).await.unwrap();
        self.model.leader_epoch = 0;
        assert_eq!(self.log.log_start_offset(), self.model.start, "log start survives a reopen");
        assert_eq!(self.log.log_end_offset(), self.model.end, "flushed data survives a reopen");
        assert_eq!(self.log.durable_offset(), self.model.end);
        self.check_all().await;
    }

    /// Reads the whole log and compares it with the model.
    async fn check_all(&self) {
        let model = &self.model;
        let mut got = Vec::new();
        let mut offset = model.start;
        while offset < model.end {
            let read = self.log.read(offset, 64 << 10, None).await.unwrap();
            let batches = summarize(&read);
            assert!(!batches.is_empty(), "read({offset}) below the log end returned nothing");
            offset = batches.last().unwrap().last + 1;
            got.extend(batches);
        }
        assert_eq!(got, model.batches, "the whole log matches the model");
        self.check_invariants("check_all");
    }

    fn check_invariants(&self, what: &str) {
        let model = &self.model;
        model.check_contiguous();
        let log = &self.log;
        let (start, durable, end) = (log.log_start_offset(), log.durable_offset(), log.log_end_offset());
        assert_eq!((start, end), (model.start, model.end), "{what}: log start and end match the model");
        assert!(start <= durable && durable <= end, "{what}: start {start} <= durable {durable} <= end {end}");
        let segments = log.segments();
        assert!(!segments.is_empty(), "{what}: a log has an active segment");
        assert_eq!(segments[0].base_offset, start, "{what}: the first segment starts at the log start");
        assert_eq!(segments.last().unwrap().next_offset, end, "{what}: the last segment ends at the log end");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].next_offset, pair[1].base_offset, "{what}: segments are contiguous: {segments:?}");
        }
        for (i, s) in segments.iter().enumerate() {
            let first = model.index_of(s.base_offset);
            let inside: Vec<&ModelBatch> =
                model.batches[first..].iter().take_while(|b| b.base < s.next_offset).collect();
            let context = || format!("{what}: segment {s:?} of {segments:?} holds model batches {inside:?}");
            if inside.is_empty() {
                assert_eq!(s.next_offset, s.base_offset, "{}", context());
                assert_eq!((s.size_bytes, s.max_timestamp), (0, -1), "{}", context());
                assert_eq!(i, segments.len() - 1, "only the active segment may be empty: {}", context());
                continue;
            }
            assert_eq!(inside[0].base, s.base_offset, "segments start at batch boundaries: {}", context());
            assert_eq!(inside.last().unwrap().last + 1, s.next_offset, "{}", context());
            assert_eq!(s.size_bytes, inside.iter().map(|b| b.size as u64).sum::<u64>(), "{}", context());
            assert_eq!(s.max_timestamp, inside.iter().map(|b| b.max_ts).max().unwrap(), "{}", context());
        }
        assert_eq!(log.size_bytes(), model.size_bytes(), "{what}: log size");
    }
}

/// What a segment holds, without the `sealed` flag (the flusher may seal a
/// segment at any await).
fn segment_key(s: &SegmentInfo) -> (i64, i64, u64, i64) {
    (s.base_offset, s.next_offset, s.size_bytes, s.max_timestamp)
}

/// The number of segments `apply_retention` should delete, per its doc:
/// oldest first, never the active one, only sealed ones, while the log is
/// larger than `retention.bytes` without it or its newest record is older
/// than `retention.ms`.
fn expected_retention(segments: &[SegmentInfo], config: &LogConfig, now_ms: i64) -> usize {
    let mut total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let mut deleted = 0;
    for s in &segments[..segments.len() - 1] {
        let too_big = config.retention_bytes_max.is_some_and(|max| total - s.size_bytes >= max);
        let too_old = config
            .retention_age_max
            .is_some_and(|age| s.max_timestamp >= 0 && s.max_timestamp < now_ms - age.as_millis() as i64);
        if !(s.sealed && (too_big || too_old)) {
            break;
        }
        total -= s.size_bytes;
        deleted += 1;
    }
    deleted
}

/// The batches of a read, as the model describes them; checks each CRC.
fn summarize(read: &LogRead) -> Vec<ModelBatch> {
    let headers = read.batch_headers();
    let tags = tags(read);
    let mut bytes = Vec::new();
    for run in &read.records {
        bytes.extend_from_slice(run);
    }
    let mut at = 0;
    headers
        .iter()
        .zip(tags)
        .map(|(h, tag)| {
            let checked = engine::batch::validate_batch(&bytes[at..at + h.size_bytes], 0, h.size_bytes)
                .unwrap_or_else(|err| panic!("a read returned a damaged batch at offset {}: {err}", h.base_offset));
            assert_eq!(checked.base_offset, h.base_offset);
            at += h.size_bytes;
            ModelBatch {
                base: h.base_offset,
                last: h.last_offset(),
                max_ts: h.max_timestamp,
                tag,
                size: h.size_bytes,
                leader_epoch: h.partition_leader_epoch,
            }
        })
        .collect()
}

fn run_case(setup: Setup, ops: Vec<Op>) {
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().to_path_buf();
    run(move || async move {
        if std::env::var_os("MODEL_TRACE").is_some() {
            eprintln!("TRACE case {setup:?}");
        }
        let mut h = Harness::new(root_path, setup).await;
        h.check_invariants("open");
        for (step, op) in ops.iter().enumerate() {
            h.apply(step, op).await;
        }
        timed("final check", h.check_all()).await;
        timed("final close", h.log.close()).await.unwrap();
        assert_eq!(h.shard.write_buffer_bytes(), 0, "a closed log holds no write buffers");
        assert_eq!(h.shard.tail_cache_bytes(), 0, "a closed log holds no tail cache");
        let reopened = timed("final open", PartitionLog::open(&h.dir, h.config.clone(), h.shard.clone())).await;
        h.log = reopened.unwrap();
        timed("final check after reopen", h.check_all()).await;
        timed("final close after reopen", h.log.close()).await.unwrap();
    });
    drop(root);
}

fn proptest_config() -> ProptestConfig {
    let defaults = ProptestConfig::default();
    ProptestConfig {
        // PROPTEST_CASES overrides the CI-friendly default.
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { defaults.cases } else { 32 },
        // Failures are reported with their shrunk input; do not write
        // regression files next to the sources.
        failure_persistence: None,
        ..defaults
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn partition_log_matches_model(setup in setup_strategy(), ops in prop::collection::vec(op_strategy(), 1..=40)) {
        run_case(setup, ops);
    }
}

/// The flusher's carried partial block (4 KiB per log) stays in memory for
/// as long as the log is idle. It used to be charged to the shard's write
/// budget, so an append that did not fit next to it waited forever for
/// budget nothing would release. Here: an 8 KiB budget, one small flushed
/// batch, then a ~4.2 KiB batch, which must go through.
#[test]
fn an_idle_logs_carried_block_does_not_hold_the_write_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    run(move || async move {
        let shard = ShardResources::new(ShardLimits {
            write_buffer_bytes_max: 8192,
            tail_cache_bytes_max: 1 << 20,
            writes_in_flight_max: 1,
            write_chunk_bytes_max: 4096,
        })
        .unwrap();
        let log = PartitionLog::open(&path, common::small_config(), shard.clone()).await.unwrap();
        log.append(batch(1, TS_BASE, 0, 100)).await.unwrap();
        log.flush().await.unwrap();
        assert_eq!(shard.write_buffer_bytes(), 0, "the carried partial block is outside the budget");
        timed("append next to the carry", log.append(batch(1, TS_BASE, 1, 4200))).await.unwrap();
        log.close().await.unwrap();
    });
}

/// Distilled from a failing case of the property test: after a reopen the
/// log reloads the partial last block; a write round rewrites it while the
/// next append lands in the same block and a later round rewrites it again.
/// Everything flushed must be there after a clean reopen. Whether a broken
/// engine shows the problem depends on I/O timing, hence the repetitions.
#[test]
fn flushed_batches_survive_rewrites_of_a_reloaded_partial_block() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        run(move || async move {
            let shard = ShardResources::new(ShardLimits {
                write_buffer_bytes_max: 8 << 20,
                tail_cache_bytes_max: 1 << 20,
                writes_in_flight_max: 3,
                write_chunk_bytes_max: 256 << 10,
            })
            .unwrap();
            let config = LogConfig {
                flush_policy: FlushPolicy::Interval { messages: Some(1000), interval: None },
                ..common::small_config()
            };
            let log = PartitionLog::open(&path, config.clone(), shard.clone()).await.unwrap();
            // Sizes from the failing case: the segment ends at byte 4202,
            // 6614 and 8282 after each batch.
            log.append(batch(1, TS_BASE, 0, 4202 - HEADER_BYTES)).await.unwrap();
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config.clone(), shard.clone()).await.unwrap();
            log.append(batch(1, TS_BASE, 1, 2412 - HEADER_BYTES)).await.unwrap();
            // Awaiting a disk read lets the flusher start writing batch 1.
            log.read(0, 100, None).await.unwrap();
            log.append(batch(1, TS_BASE, 2, 1668 - HEADER_BYTES)).await.unwrap();
            log.flush().await.unwrap();
            assert_eq!(log.durable_offset(), 3);
            log.close().await.unwrap();
            let log = PartitionLog::open(&path, config, shard).await.unwrap();
            assert_eq!(log.log_end_offset(), 3, "repetition {round}: flushed batches lost at reopen");
            let read = log.read(0, 1 << 20, None).await.unwrap();
            assert_eq!(tags(&read), vec![0, 1, 2], "repetition {round}");
            log.close().await.unwrap();
        });
    }
}
