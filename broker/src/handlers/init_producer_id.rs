//! InitProducerId (key 22). Without a transactional id (idempotent
//! producers): a producer id never used before (ids come from blocks
//! logged by the controller) at epoch 0. With one: forwarded to the id's
//! transaction coordinator shard (`txn::TxnCoordinator::init_producer_id`),
//! answered once its record is durable. As in Kafka's `KafkaApis`: an
//! empty transactional id, or only one of producer id and epoch given
//! (v3+), is INVALID_REQUEST; PRODUCER_FENCED is INVALID_PRODUCER_EPOCH
//! below v4, which does not know it.

use std::rc::Rc;

use protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind};
use protocol::ErrorCode;

use super::{coordinator_reply, Reply};
use crate::shard::{Shard, CONTROLLER_SHARD};
use crate::txn::state::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use crate::txn::{coordinator_shard, TxnCoordinator};

/// The first version that knows PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_VERSION_MIN: i16 = 4;

pub async fn handle(shard: &Rc<Shard>, version: i16, request: InitProducerIdRequest) -> Reply {
    let Some(transactional_id) = request.transactional_id.as_ref().map(|id| id.0.to_string()) else {
        return Reply::Now(ResponseKind::InitProducerId(idempotent(shard).await));
    };
    if transactional_id.is_empty() {
        return Reply::Now(ResponseKind::InitProducerId(answer(version, Err(ErrorCode::InvalidRequest))));
    }
    let expected = match (request.producer_id.0, request.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
            return Reply::Now(ResponseKind::InitProducerId(answer(version, Err(ErrorCode::InvalidRequest))));
        }
        given => Some(given),
    };
    let timeout_ms = request.transaction_timeout_ms;
    let target = coordinator_shard(&transactional_id, shard.count);
    let placed = shard
        .invoke_on(target, move |owner| async move {
            TxnCoordinator::init_producer_id(&owner, transactional_id, timeout_ms, expected).await
        })
        .await;
    coordinator_reply(
        placed,
        || Err(ErrorCode::CoordinatorNotAvailable),
        move |outcome| ResponseKind::InitProducerId(answer(version, outcome)),
    )
}

/// The response of a transactional InitProducerId at `version`.
fn answer(version: i16, outcome: Result<(i64, i16), ErrorCode>) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    match outcome {
        Ok((producer_id, producer_epoch)) => {
            response.producer_id = ProducerId(producer_id);
            response.producer_epoch = producer_epoch;
        }
        Err(code) => {
            response.producer_id = ProducerId(NO_PRODUCER_ID);
            response.producer_epoch = NO_PRODUCER_EPOCH;
            response.error_code = match code {
                ErrorCode::ProducerFenced if version < PRODUCER_FENCED_VERSION_MIN => ErrorCode::InvalidProducerEpoch,
                code => code,
            }
            .code();
        }
    }
    response
}

/// An idempotent producer: a fresh producer id at epoch 0. A client that
/// already has an id asks to bump its epoch (KIP-360): giving a fresh id is
/// always safe for a non-transactional producer.
async fn idempotent(shard: &Rc<Shard>) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    let allocated = shard
        .invoke_on(CONTROLLER_SHARD, |shard| async move { shard.controller().allocate_producer_id(&shard).await })
        .await;
    match allocated {
        Ok(Ok(id)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "allocating a producer id failed");
            response.error_code = ErrorCode::UnknownServerError.code();
        }
        Err(_) => response.error_code = ErrorCode::CoordinatorNotAvailable.code(),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fenced_is_invalid_producer_epoch_before_v4() {
        // Proves the error mapping of KafkaApis: PRODUCER_FENCED reaches v4+
        // clients as is and older ones as INVALID_PRODUCER_EPOCH, with
        // producer id and epoch -1 on every error.
        for (version, expected) in [(3, ErrorCode::InvalidProducerEpoch), (4, ErrorCode::ProducerFenced)] {
            let response = answer(version, Err(ErrorCode::ProducerFenced));
            assert_eq!(response.error_code, expected.code());
            assert_eq!((response.producer_id.0, response.producer_epoch), (-1, -1));
        }
        let response = answer(0, Ok((42, 3)));
        assert_eq!((response.error_code, response.producer_id.0, response.producer_epoch), (0, 42, 3));
    }
}
