//! The command line. Defaults follow Kafka's producer and consumer where
//! they have one (batch 16 KiB, linger 5 ms, 5 requests in flight,
//! acks=all), so a run with no flags measures what a default client sees.
//! The commit workload's defaults (one partition per commit, one group) are
//! what a consumer committing after each poll sends.

use clap::{Parser, ValueEnum};
use protocol::compression::Codec;

use crate::batch::KeyMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Producers only.
    Produce,
    /// Consumers only (from --from; stop at --records, --duration or --to-end).
    Consume,
    /// Producers and consumers at once; end-to-end latency from the send
    /// time stamped into each record.
    E2e,
    /// OffsetCommit requests for one group (--group) from --committers
    /// connections: simple commits (generation -1, no member id), each of
    /// --commit-partitions partitions, acknowledged once durable.
    Commit,
    /// --consumers share consumers (KIP-932) in share group --group, taking
    /// records from the topic together and accepting each (from the
    /// earliest offset unless --from latest; stop at --records or --duration).
    ShareConsume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all", alias = "-1")]
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// Kafka-protocol throughput and latency benchmark.
#[derive(Debug, Clone, Parser)]
#[command(name = "stele-loadgen", version)]
pub struct Cli {
    /// What to run.
    #[arg(value_enum)]
    pub workload: Workload,
    /// A broker to discover the cluster from, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// Partitions of the topic when loadgen creates it (an existing topic keeps its own).
    #[arg(long, default_value_t = 16)]
    pub partitions: i32,
    /// A topic config for CreateTopics, KEY=VALUE (repeatable), e.g. segment.bytes=67108864.
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    pub topic_configs: Vec<(String, String)>,
    /// Value bytes per record (at least 8: the send-time stamp).
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    #[arg(long, value_enum, default_value_t = KeyMode::None)]
    pub keys: KeyMode,
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Target records per second over all producers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to measure, after the warm-up (60 when neither this nor --records is given).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Records to produce (produce, e2e) or consume (consume), or OffsetCommit
    /// requests to send (commit), warm-up included.
    #[arg(long)]
    pub records: Option<u64>,
    /// Seconds at the start that are shown but left out of the totals.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// A partition's batch is sent once it holds this many bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub batch_bytes: usize,
    /// Longest a record waits for its batch to fill.
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Idempotent producer (InitProducerId, sequence numbers); needs --acks all.
    #[arg(long)]
    pub idempotent: bool,
    /// Transactional producers: each commits a transaction every this many
    /// records (its own transactional id; sequence numbers as with
    /// --idempotent). Needs --acks all.
    #[arg(long)]
    pub transaction_records: Option<u64>,
    /// The transaction.timeout.ms transactional producers ask for.
    #[arg(long, default_value_t = 60_000)]
    pub transaction_timeout_ms: i32,
    /// Produce (or OffsetCommit) requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub in_flight: usize,
    /// Largest produce request.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub request_bytes_max: usize,
    /// Finished batches a producer may hold before it waits for the broker.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub buffer_bytes_max: usize,
    /// Produce timeout the broker is given.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: i32,
    /// Where consumers start (default: earliest for consume, latest for e2e).
    #[arg(long, value_enum)]
    pub from: Option<StartFrom>,
    /// Consume: stop once every partition reaches the end offset it had at the start.
    #[arg(long)]
    pub to_end: bool,
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: i32,
    #[arg(long, default_value_t = 1024 * 1024)]
    pub fetch_partition_bytes: i32,
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_bytes_max: i32,
    /// Commit: connections sending OffsetCommit requests, spread over --cores.
    #[arg(long, default_value_t = 1)]
    pub committers: usize,
    /// Commit: the group every committer commits for; share-consume: the share group.
    #[arg(long, default_value = "loadgen-commits")]
    pub group: String,
    /// Commit: partitions of the topic in each OffsetCommit request.
    #[arg(long, default_value_t = 1)]
    pub commit_partitions: usize,
    /// Executors (threads, one per core of the process's CPU set).
    #[arg(long, default_value_t = 1)]
    pub cores: usize,
    /// Write the result as JSON here (OpenMessaging-Benchmark-like field names).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds e2e consumers may take to catch up after the producers stop.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
    #[arg(long, default_value = "stele-loadgen")]
    pub client_id: String,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

impl Cli {
    /// Checks combinations that clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.record_size < crate::batch::STAMP_BYTES {
            return Err(format!("--record-size must be at least {} (the send-time stamp)", crate::batch::STAMP_BYTES));
        }
        if self.idempotent && self.acks != Acks::All {
            return Err("--idempotent needs --acks all".into());
        }
        if self.idempotent && self.in_flight > 5 {
            return Err("--idempotent allows at most 5 requests in flight (the broker keeps 5 batches)".into());
        }
        if let Some(records) = self.transaction_records {
            if records == 0 {
                return Err("--transaction-records must be positive".into());
            }
            if self.acks != Acks::All || self.in_flight > 5 {
                return Err("--transaction-records needs --acks all and at most 5 requests in flight".into());
            }
        }
        if self.cores == 0 || self.in_flight == 0 || self.partitions <= 0 {
            return Err("--cores, --in-flight and --partitions must be positive".into());
        }
        let producing = matches!(self.workload, Workload::Produce | Workload::E2e);
        let consuming = matches!(self.workload, Workload::Consume | Workload::E2e | Workload::ShareConsume);
        if (producing && self.producers == 0) || (consuming && self.consumers == 0) {
            return Err("the workload needs at least one producer and/or consumer".into());
        }
        if self.workload == Workload::ShareConsume && (self.group.is_empty() || self.to_end) {
            return Err("share-consume needs a --group and stops at --records or --duration (not --to-end)".into());
        }
        if self.workload == Workload::Commit {
            if self.committers == 0 || self.commit_partitions == 0 {
                return Err("--committers and --commit-partitions must be positive".into());
            }
            if self.group.is_empty() {
                return Err("--group cannot be empty".into());
            }
        }
        if self.rate < 0.0 || self.warmup < 0.0 || self.duration.is_some_and(|d| d <= 0.0) {
            return Err("--rate, --warmup and --duration cannot be negative".into());
        }
        if self.batch_bytes > self.request_bytes_max {
            return Err("--batch-bytes cannot exceed --request-bytes-max".into());
        }
        Ok(())
    }

    /// The measured duration, when the run is limited by time.
    pub fn duration_s(&self) -> Option<f64> {
        match (self.duration, self.records) {
            (Some(duration), _) => Some(duration),
            (None, Some(_)) => None,
            (None, None) if self.workload == Workload::Consume && self.to_end => None,
            (None, None) => Some(60.0),
        }
    }

    pub fn start_from(&self) -> StartFrom {
        self.from.unwrap_or(match self.workload {
            Workload::E2e => StartFrom::Latest,
            _ => StartFrom::Earliest,
        })
    }

    pub fn producer_count(&self) -> usize {
        match self.workload {
            Workload::Produce | Workload::E2e => self.producers,
            Workload::Consume | Workload::Commit | Workload::ShareConsume => 0,
        }
    }

    /// Consumers, or share consumers for `share-consume`.
    pub fn consumer_count(&self) -> usize {
        match self.workload {
            Workload::Consume | Workload::E2e | Workload::ShareConsume => self.consumers,
            Workload::Produce | Workload::Commit => 0,
        }
    }

    pub fn committer_count(&self) -> usize {
        if self.workload == Workload::Commit {
            self.committers
        } else {
            0
        }
    }
}
