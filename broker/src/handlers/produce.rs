//! Produce (key 0): each partition's record set goes to the shard that owns
//! the partition (fan out), is validated and appended there, and the
//! offsets come back (gather). With acks=all the answer is deferred until
//! every appended partition is durable under its flush policy; the next
//! request on the connection is handled meanwhile, answers leave in order.
//! With acks=0 nothing is answered.
//!
//! Transactional batches need the request's transactional id (Kafka answers
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition otherwise);
//! before one starts a transaction on a partition the owner asks the
//! transaction coordinator (KIP-890 part 1) through [`transaction_verifier`].

use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::join_all;
use futures::FutureExt;
use protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use protocol::ErrorCode;

use super::{str_bytes, Reply};
use crate::partition::{ProduceContext, ProduceOutcome, TxnVerification, TxnVerifier};
use crate::shard::{PartitionKey, Shard};

/// One partition's records, addressed to its owner; `slot` is where its
/// answer goes in the response.
struct Work {
    slot: (usize, usize),
    key: PartitionKey,
    records: Bytes,
}

/// What a shard sends back: each partition's outcome, and for acks=all a
/// channel that reports durability failures once all its appends are durable.
type ShardAnswer = (Vec<((usize, usize), ProduceOutcome)>, Option<oneshot::Receiver<Vec<((usize, usize), String)>>>);

/// The KIP-890 part 1 verification the produce path asks before a
/// transactional batch starts a transaction on a partition, on that
/// partition's shard: the coordinator of the transactional id (on whichever
/// shard owns it) answers whether the partition is in the producer's
/// ongoing transaction. Built only for requests that carry a transactional
/// id, so plain produce allocates nothing for it, and only while
/// `transaction.partition.verification.enable` is on.
fn transaction_verifier(shard: &Rc<Shard>, transactional: bool) -> Option<TxnVerifier> {
    if !transactional || !shard.config.transactions.partition_verification {
        return None;
    }
    let shard = shard.clone();
    Some(Rc::new(move |verification: TxnVerification| {
        let shard = shard.clone();
        async move {
            crate::txn::verify_partition(
                &shard,
                &verification.transactional_id,
                verification.producer_id,
                verification.producer_epoch,
                &verification.topic,
                verification.partition,
            )
            .await
        }
        .boxed_local()
    }))
}

/// Whether a record set's first batch is transactional, read from its
/// attributes without parsing (Kafka's `hasTransactionalRecords`).
fn is_transactional(records: &Bytes) -> bool {
    use protocol::record_batch::header::ATTRIBUTES_POS;
    records.get(ATTRIBUTES_POS..ATTRIBUTES_POS + 2).is_some_and(|bytes| {
        i16::from_be_bytes([bytes[0], bytes[1]]) & protocol::record_batch::attributes::TRANSACTIONAL != 0
    })
}

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ProduceRequest) -> Reply {
    let acks = request.acks;
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let refuse_transactional = transactional_id.is_none()
        && request
            .topic_data
            .iter()
            .flat_map(|topic| topic.partition_data.iter())
            .any(|data| data.records.as_ref().is_some_and(is_transactional));
    let mut response = ProduceResponse::default();
    let mut per_shard: Vec<Vec<Work>> = (0..shard.count).map(|_| Vec::new()).collect();
    let image = shard.metadata();
    for (t, topic) in request.topic_data.into_iter().enumerate() {
        let mut answer = TopicProduceResponse::default();
        answer.name = topic.name.clone();
        let meta = image.topics.get(topic.name.as_str());
        for (p, data) in topic.partition_data.into_iter().enumerate() {
            let mut partition = PartitionProduceResponse::default();
            partition.index = data.index;
            partition.base_offset = -1;
            partition.log_append_time_ms = -1;
            partition.log_start_offset = -1;
            let placed = meta.and_then(|m| m.partitions.iter().find(|placed| placed.partition == data.index));
            match (meta, placed, data.records) {
                _ if !matches!(acks, -1..=1) => partition.error_code = ErrorCode::InvalidRequiredAcks.code(),
                _ if refuse_transactional => {
                    partition.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
                }
                (Some(meta), Some(placed), Some(records)) => per_shard[shard.owner_of(placed.shard)].push(Work {
                    slot: (t, p),
                    key: (meta.topic_id, data.index),
                    records,
                }),
                (Some(_), Some(_), None) => partition.error_code = ErrorCode::InvalidRecord.code(),
                _ => partition.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            answer.partition_responses.push(partition);
        }
        response.responses.push(answer);
    }
    let calls = per_shard.into_iter().enumerate().filter(|(_, work)| !work.is_empty()).map(|(owner, work)| {
        let transactional_id = transactional_id.clone();
        shard.invoke_on(owner, move |owner| async move {
            append_on_owner(&owner, work, version, transactional_id, acks == -1).await
        })
    });
    let mut durability = Vec::new();
    for answer in join_all(calls).await {
        match answer {
            Ok((outcomes, durable)) => {
                for (slot, outcome) in outcomes {
                    fill(&mut response, slot, outcome);
                }
                durability.extend(durable);
            }
            Err(gone) => tracing::warn!("produce: {gone}"),
        }
    }
    match acks {
        0 => Reply::Nothing,
        -1 if !durability.is_empty() => Reply::Later(Box::pin(async move {
            for failures in join_all(durability).await {
                for (slot, message) in failures.unwrap_or_default() {
                    let partition = &mut response.responses[slot.0].partition_responses[slot.1];
                    partition.error_code = ErrorCode::KafkaStorageError.code();
                    partition.error_message = Some(str_bytes(&message));
                }
            }
            ResponseKind::Produce(response)
        })),
        _ => Reply::Now(ResponseKind::Produce(response)),
    }
}

fn fill(response: &mut ProduceResponse, slot: (usize, usize), outcome: ProduceOutcome) {
    let partition = &mut response.responses[slot.0].partition_responses[slot.1];
    partition.error_code = outcome.error.map_or(0, |code| code.code());
    partition.error_message = outcome.message.as_deref().map(str_bytes);
    partition.base_offset = outcome.base_offset;
    partition.log_append_time_ms = outcome.log_append_time_ms;
    partition.log_start_offset = outcome.log_start_offset;
}

/// Runs on the owning shard: appends each partition's records in request
/// order; for acks=all also starts one task that waits until they are all
/// durable.
async fn append_on_owner(
    shard: &Rc<Shard>,
    work: Vec<Work>,
    version: i16,
    transactional_id: Option<String>,
    wait_durable: bool,
) -> ShardAnswer {
    let verifier = transaction_verifier(shard, transactional_id.is_some());
    let context = ProduceContext {
        produce_version: version,
        transactional_id: transactional_id.as_deref(),
        verifier: verifier.as_ref(),
    };
    let mut outcomes = Vec::with_capacity(work.len());
    let mut waits = Vec::new();
    for item in work {
        let Some(partition) = shard.partition(&item.key) else {
            outcomes.push((item.slot, ProduceOutcome::error(ErrorCode::NotLeaderOrFollower, "partition moved")));
            continue;
        };
        let outcome = partition.produce(item.records, &context).await;
        partition.snapshot_if_due();
        if let (true, Some(end)) = (wait_durable, outcome.durable_end_offset) {
            waits.push((item.slot, partition, end));
        }
        outcomes.push((item.slot, outcome));
    }
    if waits.is_empty() {
        return (outcomes, None);
    }
    let (report, reported) = oneshot::channel();
    glommio::spawn_local(async move {
        let mut failures = Vec::new();
        for (slot, partition, end) in waits {
            if let Err(err) = partition.log.wait_durable(end).await {
                failures.push((slot, err.to_string()));
            }
        }
        let _ = report.send(failures);
    })
    .detach();
    (outcomes, Some(reported))
}
