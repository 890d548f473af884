//! A consumer: Fetch loops over its share of the partitions (partition i
//! goes to consumer i mod --consumers), one loop per leader with one fetch
//! in flight, as Kafka's consumers do. Counts records and payload bytes
//! and, for records stamped after it started, the end-to-end latency from
//! the send time in the value (see `batch`). Batches are checked (CRC)
//! and inflated with the protocol crate; control batches are skipped.
//!
//! It starts at the earliest or latest offset (ListOffsets) and stops when
//! the run says so: the duration is over, `--records` were consumed, every
//! partition reached the end it had at the start (`--to-end`), or, in e2e,
//! every record the producers got acknowledged has been read.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use protocol::messages::{ApiKey, BrokerId, FetchRequest, RequestKind, ResponseKind, TopicName};
use protocol::record_batch::batches;
use protocol::StrBytes;

use crate::batch::STAMP_BYTES;
use crate::cli::{Cli, StartFrom, Workload};
use crate::clock;
use crate::cluster::{self, error_name, Cluster, PartitionInfo};
use crate::connection::Connection;
use crate::stats::{Recorder, Stats};

/// Largest inflated size of one compressed batch.
const UNCOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
const OFFSET_OUT_OF_RANGE: i16 = 1;

struct PartitionPosition {
    info: PartitionInfo,
    position: i64,
    /// With --to-end: the log end offset when the consumer started.
    end: Option<i64>,
}

struct Fetcher {
    cli: Arc<Cli>,
    stats: Arc<Stats>,
    connection: Connection,
    topic_name: TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<PartitionPosition>,
    by_index: BTreeMap<i32, usize>,
    stamps_after_ns: u64,
    recorder: Recorder,
}

/// Runs consumer `index` until the run says stop.
pub async fn run(cli: Arc<Cli>, cluster: Arc<Cluster>, stats: Arc<Stats>, index: usize) -> anyhow::Result<()> {
    let consumers = cli.consumer_count();
    let stamps_after_ns = clock::now_ns();
    let mut fetchers = Vec::new();
    let prepared = async {
        for (leader, members) in cluster.by_leader(|i| i % consumers == index) {
            let infos: Vec<PartitionInfo> = members.iter().map(|&i| cluster.partitions[i]).collect();
            let mut connection = Connection::connect(cluster.broker_addr(leader)?, &cli.client_id).await?;
            let timestamp = match cli.start_from() {
                StartFrom::Earliest => cluster::EARLIEST,
                StartFrom::Latest => cluster::LATEST,
            };
            let starts = cluster::list_offsets(&mut connection, &cluster.topic, &infos, timestamp).await?;
            let ends = if cli.to_end {
                Some(cluster::list_offsets(&mut connection, &cluster.topic, &infos, cluster::LATEST).await?)
            } else {
                None
            };
            let partitions: Vec<PartitionPosition> = infos
                .iter()
                .map(|info| PartitionPosition {
                    info: *info,
                    position: starts[&info.index],
                    end: ends.as_ref().map(|ends| ends[&info.index]),
                })
                .collect();
            let by_index = partitions.iter().enumerate().map(|(i, p)| (p.info.index, i)).collect();
            fetchers.push(Fetcher {
                cli: cli.clone(),
                stats: stats.clone(),
                connection,
                topic_name: TopicName(StrBytes::from_string(cluster.topic.clone())),
                topic_id: cluster.topic_id,
                partitions,
                by_index,
                stamps_after_ns,
                recorder: Recorder::new(),
            });
        }
        anyhow::Ok(())
    }
    .await;
    stats.consumers_ready.fetch_add(1, Ordering::AcqRel);
    prepared?;
    if cli.workload == Workload::Consume {
        stats.start();
    }
    let tasks: Vec<_> = fetchers.into_iter().map(|f| glommio::spawn_local(f.run())).collect();
    let mut result = Ok(());
    for task in tasks {
        let outcome = task.await;
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

impl Fetcher {
    async fn run(mut self) -> anyhow::Result<()> {
        let result = self.fetch_until_done().await;
        self.recorder.merge(&self.stats, clock::now_ns());
        result
    }

    async fn fetch_until_done(&mut self) -> anyhow::Result<()> {
        while !self.done() {
            let request = self.request();
            if request.topics[0].partitions.is_empty() {
                // Every partition reached its end; others may still be consuming.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            let answer = self.connection.call(ApiKey::Fetch, RequestKind::Fetch(request)).await?;
            let ResponseKind::Fetch(response) = answer else { bail!("Fetch answered with another API") };
            if response.error_code != 0 {
                bail!("Fetch from {}: {}", self.connection.addr, error_name(response.error_code));
            }
            let now = clock::now_ns();
            let (mut records, mut bytes) = (0, 0);
            for topic in &response.responses {
                for partition in &topic.partitions {
                    let Some(&slot) = self.by_index.get(&partition.partition_index) else { continue };
                    match partition.error_code {
                        0 => {}
                        OFFSET_OUT_OF_RANGE => {
                            self.reset_to_earliest(slot).await?;
                            continue;
                        }
                        code => bail!(
                            "Fetch {}-{}: {}",
                            topic.topic.0.as_str(),
                            partition.partition_index,
                            error_name(code)
                        ),
                    }
                    if let Some(record_set) = &partition.records {
                        let (r, b) = self.consume(slot, record_set.clone(), now)?;
                        records += r;
                        bytes += b;
                    }
                }
            }
            self.stats.consumed.add(records, bytes);
            if self.stats.is_measured(now) {
                self.stats.consumed_measured.add(records, bytes);
            }
            self.recorder.maybe_merge(&self.stats, now);
        }
        Ok(())
    }

    fn done(&self) -> bool {
        let stats = &self.stats;
        if stats.aborted() {
            return true;
        }
        let consumed = stats.consumed.records.load(Ordering::Relaxed);
        match self.cli.workload {
            Workload::E2e => {
                let producers_done = stats.producers_done.load(Ordering::Acquire) == self.cli.producer_count();
                producers_done && consumed >= stats.produced.records.load(Ordering::Acquire)
            }
            _ => {
                let all_at_end = self.cli.to_end && self.stats_all_at_end();
                all_at_end || stats.should_stop_producing() || self.cli.records.is_some_and(|target| consumed >= target)
            }
        }
    }

    /// This fetcher's partitions have all reached their ends (other
    /// fetchers finish their own).
    fn stats_all_at_end(&self) -> bool {
        self.partitions.iter().all(|p| p.end.is_some_and(|end| p.position >= end))
    }

    fn request(&self) -> FetchRequest {
        let mut topic = FetchTopic::default();
        topic.topic = self.topic_name.clone();
        topic.topic_id = self.topic_id;
        topic.partitions = self
            .partitions
            .iter()
            .filter(|p| p.end.is_none_or(|end| p.position < end))
            .map(|p| {
                let mut partition = FetchPartition::default();
                partition.partition = p.info.index;
                partition.current_leader_epoch = p.info.leader_epoch;
                partition.fetch_offset = p.position;
                partition.partition_max_bytes = self.cli.fetch_partition_bytes;
                partition
            })
            .collect();
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = self.cli.fetch_max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = self.cli.fetch_bytes_max;
        request.topics = vec![topic];
        request
    }

    /// Counts the records of one partition's record set at or above its
    /// position, and moves the position past them. A partial batch at the
    /// end (a broker may cut one at the size limit) is left for the next
    /// fetch; damage before any progress is an error.
    fn consume(&mut self, slot: usize, record_set: Bytes, now_ns: u64) -> anyhow::Result<(u64, u64)> {
        let (mut records, mut bytes) = (0u64, 0u64);
        let measured = self.stats.is_measured(now_ns);
        let partition = &mut self.partitions[slot];
        let start_position = partition.position;
        for batch in batches(record_set, usize::MAX) {
            let batch = match batch {
                Ok(batch) => batch,
                Err(_) if partition.position > start_position => break,
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("partition {} at offset {}", partition.info.index, partition.position)
                    })
                }
            };
            batch.verify_crc().with_context(|| format!("partition {}", partition.info.index))?;
            if batch.last_offset() < partition.position {
                continue;
            }
            if !batch.is_control() {
                let base_offset = batch.base_offset();
                for record in batch.records(UNCOMPRESSED_BATCH_BYTES_MAX)? {
                    let record = record?;
                    if base_offset + i64::from(record.offset_delta) < partition.position {
                        continue;
                    }
                    records += 1;
                    bytes += record.key.as_ref().map_or(0, |k| k.len()) as u64;
                    let Some(value) = &record.value else { continue };
                    bytes += value.len() as u64;
                    if let Some(stamp) = value.get(..STAMP_BYTES) {
                        let stamp = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                        if stamp >= self.stamps_after_ns && stamp <= now_ns {
                            self.recorder.end_to_end(now_ns - stamp, measured);
                        }
                    }
                }
            }
            partition.position = batch.last_offset() + 1;
        }
        Ok((records, bytes))
    }

    async fn reset_to_earliest(&mut self, slot: usize) -> anyhow::Result<()> {
        let info = [self.partitions[slot].info];
        let topic = self.topic_name.0.to_string();
        let offsets = cluster::list_offsets(&mut self.connection, &topic, &info, cluster::EARLIEST).await?;
        self.partitions[slot].position = offsets[&info[0].index];
        Ok(())
    }
}
