//! What the user sees: a progress line per second while the run goes, one
//! summary line per direction at the end (in the style of Kafka's
//! kafka-producer-perf-test), and the JSON result (`--json`), whose field
//! names follow the OpenMessaging Benchmark's result files (the commit
//! workload's fields are named in the same style).
//!
//! MiB/s counts payload bytes (keys and values), 1 MiB = 1048576 bytes,
//! as Kafka's perf tools do. Commits count requests (commits/s) and the
//! partition offsets they carry (offsets/s). Totals cover the measured
//! window: from the end of the warm-up to the end of the run.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Cli, Workload};
use crate::clock::{self, NS_PER_SEC};
use crate::cluster::{error_name, Cluster};
use crate::stats::{Percentiles, Stats};
use crate::{workload_name, TICK};

const MIB: f64 = 1024.0 * 1024.0;

/// One second of the run, for the JSON series.
#[derive(Debug, Clone, Default)]
struct Sample {
    publish_rate: f64,
    publish_bytes_rate: f64,
    consume_rate: f64,
    consume_bytes_rate: f64,
    publish_p50_ms: Option<f64>,
    publish_p99_ms: Option<f64>,
    end_to_end_p50_ms: Option<f64>,
    end_to_end_p99_ms: Option<f64>,
    commit_rate: f64,
    commit_offsets_rate: f64,
    commit_p50_ms: Option<f64>,
    commit_p99_ms: Option<f64>,
    transaction_rate: f64,
    transaction_p50_ms: Option<f64>,
    transaction_p99_ms: Option<f64>,
}

/// The counters a progress line differences: (records, bytes) produced and
/// consumed, (requests, offsets) committed, transactions committed.
#[derive(Debug, Clone, Copy)]
struct Counts {
    produced: (u64, u64),
    consumed: (u64, u64),
    committed: (u64, u64),
    transactions: u64,
}

impl Counts {
    fn of(stats: &Stats) -> Counts {
        Counts {
            produced: stats.produced.get(),
            consumed: stats.consumed.get(),
            committed: stats.committed.get(),
            transactions: stats.transactions.load(Ordering::Relaxed),
        }
    }
}

/// What the watcher saw.
pub struct Outcome {
    samples: Vec<Sample>,
    /// End of the measured window.
    end_ns: u64,
    drain_timed_out: bool,
}

/// Runs on the main thread until `finished()`: stops the producers and
/// committers at the deadline, gives e2e consumers `--drain-timeout` to catch up, prints a
/// progress line every second.
pub fn watch(cli: &Cli, stats: &Stats, finished: impl Fn() -> bool) -> Outcome {
    let mut samples = Vec::new();
    let mut next_line = Instant::now() + Duration::from_secs(1);
    let mut last_counts = Counts::of(stats);
    let mut last_line = Instant::now();
    let mut stopped_at_ns = None;
    let mut producers_done_at = None;
    let mut drain_timed_out = false;
    while !finished() {
        std::thread::sleep(TICK);
        let now_ns = clock::now_ns();
        if let (Some(start), Some(duration)) = (stats.started_ns(), cli.duration_s()) {
            let deadline = start + stats.warmup_ns + (duration * 1e9) as u64;
            if stopped_at_ns.is_none() && now_ns >= deadline {
                stats.stop_producing();
                stopped_at_ns = Some(now_ns);
            }
        }
        if cli.workload == Workload::E2e && stats.producers_done.load(Ordering::Acquire) == cli.producer_count() {
            let since = *producers_done_at.get_or_insert_with(Instant::now);
            if !drain_timed_out && since.elapsed().as_secs_f64() > cli.drain_timeout {
                drain_timed_out = true;
                stats.abort();
            }
        }
        if Instant::now() >= next_line {
            let elapsed = last_line.elapsed().as_secs_f64();
            last_line = Instant::now();
            next_line += Duration::from_secs(1);
            let counts = Counts::of(stats);
            let sample = sample(stats, last_counts, counts, elapsed);
            last_counts = counts;
            if !cli.quiet {
                println!("{}", progress_line(cli, stats, &sample));
            }
            samples.push(sample);
        }
    }
    // A run stopped by its deadline is measured up to the deadline (what
    // was in flight then still counts); otherwise up to its last record.
    let end_ns = stopped_at_ns.unwrap_or_else(clock::now_ns);
    Outcome { samples, end_ns, drain_timed_out }
}

fn sample(stats: &Stats, last: Counts, now: Counts, seconds: f64) -> Sample {
    let rate = |then: u64, now: u64| (now - then) as f64 / seconds.max(1e-9);
    let interval = stats.take_interval();
    let publish = Percentiles::of(&interval.produce);
    let end_to_end = Percentiles::of(&interval.end_to_end);
    let commit = Percentiles::of(&interval.commit);
    let transaction = Percentiles::of(&interval.transaction);
    Sample {
        publish_rate: rate(last.produced.0, now.produced.0),
        publish_bytes_rate: rate(last.produced.1, now.produced.1),
        consume_rate: rate(last.consumed.0, now.consumed.0),
        consume_bytes_rate: rate(last.consumed.1, now.consumed.1),
        publish_p50_ms: publish.map(|p| p.p50_ms),
        publish_p99_ms: publish.map(|p| p.p99_ms),
        end_to_end_p50_ms: end_to_end.map(|p| p.p50_ms),
        end_to_end_p99_ms: end_to_end.map(|p| p.p99_ms),
        commit_rate: rate(last.committed.0, now.committed.0),
        commit_offsets_rate: rate(last.committed.1, now.committed.1),
        commit_p50_ms: commit.map(|p| p.p50_ms),
        commit_p99_ms: commit.map(|p| p.p99_ms),
        transaction_rate: rate(last.transactions, now.transactions),
        transaction_p50_ms: transaction.map(|p| p.p50_ms),
        transaction_p99_ms: transaction.map(|p| p.p99_ms),
    }
}

fn progress_line(cli: &Cli, stats: &Stats, sample: &Sample) -> String {
    let elapsed = stats.started_ns().map_or(0.0, |start| clock::now_ns().saturating_sub(start) as f64 / 1e9);
    let warm = if stats.is_measured(clock::now_ns()) { "" } else { " (warm-up)" };
    let ms = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let mut line = format!("{elapsed:6.1} s{warm}");
    if cli.producer_count() > 0 {
        line += &format!(
            "  produce {:.0} rec/s {:.2} MiB/s p50 {} ms p99 {} ms",
            sample.publish_rate,
            sample.publish_bytes_rate / MIB,
            ms(sample.publish_p50_ms),
            ms(sample.publish_p99_ms)
        );
    }
    if cli.producer_count() > 0 && cli.transaction_records.is_some() {
        line += &format!(
            "  txn {:.0}/s p50 {} ms p99 {} ms",
            sample.transaction_rate,
            ms(sample.transaction_p50_ms),
            ms(sample.transaction_p99_ms)
        );
    }
    if cli.consumer_count() > 0 {
        line += &format!("  consume {:.0} rec/s {:.2} MiB/s", sample.consume_rate, sample.consume_bytes_rate / MIB);
        if cli.workload == Workload::E2e {
            line += &format!(" e2e p50 {} ms p99 {} ms", ms(sample.end_to_end_p50_ms), ms(sample.end_to_end_p99_ms));
        }
    }
    if cli.committer_count() > 0 {
        line += &format!(
            "  commit {:.0} commits/s {:.0} offsets/s p50 {} ms p99 {} ms",
            sample.commit_rate,
            sample.commit_offsets_rate,
            ms(sample.commit_p50_ms),
            ms(sample.commit_p99_ms)
        );
    }
    line
}

/// Prints the summary, writes the JSON, and says whether the run succeeded.
pub fn finish(cli: &Cli, cluster: &Cluster, stats: &Stats, outcome: Outcome) -> anyhow::Result<bool> {
    let start = stats.started_ns().unwrap_or(outcome.end_ns);
    let window_s = (outcome.end_ns.saturating_sub(start + stats.warmup_ns) as f64 / NS_PER_SEC as f64).max(1e-9);
    let totals = stats.total();
    let publish = Percentiles::of(&totals.produce);
    let end_to_end = Percentiles::of(&totals.end_to_end);
    let (produced, produced_bytes) = stats.produced_measured.get();
    let (consumed, consumed_bytes) = stats.consumed_measured.get();
    if cli.producer_count() > 0 {
        println!("{}", produce_summary(produced, produced_bytes, window_s, publish));
        if let Some(records) = cli.transaction_records {
            let committed = stats.transactions_measured.load(Ordering::Relaxed);
            let aborted = stats.transactions_aborted.load(Ordering::Relaxed);
            let latency = Percentiles::of(&totals.transaction);
            println!("{}", transaction_summary(committed, aborted, records, window_s, latency));
        }
    }
    if cli.consumer_count() > 0 {
        println!("{}", consume_summary(consumed, consumed_bytes, window_s, end_to_end));
    }
    if cli.committer_count() > 0 {
        let (commits, offsets) = stats.committed_measured.get();
        println!("{}", commit_summary(commits, offsets, window_s, Percentiles::of(&totals.commit)));
    }
    let errors = stats.error_codes();
    for (code, records) in &errors {
        eprintln!("produce errors: {records} records failed with {}", error_name(*code));
    }
    let mut failures = stats.failures();
    let (all_produced, _) = stats.produced.get();
    let (all_consumed, _) = stats.consumed.get();
    if cli.workload == Workload::E2e && all_consumed < all_produced {
        let waited = if outcome.drain_timed_out { format!(" within {} s", cli.drain_timeout) } else { String::new() };
        failures.push(format!("consumed {all_consumed} of the {all_produced} records produced{waited}"));
    }
    for failure in &failures {
        eprintln!("stele-loadgen: {failure}");
    }
    if let Some(path) = &cli.json {
        let result = json_result(cli, cluster, stats, &outcome, window_s);
        let text = serde_json::to_string_pretty(&result)?;
        std::fs::write(path, text + "\n")
            .map_err(|err| anyhow::anyhow!("cannot write the JSON result to {}: {err}", path.display()))?;
    }
    Ok(failures.is_empty() && errors.is_empty())
}

fn produce_summary(records: u64, bytes: u64, seconds: f64, latency: Option<Percentiles>) -> String {
    let mut line = format!(
        "{records} records sent, {:.1} records/sec ({:.2} MiB/sec)",
        records as f64 / seconds,
        bytes as f64 / MIB / seconds
    );
    match latency {
        Some(p) => {
            line += &format!(
                ", {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms \
                 99.9th.",
                p.avg_ms, p.max_ms, p.p50_ms, p.p95_ms, p.p99_ms, p.p999_ms
            )
        }
        None => line += ".",
    }
    line
}

fn transaction_summary(
    committed: u64,
    aborted: u64,
    records: u64,
    seconds: f64,
    latency: Option<Percentiles>,
) -> String {
    let mut line = format!(
        "{committed} transactions committed ({aborted} aborted), {:.1} transactions/sec of {records} records",
        committed as f64 / seconds
    );
    if let Some(p) = latency {
        line += &format!(
            ", first record to commit {:.2} ms avg, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms max",
            p.avg_ms, p.p50_ms, p.p99_ms, p.max_ms
        );
    }
    line + "."
}

fn consume_summary(records: u64, bytes: u64, seconds: f64, latency: Option<Percentiles>) -> String {
    let mut line = format!(
        "{records} records consumed, {:.1} records/sec ({:.2} MiB/sec)",
        records as f64 / seconds,
        bytes as f64 / MIB / seconds
    );
    if let Some(p) = latency {
        line += &format!(
            ", end-to-end {:.2} ms avg, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms 99.9th, {:.2} ms 99.99th, {:.2} ms max",
            p.avg_ms, p.p50_ms, p.p99_ms, p.p999_ms, p.p9999_ms, p.max_ms
        );
    }
    line + "."
}

fn commit_summary(commits: u64, offsets: u64, seconds: f64, latency: Option<Percentiles>) -> String {
    let mut line = format!(
        "{commits} commits acknowledged, {:.1} commits/sec ({:.1} partition offsets/sec)",
        commits as f64 / seconds,
        offsets as f64 / seconds
    );
    match latency {
        Some(p) => {
            line += &format!(
                ", {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 95th, {:.2} ms 99th, {:.2} ms \
                 99.9th.",
                p.avg_ms, p.max_ms, p.p50_ms, p.p95_ms, p.p99_ms, p.p999_ms
            )
        }
        None => line += ".",
    }
    line
}

/// OMB's aggregated latency fields for one distribution, under `prefix`
/// ("aggregatedPublishLatency", "aggregatedEndToEndLatency"): milliseconds,
/// null when nothing was measured.
fn latency_fields(object: &mut serde_json::Map<String, Value>, prefix: &str, latency: Option<Percentiles>) {
    let fields = [
        ("Avg", latency.map(|p| p.avg_ms)),
        ("50pct", latency.map(|p| p.p50_ms)),
        ("75pct", latency.map(|p| p.p75_ms)),
        ("95pct", latency.map(|p| p.p95_ms)),
        ("99pct", latency.map(|p| p.p99_ms)),
        ("999pct", latency.map(|p| p.p999_ms)),
        ("9999pct", latency.map(|p| p.p9999_ms)),
        ("Max", latency.map(|p| p.max_ms)),
    ];
    for (suffix, value) in fields {
        object.insert(format!("{prefix}{suffix}"), json!(value));
    }
}

fn json_result(cli: &Cli, cluster: &Cluster, stats: &Stats, outcome: &Outcome, window_s: f64) -> Value {
    let totals = stats.total();
    let (produced, produced_bytes) = stats.produced_measured.get();
    let (consumed, consumed_bytes) = stats.consumed_measured.get();
    let series = |f: fn(&Sample) -> Value| Value::Array(outcome.samples.iter().map(f).collect());
    let mut result = json!({
        "workload": workload_name(cli.workload),
        "driver": "stele-loadgen",
        "bootstrap": cli.bootstrap,
        "topic": cluster.topic,
        "topics": 1,
        "partitionsPerTopic": cluster.partitions.len(),
        "messageSize": cli.record_size,
        "keyDistributor": format!("{:?}", cli.keys).to_lowercase(),
        "producersPerTopic": cli.producer_count(),
        "consumersPerTopic": cli.consumer_count(),
        "producerRate": cli.rate,
        "acks": cli.acks.wire(),
        "compression": format!("{:?}", cli.compression).to_lowercase(),
        "idempotent": cli.idempotent,
        "batchBytes": cli.batch_bytes,
        "lingerMs": cli.linger_ms,
        "cores": cli.cores,
        "warmupSeconds": cli.warmup,
        "durationSeconds": window_s,
        "messagesProduced": produced,
        "bytesProduced": produced_bytes,
        "messagesConsumed": consumed,
        "bytesConsumed": consumed_bytes,
        "publishErrors": stats.produce_errors.load(Ordering::Relaxed),
        "aggregatedPublishRate": produced as f64 / window_s,
        "aggregatedPublishThroughputBytes": produced_bytes as f64 / window_s,
        "aggregatedConsumeRate": consumed as f64 / window_s,
        "aggregatedConsumeThroughputBytes": consumed_bytes as f64 / window_s,
        "publishRate": series(|s| json!(s.publish_rate)),
        "publishThroughputBytes": series(|s| json!(s.publish_bytes_rate)),
        "consumeRate": series(|s| json!(s.consume_rate)),
        "consumeThroughputBytes": series(|s| json!(s.consume_bytes_rate)),
        "publishLatency50pct": series(|s| json!(s.publish_p50_ms)),
        "publishLatency99pct": series(|s| json!(s.publish_p99_ms)),
        "endToEndLatency50pct": series(|s| json!(s.end_to_end_p50_ms)),
        "endToEndLatency99pct": series(|s| json!(s.end_to_end_p99_ms)),
        "failures": stats.failures(),
    });
    let object = result.as_object_mut().expect("an object");
    latency_fields(object, "aggregatedPublishLatency", Percentiles::of(&totals.produce));
    latency_fields(object, "aggregatedEndToEndLatency", Percentiles::of(&totals.end_to_end));
    commit_fields(object, cli, stats, outcome, window_s);
    transaction_fields(object, cli, stats, outcome, window_s);
    result
}

/// The transactional producer's fields (null or zero without
/// `--transaction-records`, so that one schema reads every result).
fn transaction_fields(
    object: &mut serde_json::Map<String, Value>,
    cli: &Cli,
    stats: &Stats,
    outcome: &Outcome,
    window_s: f64,
) {
    let committed = stats.transactions_measured.load(Ordering::Relaxed);
    let series = |f: fn(&Sample) -> Value| Value::Array(outcome.samples.iter().map(f).collect());
    let fields = [
        ("transactionRecords", json!(cli.transaction_records)),
        ("transactions", json!(committed)),
        ("transactionsAborted", json!(stats.transactions_aborted.load(Ordering::Relaxed))),
        ("aggregatedTransactionRate", json!(committed as f64 / window_s)),
        ("transactionRate", series(|s| json!(s.transaction_rate))),
        ("transactionLatency50pct", series(|s| json!(s.transaction_p50_ms))),
        ("transactionLatency99pct", series(|s| json!(s.transaction_p99_ms))),
    ];
    for (key, value) in fields {
        object.insert(key.to_owned(), value);
    }
    latency_fields(object, "aggregatedTransactionLatency", Percentiles::of(&stats.total().transaction));
}

/// The commit workload's fields: settings, counts, rates, latency and the
/// last offset answered per partition (present, zero or empty, for every
/// workload, so that one schema reads them all).
fn commit_fields(
    object: &mut serde_json::Map<String, Value>,
    cli: &Cli,
    stats: &Stats,
    outcome: &Outcome,
    window_s: f64,
) {
    let (commits, offsets) = stats.committed_measured.get();
    let series = |f: fn(&Sample) -> Value| Value::Array(outcome.samples.iter().map(f).collect());
    let last: serde_json::Map<String, Value> =
        stats.last_committed().into_iter().map(|(partition, offset)| (partition.to_string(), json!(offset))).collect();
    let fields = [
        ("group", json!(cli.group)),
        ("committers", json!(cli.committer_count())),
        ("commitPartitions", json!(cli.commit_partitions)),
        ("inFlight", json!(cli.in_flight)),
        ("commits", json!(commits)),
        ("commitOffsets", json!(offsets)),
        ("aggregatedCommitRate", json!(commits as f64 / window_s)),
        ("aggregatedCommitOffsetRate", json!(offsets as f64 / window_s)),
        ("commitRate", series(|s| json!(s.commit_rate))),
        ("commitOffsetRate", series(|s| json!(s.commit_offsets_rate))),
        ("commitLatency50pct", series(|s| json!(s.commit_p50_ms))),
        ("commitLatency99pct", series(|s| json!(s.commit_p99_ms))),
        ("lastCommittedOffsets", Value::Object(last)),
    ];
    for (key, value) in fields {
        object.insert(key.to_owned(), value);
    }
    latency_fields(object, "aggregatedCommitLatency", Percentiles::of(&stats.total().commit));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_read_like_kafkas_perf_test() {
        // Proves the summary carries counts, rates, MiB/s and percentiles
        // in kafka-producer-perf-test's order, and omits latency when none
        // was measured.
        let p = Percentiles {
            count: 10,
            avg_ms: 1.5,
            p50_ms: 1.0,
            p75_ms: 1.2,
            p95_ms: 2.0,
            p99_ms: 3.0,
            p999_ms: 4.0,
            p9999_ms: 5.0,
            max_ms: 6.0,
        };
        let line = produce_summary(2000, 2 * 1024 * 1024, 2.0, Some(p));
        assert_eq!(
            line,
            "2000 records sent, 1000.0 records/sec (1.00 MiB/sec), 1.50 ms avg latency, 6.00 ms max latency, 1.00 ms \
             50th, 2.00 ms 95th, 3.00 ms 99th, 4.00 ms 99.9th."
        );
        assert_eq!(consume_summary(10, 0, 1.0, None), "10 records consumed, 10.0 records/sec (0.00 MiB/sec).");
        assert_eq!(
            commit_summary(400, 800, 2.0, Some(p)),
            "400 commits acknowledged, 200.0 commits/sec (400.0 partition offsets/sec), 1.50 ms avg latency, 6.00 ms \
             max latency, 1.00 ms 50th, 2.00 ms 95th, 3.00 ms 99th, 4.00 ms 99.9th."
        );
        assert_eq!(
            commit_summary(0, 0, 1.0, None),
            "0 commits acknowledged, 0.0 commits/sec (0.0 partition offsets/sec)."
        );
        assert_eq!(
            transaction_summary(50, 1, 100, 2.0, Some(p)),
            "50 transactions committed (1 aborted), 25.0 transactions/sec of 100 records, first record to commit \
             1.50 ms avg, 1.00 ms 50th, 3.00 ms 99th, 6.00 ms max."
        );
    }
}
