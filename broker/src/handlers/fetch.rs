//! Fetch (key 1): reads go to the shards owning the partitions (fan out)
//! and are gathered in request order. When fewer than `min_bytes` are
//! available the request waits (long poll) until one of its partitions
//! gets records or `max_wait_ms` passes, then reads again.
//!
//! Fetch sessions (KIP-227) are answered session-less: session id 0 tells
//! the client to keep sending full requests, which Kafka's clients accept.
//!
//! isolation_level 1 (read_committed) reads only below the last stable
//! offset and gets the aborted transactions overlapping what it read; its
//! long poll ends when the LSO passes the fetch offset (a transaction
//! ended), not when records merely arrive. Every partition answers its LSO.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{join_all, select, select_all, Either};
use protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use protocol::ErrorCode;

use super::str_bytes;
use crate::partition::{check_leader_epoch, FetchOutcome, IsolationLevel};
use crate::shard::{PartitionKey, Shard};

/// The longest a fetch may wait, whatever the client asks.
const MAX_WAIT_MS_MAX: i32 = 30_000;

#[derive(Clone)]
struct Read {
    slot: (usize, usize),
    key: PartitionKey,
    offset: i64,
    max_bytes: usize,
    /// -1, or the leader epoch the client believes current.
    leader_epoch: i32,
    isolation: IsolationLevel,
}

pub async fn handle(shard: &Rc<Shard>, version: i16, request: FetchRequest) -> FetchResponse {
    let mut response = FetchResponse::default();
    if request.session_id != 0 {
        response.error_code = ErrorCode::FetchSessionIdNotFound.code();
        return response;
    }
    let image = shard.metadata();
    let isolation = IsolationLevel::from_wire(request.isolation_level);
    let mut per_shard: Vec<Vec<Read>> = (0..shard.count).map(|_| Vec::new()).collect();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta =
            if version >= 13 { image.topic_by_id(&topic.topic_id) } else { image.topics.get(topic.topic.as_str()) };
        let mut answer = FetchableTopicResponse::default();
        answer.topic = meta.map_or_else(|| topic.topic.clone(), |m| TopicName(str_bytes(&m.name)));
        answer.topic_id = topic.topic_id;
        for (p, wanted) in topic.partitions.iter().enumerate() {
            let mut partition = empty_partition(wanted.partition);
            let placed = meta.and_then(|m| m.partitions.iter().find(|placed| placed.partition == wanted.partition));
            match (meta, placed) {
                (Some(meta), Some(placed)) => per_shard[shard.owner_of(placed.shard)].push(Read {
                    slot: (t, p),
                    key: (meta.topic_id, wanted.partition),
                    offset: wanted.fetch_offset,
                    max_bytes: wanted.partition_max_bytes.max(0) as usize,
                    leader_epoch: wanted.current_leader_epoch,
                    isolation,
                }),
                (None, _) if version >= 13 => partition.error_code = ErrorCode::UnknownTopicId.code(),
                _ => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            answer.partitions.push(partition);
        }
        response.responses.push(answer);
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    loop {
        let outcomes = read_all(shard, &per_shard).await;
        let bytes: usize = outcomes.iter().map(|(_, outcome)| outcome.bytes()).sum();
        let failed = outcomes.iter().any(|(_, outcome)| outcome.error.is_some());
        let now = Instant::now();
        if bytes >= min_bytes || failed || now >= deadline || shard.stopping.is_set() {
            fill(&mut response, outcomes, request.max_bytes.max(0) as usize);
            return response;
        }
        wait_for_any(shard, &per_shard, deadline - now).await;
    }
}

fn empty_partition(index: i32) -> PartitionData {
    let mut partition = PartitionData::default();
    partition.partition_index = index;
    partition.high_watermark = -1;
    partition.last_stable_offset = -1;
    partition.log_start_offset = -1;
    partition.records = Some(Bytes::new());
    partition
}

async fn read_all(shard: &Rc<Shard>, per_shard: &[Vec<Read>]) -> Vec<((usize, usize), FetchOutcome)> {
    let calls = per_shard.iter().enumerate().filter(|(_, reads)| !reads.is_empty()).map(|(owner, reads)| {
        let reads = reads.clone();
        shard.invoke_on(owner, move |owner| async move {
            let mut outcomes = Vec::with_capacity(reads.len());
            for read in reads {
                outcomes.push((read.slot, read_one(&owner, &read).await));
            }
            outcomes
        })
    });
    join_all(calls).await.into_iter().flat_map(|answer| answer.unwrap_or_default()).collect()
}

async fn read_one(shard: &Shard, read: &Read) -> FetchOutcome {
    let Some(partition) = shard.partition(&read.key) else {
        return FetchOutcome::error(ErrorCode::NotLeaderOrFollower);
    };
    if let Err(code) = check_leader_epoch(read.leader_epoch, partition.leader_epoch) {
        return FetchOutcome::error(code);
    }
    partition.fetch(read.offset, read.max_bytes.max(1), read.isolation).await
}

/// Waits until any partition of the request has records at or above its
/// fetch offset, or `timeout` passes.
async fn wait_for_any(shard: &Rc<Shard>, per_shard: &[Vec<Read>], timeout: Duration) {
    let calls: Vec<_> = per_shard
        .iter()
        .enumerate()
        .filter(|(_, reads)| !reads.is_empty())
        .map(|(owner, reads)| {
            let wanted: Vec<(PartitionKey, i64, IsolationLevel)> =
                reads.iter().map(|r| (r.key, r.offset, r.isolation)).collect();
            Box::pin(shard.invoke_on(owner, move |owner| async move {
                let waits: Vec<_> = wanted
                    .iter()
                    .filter_map(|(key, offset, isolation)| {
                        let partition = owner.partition(key)?;
                        let (offset, isolation) = (*offset, *isolation);
                        Some(Box::pin(async move { partition.wait_for_records_from(offset, isolation).await }))
                    })
                    .collect();
                if waits.is_empty() {
                    return;
                }
                let timer = glommio::timer::sleep(timeout);
                let stop = owner.stopping.wait();
                let _ = select(select_all(waits), select(Box::pin(timer), Box::pin(stop))).await;
            }))
        })
        .collect();
    if calls.is_empty() {
        glommio::timer::sleep(timeout).await;
        return;
    }
    let timer = glommio::timer::sleep(timeout);
    match select(select_all(calls), Box::pin(timer)).await {
        Either::Left(_) | Either::Right(_) => {}
    }
}

/// Puts the outcomes in their slots, keeping the response within
/// `max_bytes` except for the first partition with records (a consumer
/// must always make progress, as in Kafka).
fn fill(response: &mut FetchResponse, mut outcomes: Vec<((usize, usize), FetchOutcome)>, max_bytes: usize) {
    outcomes.sort_by_key(|(slot, _)| *slot);
    let mut total = 0usize;
    for (slot, outcome) in outcomes {
        let partition = &mut response.responses[slot.0].partitions[slot.1];
        partition.error_code = outcome.error.map_or(0, |code| code.code());
        partition.high_watermark = outcome.high_watermark;
        partition.last_stable_offset = outcome.last_stable_offset;
        partition.log_start_offset = outcome.log_start_offset;
        let records = outcome.records.unwrap_or_default();
        if total > 0 && total + records.len() > max_bytes {
            // Records left out: so are their aborted transactions.
            partition.aborted_transactions = outcome.aborted_transactions.map(|_| Vec::new());
            continue;
        }
        total += records.len();
        partition.records = Some(records);
        partition.aborted_transactions = outcome.aborted_transactions.map(|aborted| {
            aborted
                .iter()
                .map(|txn| {
                    let mut answer = AbortedTransaction::default();
                    answer.producer_id = ProducerId(txn.producer_id);
                    answer.first_offset = txn.first_offset;
                    answer
                })
                .collect()
        });
    }
}
