//! AddPartitionsToTxn (key 24). v0-v3 (clients): one transactional id's
//! partitions are added to its transaction on the id's coordinator shard,
//! answered once the record is durable. v4+ (KIP-890, the broker form):
//! several transactions per request, each either added the same way or,
//! with `verify_only`, only checked (`txn::TxnCoordinator::verify_partition`).
//!
//! As in Kafka's `KafkaApis`: every partition of a topic or index that does
//! not exist gets UNKNOWN_TOPIC_OR_PARTITION and the others of that
//! transaction OPERATION_NOT_ATTEMPTED (nothing is added); an empty
//! transactional id is INVALID_REQUEST; otherwise the coordinator's answer
//! goes to every partition, PRODUCER_FENCED as INVALID_PRODUCER_EPOCH below
//! v2 and TRANSACTION_ABORTABLE as INVALID_TXN_STATE below v5 (the versions
//! that do not know them).

use std::collections::HashSet;
use std::rc::Rc;

use futures::channel::oneshot;
use protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ResponseKind, TopicName};
use protocol::ErrorCode;

use super::{str_bytes, Reply};
use crate::group::classic::Step;
use crate::shard::Shard;
use crate::txn::coordinator::Answer;
use crate::txn::state::TopicPartition;
use crate::txn::{coordinator_shard, TxnCoordinator};

/// The first version that knows PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION_MIN: i16 = 2;
/// The first version of the batched, broker form.
const BATCHED_VERSION_MIN: i16 = 4;
/// The first version that knows TRANSACTION_ABORTABLE (KIP-890).
const TRANSACTION_ABORTABLE_VERSION_MIN: i16 = 5;

/// One transaction of a request.
struct Wanted {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    partitions: Vec<TopicPartition>,
}

/// A transaction's answer as placed: per-partition codes now, or one
/// answer for all of them (now or later).
enum Placed {
    Codes(Vec<i16>),
    All(Step<Answer>),
}

pub async fn handle(shard: &Rc<Shard>, version: i16, request: AddPartitionsToTxnRequest) -> Reply {
    if version < BATCHED_VERSION_MIN {
        let wanted = Wanted {
            transactional_id: request.v3_and_below_transactional_id.0.to_string(),
            producer_id: request.v3_and_below_producer_id.0,
            producer_epoch: request.v3_and_below_producer_epoch,
            verify_only: false,
            partitions: unique_partitions(&request.v3_and_below_topics),
        };
        let placed = place(shard, version, &wanted).await;
        return Reply::Later(Box::pin(async move {
            let codes = resolve(version, placed, wanted.partitions.len()).await;
            let mut response = AddPartitionsToTxnResponse::default();
            response.results_by_topic_v3_and_below = topic_results(&wanted.partitions, &codes);
            ResponseKind::AddPartitionsToTxn(response)
        }));
    }
    let transactions: Vec<Wanted> = request
        .transactions
        .iter()
        .map(|transaction| Wanted {
            transactional_id: transaction.transactional_id.0.to_string(),
            producer_id: transaction.producer_id.0,
            producer_epoch: transaction.producer_epoch,
            verify_only: transaction.verify_only,
            partitions: unique_partitions(&transaction.topics),
        })
        .collect();
    let placed = futures::future::join_all(transactions.iter().map(|wanted| place(shard, version, wanted))).await;
    Reply::Later(Box::pin(async move {
        let mut response = AddPartitionsToTxnResponse::default();
        for (wanted, placed) in transactions.into_iter().zip(placed) {
            let codes = resolve(version, placed, wanted.partitions.len()).await;
            let mut result = AddPartitionsToTxnResult::default();
            result.transactional_id = protocol::messages::TransactionalId(str_bytes(&wanted.transactional_id));
            result.topic_results = topic_results(&wanted.partitions, &codes);
            response.results_by_transaction.push(result);
        }
        ResponseKind::AddPartitionsToTxn(response)
    }))
}

/// The request's partitions, each once, in the order first named.
fn unique_partitions(topics: &[AddPartitionsToTxnTopic]) -> Vec<TopicPartition> {
    let mut seen = HashSet::new();
    let mut partitions = Vec::new();
    for topic in topics {
        for index in &topic.partitions {
            let partition = (topic.name.0.to_string(), *index);
            if seen.insert(partition.clone()) {
                partitions.push(partition);
            }
        }
    }
    partitions
}

/// Checks one transaction's request and hands it to its coordinator.
async fn place(shard: &Rc<Shard>, version: i16, wanted: &Wanted) -> Placed {
    let count = wanted.partitions.len();
    if wanted.transactional_id.is_empty() {
        return Placed::Codes(vec![ErrorCode::InvalidRequest.code(); count]);
    }
    let image = shard.metadata();
    let known: Vec<bool> = wanted
        .partitions
        .iter()
        .map(|(topic, index)| image.topic(topic).is_some_and(|meta| meta.partition(*index).is_some()))
        .collect();
    if known.contains(&false) {
        let codes = known
            .into_iter()
            .map(|known| if known { ErrorCode::OperationNotAttempted } else { ErrorCode::UnknownTopicOrPartition })
            .map(|code| code.code())
            .collect();
        return Placed::Codes(codes);
    }
    let (id, producer_id, producer_epoch) =
        (wanted.transactional_id.clone(), wanted.producer_id, wanted.producer_epoch);
    let partitions = wanted.partitions.clone();
    let target = coordinator_shard(&id, shard.count);
    if wanted.verify_only {
        let verified = shard
            .invoke_on(target, move |owner| async move {
                let verify = |(topic, index): &TopicPartition| {
                    owner.txn.verify_partition(&id, producer_id, producer_epoch, topic, *index)
                };
                partitions.iter().map(verify).collect::<Vec<Answer>>()
            })
            .await;
        return match verified {
            Ok(answers) => Placed::Codes(answers.into_iter().map(|answer| code(version, answer)).collect()),
            Err(_) => Placed::Codes(vec![ErrorCode::CoordinatorNotAvailable.code(); count]),
        };
    }
    let placed = shard
        .invoke_on(target, move |owner| async move {
            TxnCoordinator::add(&owner, id, producer_id, producer_epoch, partitions, Vec::new()).await
        })
        .await;
    Placed::All(placed.unwrap_or(Step::Now(Err(ErrorCode::CoordinatorNotAvailable))))
}

/// Each partition's error code, once the answer is there.
async fn resolve(version: i16, placed: Placed, count: usize) -> Vec<i16> {
    let answer = match placed {
        Placed::Codes(codes) => return codes,
        Placed::All(Step::Now(answer)) => answer,
        Placed::All(Step::Wait(receiver)) => wait(receiver).await,
    };
    vec![code(version, answer); count]
}

async fn wait(receiver: oneshot::Receiver<Answer>) -> Answer {
    receiver.await.unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// An answer's code at `version`.
fn code(version: i16, answer: Answer) -> i16 {
    match answer {
        Ok(()) => 0,
        Err(ErrorCode::ProducerFenced) if version < PRODUCER_FENCED_VERSION_MIN => {
            ErrorCode::InvalidProducerEpoch.code()
        }
        Err(ErrorCode::TransactionAbortable) if version < TRANSACTION_ABORTABLE_VERSION_MIN => {
            ErrorCode::InvalidTxnState.code()
        }
        Err(code) => code.code(),
    }
}

/// The per-topic results of `partitions` with their `codes`.
fn topic_results(partitions: &[TopicPartition], codes: &[i16]) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, index), code) in partitions.iter().zip(codes) {
        let mut partition = AddPartitionsToTxnPartitionResult::default();
        partition.partition_index = *index;
        partition.partition_error_code = *code;
        match results.iter_mut().find(|result| result.name.0.as_str() == topic) {
            Some(result) => result.results_by_partition.push(partition),
            None => {
                let mut result = AddPartitionsToTxnTopicResult::default();
                result.name = TopicName(str_bytes(topic));
                result.results_by_partition.push(partition);
                results.push(result);
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_what_each_version_knows() {
        // Proves PRODUCER_FENCED is INVALID_PRODUCER_EPOCH below v2 and
        // TRANSACTION_ABORTABLE is INVALID_TXN_STATE below v5, as Kafka
        // maps them.
        assert_eq!(code(1, Err(ErrorCode::ProducerFenced)), ErrorCode::InvalidProducerEpoch.code());
        assert_eq!(code(2, Err(ErrorCode::ProducerFenced)), ErrorCode::ProducerFenced.code());
        assert_eq!(code(4, Err(ErrorCode::TransactionAbortable)), ErrorCode::InvalidTxnState.code());
        assert_eq!(code(5, Err(ErrorCode::TransactionAbortable)), ErrorCode::TransactionAbortable.code());
        assert_eq!(code(0, Ok(())), 0);
    }

    #[test]
    fn results_are_grouped_by_topic_in_request_order() {
        // Proves duplicates are answered once and partitions of a topic
        // named twice land in one topic result.
        let mut a = AddPartitionsToTxnTopic::default();
        a.name = TopicName(str_bytes("a"));
        a.partitions = vec![1, 0, 1];
        let mut b = AddPartitionsToTxnTopic::default();
        b.name = TopicName(str_bytes("b"));
        b.partitions = vec![0];
        let mut a_again = AddPartitionsToTxnTopic::default();
        a_again.name = TopicName(str_bytes("a"));
        a_again.partitions = vec![2];
        let partitions = unique_partitions(&[a, b, a_again]);
        assert_eq!(partitions, [("a".into(), 1), ("a".into(), 0), ("b".into(), 0), ("a".into(), 2)]);
        let results = topic_results(&partitions, &[0, 3, 0, 55]);
        let shape: Vec<(String, Vec<(i32, i16)>)> = results
            .iter()
            .map(|r| {
                let partitions = r.results_by_partition.iter().map(|p| (p.partition_index, p.partition_error_code));
                (r.name.0.to_string(), partitions.collect())
            })
            .collect();
        assert_eq!(shape, [("a".to_owned(), vec![(1, 0), (0, 3), (2, 55)]), ("b".to_owned(), vec![(0, 0)])]);
    }
}
