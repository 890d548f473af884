//! DescribeTransactions (key 65, KIP-664): each transactional id is
//! described by its coordinator shard: state, producer id and epoch,
//! timeout, start time (-1 before the first transaction) and the
//! partitions of the current transaction, by topic. An unknown id is
//! TRANSACTIONAL_ID_NOT_FOUND, an empty one INVALID_REQUEST, as in Kafka.

use std::rc::Rc;

use protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use protocol::ErrorCode;

use super::str_bytes;
use crate::shard::Shard;
use crate::txn::coordinator::DescribedTxn;
use crate::txn::coordinator_shard;

pub async fn handle(
    shard: &Rc<Shard>,
    _version: i16,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let lookups = request.transactional_ids.into_iter().map(|id| async move {
        let lookup = id.0.to_string();
        let found = if lookup.is_empty() {
            Err(ErrorCode::InvalidRequest)
        } else {
            let target = coordinator_shard(&lookup, shard.count);
            shard
                .invoke_on(target, move |owner| async move { owner.txn.describe(&lookup) })
                .await
                .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
        };
        encode(id, found)
    });
    let mut response = DescribeTransactionsResponse::default();
    response.transaction_states = futures::future::join_all(lookups).await;
    response
}

fn encode(transactional_id: TransactionalId, found: Result<DescribedTxn, ErrorCode>) -> TransactionState {
    let mut answer = TransactionState::default();
    answer.transactional_id = transactional_id;
    let described = match found {
        Ok(described) => described,
        Err(code) => {
            answer.error_code = code.code();
            return answer;
        }
    };
    answer.transaction_state = str_bytes(described.state.name());
    answer.transaction_timeout_ms = described.timeout_ms;
    answer.transaction_start_time_ms = described.start_time_ms;
    answer.producer_id = ProducerId(described.producer_id);
    answer.producer_epoch = described.producer_epoch;
    for (topic, partition) in described.partitions {
        match answer.topics.last_mut() {
            Some(data) if data.topic.0.as_str() == topic => data.partitions.push(partition),
            _ => {
                let mut data = TopicData::default();
                data.topic = TopicName(str_bytes(&topic));
                data.partitions.push(partition);
                answer.topics.push(data);
            }
        }
    }
    answer
}
