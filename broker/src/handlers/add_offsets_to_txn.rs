//! AddOffsetsToTxn (key 25): the consumer group whose offsets the
//! transaction will commit (TxnOffsetCommit) is added to the transaction on
//! the id's coordinator shard, so that ending the transaction completes
//! those offsets too (the markers go to the group's coordinator shard).
//! Kafka adds the group's `__consumer_offsets` partition through the same
//! path as AddPartitionsToTxn, and so do its rules here: answered once
//! durable, an empty transactional id INVALID_REQUEST, PRODUCER_FENCED as
//! INVALID_PRODUCER_EPOCH below v2.

use std::rc::Rc;

use protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ResponseKind};
use protocol::ErrorCode;

use super::{coordinator_reply, Reply};
use crate::shard::Shard;
use crate::txn::coordinator::Answer;
use crate::txn::{coordinator_shard, TxnCoordinator};

/// The first version that knows PRODUCER_FENCED.
const PRODUCER_FENCED_VERSION_MIN: i16 = 2;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: AddOffsetsToTxnRequest) -> Reply {
    let transactional_id = request.transactional_id.0.to_string();
    if transactional_id.is_empty() {
        return Reply::Now(encode(version, Err(ErrorCode::InvalidRequest)));
    }
    let (producer_id, producer_epoch) = (request.producer_id.0, request.producer_epoch);
    let group_id = request.group_id.0.to_string();
    let target = coordinator_shard(&transactional_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            TxnCoordinator::add(&owner, transactional_id, producer_id, producer_epoch, Vec::new(), vec![group_id]).await
        })
        .await;
    coordinator_reply(placed, || Err(ErrorCode::CoordinatorNotAvailable), move |answer| encode(version, answer))
}

fn encode(version: i16, answer: Answer) -> ResponseKind {
    let mut response = AddOffsetsToTxnResponse::default();
    response.error_code = match answer {
        Ok(()) => 0,
        Err(ErrorCode::ProducerFenced) if version < PRODUCER_FENCED_VERSION_MIN => {
            ErrorCode::InvalidProducerEpoch.code()
        }
        Err(code) => code.code(),
    };
    ResponseKind::AddOffsetsToTxn(response)
}
