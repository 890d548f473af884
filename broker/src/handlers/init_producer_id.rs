//! InitProducerId (key 22) for idempotent producers: a producer id never
//! used before (ids come from blocks logged by the controller) at epoch 0.
//! Transactional ids are refused until transactions exist (their own issue).

use std::rc::Rc;

use protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use protocol::ErrorCode;

use crate::shard::{Shard, CONTROLLER_SHARD};

pub async fn handle(shard: &Rc<Shard>, _version: i16, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    // A client that already has an id asks to bump its epoch (KIP-360):
    // giving a fresh id is always safe for a non-transactional producer.
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
