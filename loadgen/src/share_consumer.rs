//! A share consumer (KIP-932, workload `share-consume`): a member of the
//! share group `--group` that takes records from the topic's partitions
//! together with the other members, however many there are, and accepts
//! each record it got, as a Kafka share consumer in implicit
//! acknowledgement mode does.
//!
//! Each consumer is one member: ShareGroupHeartbeat v1 with a member id it
//! made up (a UUID), epoch 0 to join, then heartbeats every interval the
//! coordinator asks for, from a task of its own on its own connection.
//! Once it has an assignment, it sends ShareFetch to each leader of its
//! partitions over one connection per leader (one share session each:
//! epoch 0 opens it, then 1, 2, ...), one fetch in flight per session. Every
//! fetch carries the acknowledgements (ACCEPT) of what the previous one
//! acquired, so the queue advances without extra requests. At the end a
//! ShareAcknowledge with epoch -1 accepts the last records and closes the
//! session, and a heartbeat with epoch -1 leaves the group.
//!
//! Only acquired offsets count: a batch in a ShareFetch answer may hold
//! records acquired by other members; those are skipped. With `--from
//! earliest` the first consumer sets the group's `share.auto.offset.reset`
//! to `earliest` (IncrementalAlterConfigs on the GROUP resource) before
//! anyone joins, since a new share group starts at the latest offset.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use protocol::messages::share_acknowledge_request::{AcknowledgePartition, AcknowledgeTopic};
use protocol::messages::share_fetch_request::{AcknowledgementBatch, FetchPartition, FetchTopic};
use protocol::messages::{
    ApiKey, GroupId, IncrementalAlterConfigsRequest, RequestKind, ResponseKind, ShareAcknowledgeRequest,
    ShareFetchRequest, ShareGroupHeartbeatRequest, TopicName,
};
use protocol::record_batch::batches;
use protocol::StrBytes;
use uuid::Uuid;

use crate::cli::{Cli, StartFrom};
use crate::clock;
use crate::cluster::{self, error_name, Cluster};
use crate::connection::Connection;
use crate::stats::Stats;

/// Largest inflated size of one compressed batch.
const UNCOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Kafka's accept acknowledgement type.
const ACCEPT: i8 = 1;
/// The share session epoch that closes a session.
const FINAL_EPOCH: i32 = -1;
/// Kafka's ConfigResource type for groups, and the SET operation.
const RESOURCE_GROUP: i8 = 32;
const OP_SET: i8 = 0;
/// Records asked per ShareFetch (librdkafka's share consumer default).
const MAX_RECORDS: i32 = 500;
/// How long a member waits for its first assignment.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(60);

/// What the heartbeat task shares with the fetchers.
struct Membership {
    member_id: String,
    epoch: Cell<i32>,
    /// Assigned partition indexes of the topic.
    assigned: RefCell<Vec<i32>>,
    interval_ms: Cell<i32>,
}

/// Runs share consumer `index` until the run says stop.
pub async fn run(cli: Arc<Cli>, cluster: Arc<Cluster>, stats: Arc<Stats>, index: usize) -> anyhow::Result<()> {
    let coordinator = {
        let mut bootstrap = Connection::connect(&cli.bootstrap, &cli.client_id).await?;
        if index == 0 && cli.start_from() == StartFrom::Earliest {
            set_group_config(&mut bootstrap, &cli.group, "share.auto.offset.reset", "earliest").await?;
        }
        cluster::find_coordinator(&mut bootstrap, cluster::KEY_TYPE_GROUP, &cli.group).await?
    };
    let mut heartbeats = Connection::connect(&coordinator, &cli.client_id)
        .await
        .with_context(|| format!("connecting to the coordinator of share group {}", cli.group))?;
    let membership = Rc::new(Membership {
        member_id: member_id(index).to_string(),
        epoch: Cell::new(0),
        assigned: RefCell::new(Vec::new()),
        interval_ms: Cell::new(5000),
    });
    heartbeat(&mut heartbeats, &cli, &cluster, &membership, true).await?;
    let deadline = std::time::Instant::now() + ASSIGNMENT_WAIT;
    while membership.assigned.borrow().is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("share consumer {index}: no assignment within {ASSIGNMENT_WAIT:?}");
        }
        glommio::timer::sleep(Duration::from_millis(membership.interval_ms.get().clamp(10, 1000) as u64)).await;
        heartbeat(&mut heartbeats, &cli, &cluster, &membership, false).await?;
    }
    stats.consumers_ready.fetch_add(1, Ordering::AcqRel);
    // Everyone measures from the moment all members have partitions.
    let mut last_heartbeat = std::time::Instant::now();
    while stats.consumers_ready.load(Ordering::Acquire) < cli.consumer_count() && !stats.aborted() {
        glommio::timer::sleep(Duration::from_millis(5)).await;
        if last_heartbeat.elapsed() >= Duration::from_millis(membership.interval_ms.get().max(0) as u64) {
            last_heartbeat = std::time::Instant::now();
            heartbeat(&mut heartbeats, &cli, &cluster, &membership, false).await?;
        }
    }
    stats.start();
    let stop_heartbeats = Rc::new(Cell::new(false));
    let beating = glommio::spawn_local(heartbeat_until_stopped(
        heartbeats,
        cli.clone(),
        cluster.clone(),
        membership.clone(),
        stop_heartbeats.clone(),
    ));
    let mut fetchers = Vec::new();
    for (leader, _) in cluster.by_leader(|_| true) {
        let connection = Connection::connect(cluster.broker_addr(leader)?, &cli.client_id).await?;
        let fetcher = Fetcher {
            cli: cli.clone(),
            stats: stats.clone(),
            connection,
            cluster: cluster.clone(),
            leader,
            membership: membership.clone(),
            session_epoch: 0,
            to_accept: BTreeMap::new(),
        };
        fetchers.push(glommio::spawn_local(fetcher.run()));
    }
    let mut result = Ok(());
    for fetcher in fetchers {
        let outcome = fetcher.await;
        if result.is_ok() {
            result = outcome;
        }
    }
    stop_heartbeats.set(true);
    let left = beating.await;
    result.and(left)
}

async fn set_group_config(connection: &mut Connection, group: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let mut config = AlterableConfig::default();
    config.name = StrBytes::from_string(key.to_owned());
    config.config_operation = OP_SET;
    config.value = Some(StrBytes::from_string(value.to_owned()));
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = RESOURCE_GROUP;
    resource.resource_name = StrBytes::from_string(group.to_owned());
    resource.configs = vec![config];
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let answer =
        connection.call(ApiKey::IncrementalAlterConfigs, RequestKind::IncrementalAlterConfigs(request)).await?;
    let ResponseKind::IncrementalAlterConfigs(response) = answer else {
        bail!("IncrementalAlterConfigs answered with another API")
    };
    for result in &response.responses {
        if result.error_code != 0 {
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            bail!("setting {key}={value} on share group {group}: {} {message}", error_name(result.error_code));
        }
    }
    Ok(())
}

/// One ShareGroupHeartbeat; `join` sends the subscription (epoch 0),
/// later ones only the epoch, as Kafka's share consumer does.
async fn heartbeat(
    connection: &mut Connection,
    cli: &Cli,
    cluster: &Cluster,
    membership: &Membership,
    join: bool,
) -> anyhow::Result<()> {
    let mut request = ShareGroupHeartbeatRequest::default();
    request.group_id = GroupId(StrBytes::from_string(cli.group.clone()));
    request.member_id = StrBytes::from_string(membership.member_id.clone());
    request.member_epoch = membership.epoch.get();
    if join {
        request.subscribed_topic_names = Some(vec![TopicName(StrBytes::from_string(cluster.topic.clone()))]);
    }
    let answer = connection.call(ApiKey::ShareGroupHeartbeat, RequestKind::ShareGroupHeartbeat(request)).await?;
    let ResponseKind::ShareGroupHeartbeat(response) = answer else {
        bail!("ShareGroupHeartbeat answered with another API")
    };
    if response.error_code != 0 {
        let message = response.error_message.as_ref().map_or("", |m| m.as_str());
        bail!("ShareGroupHeartbeat for share group {}: {} {message}", cli.group, error_name(response.error_code));
    }
    membership.epoch.set(response.member_epoch);
    membership.interval_ms.set(response.heartbeat_interval_ms);
    if let Some(assignment) = &response.assignment {
        let mut assigned: Vec<i32> = assignment
            .topic_partitions
            .iter()
            .filter(|topic| topic.topic_id == cluster.topic_id)
            .flat_map(|topic| topic.partitions.iter().copied())
            .collect();
        assigned.sort_unstable();
        *membership.assigned.borrow_mut() = assigned;
    }
    Ok(())
}

/// Heartbeats every interval until told to stop, then leaves the group.
async fn heartbeat_until_stopped(
    mut connection: Connection,
    cli: Arc<Cli>,
    cluster: Arc<Cluster>,
    membership: Rc<Membership>,
    stop: Rc<Cell<bool>>,
) -> anyhow::Result<()> {
    let mut since_ms = 0;
    while !stop.get() {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        since_ms += 10;
        if since_ms >= membership.interval_ms.get() {
            since_ms = 0;
            heartbeat(&mut connection, &cli, &cluster, &membership, false).await?;
        }
    }
    membership.epoch.set(-1);
    heartbeat(&mut connection, &cli, &cluster, &membership, false).await
}

/// One share session with one leader.
struct Fetcher {
    cli: Arc<Cli>,
    stats: Arc<Stats>,
    connection: Connection,
    cluster: Arc<Cluster>,
    leader: i32,
    membership: Rc<Membership>,
    session_epoch: i32,
    /// Per partition, the offset ranges acquired and not yet accepted.
    to_accept: BTreeMap<i32, Vec<(i64, i64)>>,
}

impl Fetcher {
    /// The assigned partitions this fetcher's leader leads.
    fn partitions(&self) -> Vec<i32> {
        let assigned = self.membership.assigned.borrow();
        self.cluster
            .partitions
            .iter()
            .filter(|p| p.leader == self.leader && assigned.contains(&p.index))
            .map(|p| p.index)
            .collect()
    }

    fn done(&self) -> bool {
        let consumed = self.stats.consumed.records.load(Ordering::Relaxed);
        self.stats.should_stop_producing() || self.cli.records.is_some_and(|target| consumed >= target)
    }

    async fn run(mut self) -> anyhow::Result<()> {
        while !self.done() {
            let partitions = self.partitions();
            if partitions.is_empty() && self.to_accept.is_empty() {
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
            self.fetch(&partitions).await?;
        }
        self.close().await
    }

    async fn fetch(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let mut topic = FetchTopic::default();
        topic.topic_id = self.cluster.topic_id;
        let mut wanted: Vec<i32> = partitions.to_vec();
        // Acknowledgements of partitions no longer assigned still go out.
        wanted.extend(self.to_accept.keys().filter(|p| !partitions.contains(p)).copied().collect::<Vec<_>>());
        for index in wanted {
            let mut partition = FetchPartition::default();
            partition.partition_index = index;
            partition.partition_max_bytes = self.cli.fetch_partition_bytes;
            partition.acknowledgement_batches = take_accepted(&mut self.to_accept, index)
                .into_iter()
                .map(|(first, last)| {
                    let mut batch = AcknowledgementBatch::default();
                    batch.first_offset = first;
                    batch.last_offset = last;
                    batch.acknowledge_types = vec![ACCEPT];
                    batch
                })
                .collect();
            topic.partitions.push(partition);
        }
        let mut request = ShareFetchRequest::default();
        request.group_id = Some(GroupId(StrBytes::from_string(self.cli.group.clone())));
        request.member_id = Some(StrBytes::from_string(self.membership.member_id.clone()));
        request.share_session_epoch = self.session_epoch;
        request.max_wait_ms = self.cli.fetch_max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = self.cli.fetch_bytes_max;
        request.max_records = MAX_RECORDS;
        request.batch_size = MAX_RECORDS;
        request.topics = vec![topic];
        let answer = self.connection.call(ApiKey::ShareFetch, RequestKind::ShareFetch(request)).await?;
        let ResponseKind::ShareFetch(response) = answer else { bail!("ShareFetch answered with another API") };
        if response.error_code != 0 {
            let message = response.error_message.as_ref().map_or("", |m| m.as_str());
            bail!("ShareFetch from {}: {} {message}", self.connection.addr, error_name(response.error_code));
        }
        self.session_epoch = next_epoch(self.session_epoch);
        let now = clock::now_ns();
        let (mut records, mut bytes) = (0, 0);
        for topic in &response.responses {
            for partition in &topic.partitions {
                let index = partition.partition_index;
                if partition.acknowledge_error_code != 0 {
                    bail!(
                        "ShareFetch acknowledgement on partition {index}: {}",
                        error_name(partition.acknowledge_error_code)
                    );
                }
                if partition.error_code != 0 {
                    bail!("ShareFetch partition {index}: {}", error_name(partition.error_code));
                }
                let acquired: Vec<(i64, i64)> =
                    partition.acquired_records.iter().map(|r| (r.first_offset, r.last_offset)).collect();
                if acquired.is_empty() {
                    continue;
                }
                let (r, b) = count_acquired(partition.records.clone().unwrap_or_default(), &acquired)
                    .with_context(|| format!("partition {index}"))?;
                records += r;
                bytes += b;
                self.to_accept.entry(index).or_default().extend(acquired);
            }
        }
        self.stats.consumed.add(records, bytes);
        if self.stats.is_measured(now) {
            self.stats.consumed_measured.add(records, bytes);
        }
        Ok(())
    }

    /// Accepts what is left and closes the session.
    async fn close(mut self) -> anyhow::Result<()> {
        if self.session_epoch == 0 {
            return Ok(()); // never opened
        }
        let partitions: Vec<i32> = self.to_accept.keys().copied().collect();
        let mut topic = AcknowledgeTopic::default();
        topic.topic_id = self.cluster.topic_id;
        for index in partitions {
            let mut partition = AcknowledgePartition::default();
            partition.partition_index = index;
            partition.acknowledgement_batches = take_accepted(&mut self.to_accept, index)
                .into_iter()
                .map(|(first, last)| {
                    let mut batch = protocol::messages::share_acknowledge_request::AcknowledgementBatch::default();
                    batch.first_offset = first;
                    batch.last_offset = last;
                    batch.acknowledge_types = vec![ACCEPT];
                    batch
                })
                .collect();
            topic.partitions.push(partition);
        }
        let mut request = ShareAcknowledgeRequest::default();
        request.group_id = Some(GroupId(StrBytes::from_string(self.cli.group.clone())));
        request.member_id = Some(StrBytes::from_string(self.membership.member_id.clone()));
        request.share_session_epoch = FINAL_EPOCH;
        if !topic.partitions.is_empty() {
            request.topics = vec![topic];
        }
        let answer = self.connection.call(ApiKey::ShareAcknowledge, RequestKind::ShareAcknowledge(request)).await?;
        let ResponseKind::ShareAcknowledge(response) = answer else {
            bail!("ShareAcknowledge answered with another API")
        };
        if response.error_code != 0 {
            bail!("closing the share session: {}", error_name(response.error_code));
        }
        for topic in &response.responses {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    bail!(
                        "ShareAcknowledge partition {}: {}",
                        partition.partition_index,
                        error_name(partition.error_code)
                    );
                }
            }
        }
        Ok(())
    }
}

/// A member id no other member has: Kafka's share consumer makes up a
/// random UUID; std's per-process random hash keys stand in for a random
/// source here, mixed with the clock and the consumer's index.
fn member_id(index: usize) -> Uuid {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(clock::now_ns());
    hasher.write_usize(index);
    hasher.write_u32(std::process::id());
    let high = hasher.finish();
    hasher.write_u64(high);
    Uuid::from_u64_pair(high, hasher.finish())
}

/// The ranges of `partition` to accept next, sorted, adjacent ones joined
/// (one acknowledgement batch each), and forgotten in `to_accept`.
fn take_accepted(to_accept: &mut BTreeMap<i32, Vec<(i64, i64)>>, partition: i32) -> Vec<(i64, i64)> {
    let mut ranges = to_accept.remove(&partition).unwrap_or_default();
    ranges.sort_unstable();
    let mut joined: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match joined.last_mut() {
            Some(previous) if previous.1 + 1 == first => previous.1 = last,
            _ => joined.push((first, last)),
        }
    }
    joined
}

/// Share session epochs count up from 1 after the opening 0 and wrap to 1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// Records and payload bytes of the non-control records whose offsets lie
/// in `acquired` (sorted, disjoint ranges).
fn count_acquired(record_set: Bytes, acquired: &[(i64, i64)]) -> anyhow::Result<(u64, u64)> {
    let (mut records, mut bytes) = (0u64, 0u64);
    let in_acquired = |offset: i64| acquired.iter().any(|&(first, last)| (first..=last).contains(&offset));
    for batch in batches(record_set, usize::MAX) {
        let batch = batch?;
        batch.verify_crc()?;
        if batch.is_control()
            || !acquired.iter().any(|&(first, last)| first <= batch.last_offset() && batch.base_offset() <= last)
        {
            continue;
        }
        let base_offset = batch.base_offset();
        for record in batch.records(UNCOMPRESSED_BATCH_BYTES_MAX)? {
            let record = record?;
            if !in_acquired(base_offset + i64::from(record.offset_delta)) {
                continue;
            }
            records += 1;
            bytes += (record.key.as_ref().map_or(0, |k| k.len()) + record.value.as_ref().map_or(0, |v| v.len())) as u64;
        }
    }
    Ok((records, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acquired_records_count_and_epochs_wrap() {
        // Proves a batch shared with other members counts only the offsets
        // this member acquired, and session epochs go 0, 1, ... and wrap to 1.
        use protocol::compression::Codec;
        use protocol::record_batch::RecordBatchBuilder;
        let mut builder = RecordBatchBuilder::new(Codec::None);
        for i in 0..10u8 {
            builder.push(0, None, Some(&[i; 4][..]), &[]);
        }
        let batch = builder.build().unwrap();
        assert_eq!(count_acquired(batch.clone(), &[(0, 9)]).unwrap(), (10, 40));
        assert_eq!(count_acquired(batch.clone(), &[(2, 3), (7, 7)]).unwrap(), (3, 12));
        assert_eq!(count_acquired(batch, &[(20, 30)]).unwrap(), (0, 0));
        assert_eq!((next_epoch(0), next_epoch(1), next_epoch(i32::MAX)), (1, 2, 1));
    }

    #[test]
    fn accepted_ranges_are_sorted_and_joined() {
        // Proves the acknowledgements sent: one batch per run of
        // consecutive offsets, in offset order, and none twice.
        let mut to_accept = BTreeMap::new();
        to_accept.insert(0, vec![(10, 19), (0, 4), (5, 9), (30, 30)]);
        let joined = take_accepted(&mut to_accept, 0);
        assert_eq!(joined, vec![(0, 19), (30, 30)]);
        assert!(take_accepted(&mut to_accept, 0).is_empty(), "taken once");
    }
}
