//! What a run measured, and the shared state the executors coordinate by.
//!
//! Each task records latencies into its own histograms ([`Recorder`]) and
//! merges them into the shared ones at most every [`MERGE_INTERVAL_NS`],
//! so the hot path takes no lock; counters are atomics added once per
//! batch (or per commit answered). The reporting thread swaps out the interval histograms once a
//! second for the progress line and keeps the per-second series for the
//! JSON result. Latencies are microseconds in the histograms (1 µs to one
//! hour, three significant digits) and milliseconds in every report.
//!
//! Records completed before the warm-up ends are shown in the progress
//! lines but left out of the totals.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::clock;

/// Highest latency a histogram holds; larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// How often a task folds its histograms into the shared ones.
pub const MERGE_INTERVAL_NS: u64 = 100 * clock::NS_PER_MS;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Produce (send to ack), end-to-end (send to consume), commit (an
/// OffsetCommit request's send to its answer) and transaction (a
/// transaction's first record to its EndTxn's answer) latencies.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub produce: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
    pub commit: Histogram<u64>,
    pub transaction: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            produce: new_histogram(),
            end_to_end: new_histogram(),
            commit: new_histogram(),
            transaction: new_histogram(),
        }
    }

    fn add(&mut self, other: &Latencies) {
        // Same bounds everywhere, so adding cannot fail.
        self.produce.add(&other.produce).expect("histograms with equal bounds");
        self.end_to_end.add(&other.end_to_end).expect("histograms with equal bounds");
        self.commit.add(&other.commit).expect("histograms with equal bounds");
        self.transaction.add(&other.transaction).expect("histograms with equal bounds");
    }

    fn reset(&mut self) {
        self.produce.reset();
        self.end_to_end.reset();
        self.commit.reset();
        self.transaction.reset();
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

/// Records and payload bytes (keys plus values).
#[derive(Debug, Default)]
pub struct Counter {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.records.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// OffsetCommit requests answered without error, and the partition offsets
/// they carried.
#[derive(Debug, Default)]
pub struct CommitCounter {
    pub requests: AtomicU64,
    pub offsets: AtomicU64,
}

impl CommitCounter {
    pub fn add(&self, requests: u64, offsets: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        self.offsets.fetch_add(offsets, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.offsets.load(Ordering::Relaxed))
    }
}

/// Shared by every executor and the reporting thread.
#[derive(Debug)]
pub struct Stats {
    pub warmup_ns: u64,
    /// When the first record was sent (or consumption began); 0 before.
    start_ns: AtomicU64,
    /// Every record acknowledged (or written, with acks=0) / consumed.
    pub produced: Counter,
    pub consumed: Counter,
    /// Those completed after the warm-up: the totals reported.
    pub produced_measured: Counter,
    pub consumed_measured: Counter,
    /// Every commit answered / those answered after the warm-up.
    pub committed: CommitCounter,
    pub committed_measured: CommitCounter,
    /// Per partition, the offset of the last commit answered (committers
    /// report theirs when they finish).
    last_committed: Mutex<BTreeMap<i32, i64>>,
    pub produce_errors: AtomicU64,
    /// Transactions committed / those after the warm-up / aborted.
    pub transactions: AtomicU64,
    pub transactions_measured: AtomicU64,
    pub transactions_aborted: AtomicU64,
    error_codes: Mutex<BTreeMap<i16, u64>>,
    failures: Mutex<Vec<String>>,
    interval: Mutex<Latencies>,
    total: Mutex<Latencies>,
    /// Producers stop when set (duration reached, or a task failed).
    stop: AtomicBool,
    /// Everything stops when set (a task failed, or consumers drained).
    abort: AtomicBool,
    pub consumers_ready: AtomicUsize,
    pub producers_done: AtomicUsize,
}

impl Stats {
    pub fn new(warmup_ns: u64) -> Stats {
        Stats {
            warmup_ns,
            start_ns: AtomicU64::new(0),
            produced: Counter::default(),
            consumed: Counter::default(),
            produced_measured: Counter::default(),
            consumed_measured: Counter::default(),
            committed: CommitCounter::default(),
            committed_measured: CommitCounter::default(),
            last_committed: Mutex::new(BTreeMap::new()),
            produce_errors: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            transactions_measured: AtomicU64::new(0),
            transactions_aborted: AtomicU64::new(0),
            error_codes: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(Vec::new()),
            interval: Mutex::new(Latencies::new()),
            total: Mutex::new(Latencies::new()),
            stop: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            consumers_ready: AtomicUsize::new(0),
            producers_done: AtomicUsize::new(0),
        }
    }

    /// Marks the start of the run (the first caller wins) and returns it.
    pub fn start(&self) -> u64 {
        let now = clock::now_ns();
        match self.start_ns.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => now,
            Err(earlier) => earlier,
        }
    }

    /// The start, or None before anything began.
    pub fn started_ns(&self) -> Option<u64> {
        Some(self.start_ns.load(Ordering::Acquire)).filter(|&start| start != 0)
    }

    /// Whether a completion at `now_ns` counts in the totals.
    pub fn is_measured(&self, now_ns: u64) -> bool {
        self.started_ns().is_some_and(|start| now_ns >= start + self.warmup_ns)
    }

    pub fn stop_producing(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub fn should_stop_producing(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.aborted()
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.stop_producing();
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// A task failed: the run stops and reports it.
    pub fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
        self.abort();
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    pub fn produce_error(&self, code: i16, records: u64) {
        self.produce_errors.fetch_add(records, Ordering::Relaxed);
        *self.error_codes.lock().unwrap().entry(code).or_default() += records;
    }

    /// A transaction ended after `latency_ns`: committed, or aborted
    /// because one of its batches failed. Once per transaction, so the
    /// histograms' lock is taken directly.
    pub fn transaction_ended(&self, committed: bool, latency_ns: u64, measured: bool) {
        if !committed {
            self.transactions_aborted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.transactions.fetch_add(1, Ordering::Relaxed);
        let micros = (latency_ns / 1_000).clamp(1, LATENCY_US_MAX);
        self.interval.lock().unwrap().transaction.saturating_record(micros);
        if measured {
            self.transactions_measured.fetch_add(1, Ordering::Relaxed);
            self.total.lock().unwrap().transaction.saturating_record(micros);
        }
    }

    pub fn error_codes(&self) -> BTreeMap<i16, u64> {
        self.error_codes.lock().unwrap().clone()
    }

    /// A committer's last acknowledged offset of each of its partitions.
    /// Committers sharing a partition overwrite each other's: the broker
    /// applies their commits in an order this client cannot see.
    pub fn report_last_committed(&self, offsets: &BTreeMap<i32, i64>) {
        self.last_committed.lock().unwrap().extend(offsets);
    }

    pub fn last_committed(&self) -> BTreeMap<i32, i64> {
        self.last_committed.lock().unwrap().clone()
    }

    fn merge(&self, interval: &Latencies, total: &Latencies) {
        self.interval.lock().unwrap().add(interval);
        self.total.lock().unwrap().add(total);
    }

    /// The latencies since the last call (for the progress line).
    pub fn take_interval(&self) -> Latencies {
        let mut interval = self.interval.lock().unwrap();
        let taken = interval.clone();
        interval.reset();
        taken
    }

    pub fn total(&self) -> Latencies {
        self.total.lock().unwrap().clone()
    }
}

/// One task's histograms, folded into [`Stats`] now and then.
#[derive(Debug)]
pub struct Recorder {
    interval: Latencies,
    total: Latencies,
    merged_ns: u64,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { interval: Latencies::new(), total: Latencies::new(), merged_ns: clock::now_ns() }
    }

    fn micros(latency_ns: u64) -> u64 {
        (latency_ns / 1_000).clamp(1, LATENCY_US_MAX)
    }

    pub fn produce(&mut self, latency_ns: u64, measured: bool) {
        let micros = Self::micros(latency_ns);
        self.interval.produce.saturating_record(micros);
        if measured {
            self.total.produce.saturating_record(micros);
        }
    }

    pub fn end_to_end(&mut self, latency_ns: u64, measured: bool) {
        let micros = Self::micros(latency_ns);
        self.interval.end_to_end.saturating_record(micros);
        if measured {
            self.total.end_to_end.saturating_record(micros);
        }
    }

    pub fn commit(&mut self, latency_ns: u64, measured: bool) {
        let micros = Self::micros(latency_ns);
        self.interval.commit.saturating_record(micros);
        if measured {
            self.total.commit.saturating_record(micros);
        }
    }

    /// Folds into the shared histograms if the last fold is old enough.
    pub fn maybe_merge(&mut self, stats: &Stats, now_ns: u64) {
        if now_ns >= self.merged_ns + MERGE_INTERVAL_NS {
            self.merge(stats, now_ns);
        }
    }

    pub fn merge(&mut self, stats: &Stats, now_ns: u64) {
        stats.merge(&self.interval, &self.total);
        self.interval.reset();
        self.total.reset();
        self.merged_ns = now_ns;
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// A latency distribution in milliseconds, as every report shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// None for an empty histogram.
    pub fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        let at = |quantile: f64| ms(histogram.value_at_quantile(quantile));
        Some(Percentiles {
            count: histogram.len(),
            avg_ms: histogram.mean() / 1_000.0,
            p50_ms: at(0.50),
            p75_ms: at(0.75),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            p9999_ms: at(0.9999),
            max_ms: ms(histogram.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_report_milliseconds_from_microseconds() {
        // Proves the histogram reports what was recorded: 1..=1000 ms
        // uniformly gives p50 ~500 ms, p99 ~990 ms, max ~1000 ms, within
        // the histogram's three significant digits.
        let mut recorder = Recorder::new();
        for ms in 1..=1000u64 {
            recorder.produce(ms * clock::NS_PER_MS, true);
        }
        let stats = Stats::new(0);
        recorder.merge(&stats, clock::now_ns());
        let p = Percentiles::of(&stats.total().produce).unwrap();
        assert_eq!(p.count, 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002 + 0.001;
        assert!(close(p.p50_ms, 500.0), "p50 {}", p.p50_ms);
        assert!(close(p.p99_ms, 990.0), "p99 {}", p.p99_ms);
        assert!(close(p.max_ms, 1000.0), "max {}", p.max_ms);
        assert!(close(p.avg_ms, 500.5), "avg {}", p.avg_ms);
        assert!(Percentiles::of(&stats.total().end_to_end).is_none());
    }

    #[test]
    fn warmup_records_stay_out_of_the_totals() {
        // Proves latencies recorded as not measured show in the interval
        // (progress) histograms but not in the totals, and that taking the
        // interval empties it.
        let stats = Stats::new(0);
        let mut recorder = Recorder::new();
        recorder.end_to_end(5 * clock::NS_PER_MS, false);
        recorder.end_to_end(7 * clock::NS_PER_MS, true);
        recorder.merge(&stats, clock::now_ns());
        assert_eq!(stats.total().end_to_end.len(), 1);
        assert_eq!(stats.take_interval().end_to_end.len(), 2);
        assert_eq!(stats.take_interval().end_to_end.len(), 0);
    }

    #[test]
    fn measurement_starts_after_the_warmup() {
        // Proves nothing counts before the start, and completions count
        // once the warm-up has passed.
        let stats = Stats::new(10 * clock::NS_PER_SEC);
        assert!(!stats.is_measured(clock::now_ns()));
        let start = stats.start();
        assert_eq!(stats.start(), start, "the first start wins");
        assert!(!stats.is_measured(start + clock::NS_PER_SEC));
        assert!(stats.is_measured(start + 10 * clock::NS_PER_SEC));
    }
}
