//! EndTxn (key 26): commits or aborts the producer's transaction on the
//! id's coordinator shard (transaction version 1). Answered once the
//! markers and the CompleteCommit/CompleteAbort record are durable, or at
//! the latest `END_TXN_COMPLETION_WAIT` after PrepareCommit/PrepareAbort is
//! (Kafka answers at Prepare: see `txn::coordinator`). A retry of an EndTxn that
//! completed with the same result succeeds; CONCURRENT_TRANSACTIONS while
//! the markers are written; INVALID_TXN_STATE otherwise; an empty
//! transactional id is INVALID_REQUEST; PRODUCER_FENCED is
//! INVALID_PRODUCER_EPOCH below v2.

use std::rc::Rc;

use protocol::messages::{EndTxnRequest, EndTxnResponse, ResponseKind};
use protocol::ErrorCode;

use super::{coordinator_reply, Reply};
use crate::shard::Shard;
use crate::txn::coordinator::Answer;
use crate::txn::{coordinator_shard, TxnCoordinator};

/// The first version that knows PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION_MIN: i16 = 2;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: EndTxnRequest) -> Reply {
    let transactional_id = request.transactional_id.0.to_string();
    if transactional_id.is_empty() {
        return Reply::Now(encode(version, Err(ErrorCode::InvalidRequest)));
    }
    let (producer_id, producer_epoch, commit) = (request.producer_id.0, request.producer_epoch, request.committed);
    let target = coordinator_shard(&transactional_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            TxnCoordinator::end(&owner, transactional_id, producer_id, producer_epoch, commit).await
        })
        .await;
    coordinator_reply(placed, || Err(ErrorCode::CoordinatorNotAvailable), move |answer| encode(version, answer))
}

fn encode(version: i16, answer: Answer) -> ResponseKind {
    let mut response = EndTxnResponse::default();
    response.error_code = match answer {
        Ok(()) => 0,
        Err(ErrorCode::ProducerFenced) if version < PRODUCER_FENCED_VERSION_MIN => {
            ErrorCode::InvalidProducerEpoch.code()
        }
        Err(code) => code.code(),
    };
    ResponseKind::EndTxn(response)
}
