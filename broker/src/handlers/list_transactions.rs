//! ListTransactions (key 66, KIP-664): every shard lists the transactional
//! ids it coordinates, filtered by state (Kafka's names, case-sensitive;
//! names Kafka does not know are returned in `unknown_state_filters`), by
//! producer id, and from v1 by duration (KIP-994: only transactions running
//! longer than `duration_filter` ms, compared with the start time as Kafka
//! does).

use std::rc::Rc;

use protocol::messages::list_transactions_response::TransactionState;
use protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};
use protocol::ErrorCode;

use super::str_bytes;
use crate::shard::Shard;
use crate::txn::coordinator::ListFilter;
use crate::txn::state::TxnState;

/// The first version with a duration filter.
const DURATION_FILTER_VERSION_MIN: i16 = 1;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut response = ListTransactionsResponse::default();
    let mut filter = ListFilter {
        producer_ids: request.producer_id_filters.iter().map(|id| id.0).collect(),
        duration_ms: if version >= DURATION_FILTER_VERSION_MIN { request.duration_filter } else { -1 },
        ..ListFilter::default()
    };
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => filter.states.push(state),
            None => response.unknown_state_filters.push(name.clone()),
        }
    }
    // Only unknown names: nothing can match (Kafka's filter is then a set
    // of no state, not an empty filter).
    if filter.states.is_empty() && !request.state_filters.is_empty() {
        return response;
    }
    let now_ms = crate::partition::now_ms();
    let listed = shard.invoke_on_all(move |owner| async move { owner.txn.list(&filter, now_ms) }).await;
    match listed {
        Ok(per_shard) => {
            for listed in per_shard.into_iter().flatten() {
                let mut state = TransactionState::default();
                state.transactional_id = TransactionalId(str_bytes(&listed.transactional_id));
                state.producer_id = ProducerId(listed.producer_id);
                state.transaction_state = str_bytes(listed.state.name());
                response.transaction_states.push(state);
            }
        }
        Err(_) => response.error_code = ErrorCode::CoordinatorNotAvailable.code(),
    }
    response
}
