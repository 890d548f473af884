//! DescribeCluster (key 60): this node as the only broker (advertised host
//! and port), itself as the controller, and the cluster id. Stele's clients
//! talk to brokers, so a request for controller endpoints (v1+
//! `endpoint_type` 2) is UNSUPPORTED_ENDPOINT_TYPE, as Kafka's brokers answer.

use std::rc::Rc;

use protocol::messages::describe_cluster_response::DescribeClusterBroker;
use protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use protocol::ErrorCode;

use super::str_bytes;
use crate::shard::Shard;

/// Kafka's endpoint types (DescribeCluster v1+).
const ENDPOINT_BROKERS: i8 = 1;

/// Operations on the CLUSTER resource that Kafka reports as authorized when
/// no authorizer is configured (every supported one): ALTER 7, CREATE 5,
/// DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12, as a bit field.
const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

pub async fn handle(shard: &Rc<Shard>, version: i16, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let config = &shard.config;
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(&shard.metadata().cluster_id);
    if version >= 1 {
        response.endpoint_type = request.endpoint_type;
        if request.endpoint_type != ENDPOINT_BROKERS {
            response.error_code = ErrorCode::UnsupportedEndpointType.code();
            response.error_message = Some(str_bytes(&format!(
                "endpoint type {} is not served: Stele brokers answer for brokers (1) only",
                request.endpoint_type
            )));
            return response;
        }
    }
    response.controller_id = BrokerId(config.node_id);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = BrokerId(config.node_id);
    broker.host = str_bytes(&config.advertised_host);
    broker.port = i32::from(config.advertised_port);
    response.brokers = vec![broker];
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    response
}
