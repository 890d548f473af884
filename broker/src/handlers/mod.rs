//! One handler per Kafka API (`<kafka_api>.rs`), and the dispatch from a
//! decoded request to its handler.
//!
//! To add an API: write `handlers/<api>.rs`, add its arm to [`handle`], its
//! row to `protocol::api::SUPPORTED_APIS` (share group APIs:
//! `SHARE_GROUP_APIS`, advertised only with `group.share.enable`) and to the table in
//! docs/protocol.md (a test compares the two). An API without a row here is
//! never advertised, and a request for it closes the connection before it
//! reaches [`handle`].

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_share_group_offsets;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_share_group_offsets;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_share_group_offsets;
mod describe_topic_partitions;
mod describe_transactions;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod share_acknowledge;
mod share_fetch;
mod share_group_describe;
mod share_group_heartbeat;
mod share_group_offsets;
pub(crate) mod share_session;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

pub use share_fetch::register_member_gone_listener as register_share_member_gone_listener;

use std::rc::Rc;

use futures::future::LocalBoxFuture;
use protocol::messages::{RequestKind, ResponseKind};
use protocol::{Request, StrBytes};

use crate::group::classic::Step;
use crate::shard::{Shard, ShardGone};

/// Who sent a request, as Kafka's RequestContext knows it: what JoinGroup
/// records of a member (DescribeGroups reports it).
#[derive(Clone, Debug)]
pub struct Client {
    /// The request header's client id ("" when null).
    pub id: String,
    /// The connection's peer address as Kafka prints it: "/127.0.0.1".
    pub host: String,
}

/// A handler's answer.
pub enum Reply {
    /// Send this body at the request's version.
    Now(ResponseKind),
    /// Send this body at another version (ApiVersions' v0 fallback).
    AtVersion(i16, ResponseKind),
    /// The body is ready later (acks=all waits for durability); answers
    /// still leave in request order.
    Later(LocalBoxFuture<'static, ResponseKind>),
    /// No answer at all (Produce with acks=0).
    Nothing,
    /// Close the connection after the answers before this one.
    Close(String),
}

impl Reply {
    pub async fn resolve(self) -> Option<(Option<i16>, ResponseKind)> {
        match self {
            Reply::Now(body) => Some((None, body)),
            Reply::AtVersion(version, body) => Some((Some(version), body)),
            Reply::Later(body) => Some((None, body.await)),
            Reply::Nothing | Reply::Close(_) => None,
        }
    }
}

/// The reply to a coordinator's answer from its shard: now, or once its
/// record is durable. A coordinator shard that stopped, or an answer
/// dropped unsent (shutdown), is answered with `unavailable()`.
pub fn coordinator_reply<T: 'static>(
    placed: Result<Step<T>, ShardGone>,
    unavailable: impl Fn() -> T + 'static,
    encode: impl FnOnce(T) -> ResponseKind + 'static,
) -> Reply {
    match placed {
        Ok(Step::Now(answer)) => Reply::Now(encode(answer)),
        Ok(Step::Wait(receiver)) => {
            Reply::Later(Box::pin(async move { encode(receiver.await.unwrap_or_else(|_| unavailable())) }))
        }
        Err(_) => Reply::Now(encode(unavailable())),
    }
}

/// Runs a request's handler. The request's API and version are already
/// known to be advertised (`protocol::api::advertised_apis`, which adds
/// the share group APIs when `group.share.enable` is set); `client_host` is the
/// connection's peer ([`Client::host`]).
pub async fn handle(shard: &Rc<Shard>, client_host: &str, request: Request) -> Reply {
    let version = request.api_version();
    match request.body {
        RequestKind::ApiVersions(body) => api_versions::handle(version, &body, shard.config.groups.share_enable),
        RequestKind::Metadata(body) => Reply::Now(ResponseKind::Metadata(metadata::handle(shard, version, body).await)),
        RequestKind::Produce(body) => produce::handle(shard, version, body).await,
        RequestKind::Fetch(body) => Reply::Now(ResponseKind::Fetch(fetch::handle(shard, version, body).await)),
        RequestKind::ListOffsets(body) => {
            Reply::Now(ResponseKind::ListOffsets(list_offsets::handle(shard, version, body).await))
        }
        RequestKind::CreateTopics(body) => {
            Reply::Now(ResponseKind::CreateTopics(create_topics::handle(shard, version, body).await))
        }
        RequestKind::DeleteTopics(body) => {
            Reply::Now(ResponseKind::DeleteTopics(delete_topics::handle(shard, version, body).await))
        }
        RequestKind::InitProducerId(body) => init_producer_id::handle(shard, version, body).await,
        RequestKind::AddPartitionsToTxn(body) => add_partitions_to_txn::handle(shard, version, body).await,
        RequestKind::AddOffsetsToTxn(body) => add_offsets_to_txn::handle(shard, version, body).await,
        RequestKind::EndTxn(body) => end_txn::handle(shard, version, body).await,
        RequestKind::DescribeTransactions(body) => {
            Reply::Now(ResponseKind::DescribeTransactions(describe_transactions::handle(shard, version, body).await))
        }
        RequestKind::ListTransactions(body) => {
            Reply::Now(ResponseKind::ListTransactions(list_transactions::handle(shard, version, body).await))
        }
        RequestKind::CreatePartitions(body) => {
            Reply::Now(ResponseKind::CreatePartitions(create_partitions::handle(shard, version, body).await))
        }
        RequestKind::DescribeConfigs(body) => {
            Reply::Now(ResponseKind::DescribeConfigs(describe_configs::handle(shard, version, body).await))
        }
        RequestKind::AlterConfigs(body) => {
            Reply::Now(ResponseKind::AlterConfigs(alter_configs::handle(shard, version, body).await))
        }
        RequestKind::IncrementalAlterConfigs(body) => Reply::Now(ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(shard, version, body).await,
        )),
        RequestKind::DescribeCluster(body) => {
            Reply::Now(ResponseKind::DescribeCluster(describe_cluster::handle(shard, version, body).await))
        }
        RequestKind::DescribeTopicPartitions(body) => Reply::Now(ResponseKind::DescribeTopicPartitions(
            describe_topic_partitions::handle(shard, version, body).await,
        )),
        RequestKind::OffsetForLeaderEpoch(body) => {
            Reply::Now(ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(shard, version, body).await))
        }
        RequestKind::DeleteRecords(body) => {
            Reply::Now(ResponseKind::DeleteRecords(delete_records::handle(shard, version, body).await))
        }
        RequestKind::DescribeLogDirs(body) => {
            Reply::Now(ResponseKind::DescribeLogDirs(describe_log_dirs::handle(shard, version, body).await))
        }
        RequestKind::FindCoordinator(body) => {
            Reply::Now(ResponseKind::FindCoordinator(find_coordinator::handle(shard, version, body).await))
        }
        RequestKind::OffsetCommit(body) => offset_commit::handle(shard, version, body).await,
        RequestKind::OffsetFetch(body) => {
            Reply::Now(ResponseKind::OffsetFetch(offset_fetch::handle(shard, version, body).await))
        }
        RequestKind::JoinGroup(body) => {
            let id = request.header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
            join_group::handle(shard, version, Client { id, host: client_host.to_owned() }, body).await
        }
        RequestKind::SyncGroup(body) => sync_group::handle(shard, version, body).await,
        RequestKind::Heartbeat(body) => {
            Reply::Now(ResponseKind::Heartbeat(heartbeat::handle(shard, version, body).await))
        }
        RequestKind::LeaveGroup(body) => {
            Reply::Now(ResponseKind::LeaveGroup(leave_group::handle(shard, version, body).await))
        }
        RequestKind::ListGroups(body) => {
            Reply::Now(ResponseKind::ListGroups(list_groups::handle(shard, version, body).await))
        }
        RequestKind::DescribeGroups(body) => {
            Reply::Now(ResponseKind::DescribeGroups(describe_groups::handle(shard, version, body).await))
        }
        RequestKind::DeleteGroups(body) => delete_groups::handle(shard, version, body).await,
        RequestKind::ConsumerGroupHeartbeat(body) => {
            let id = request.header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
            let client = Client { id, host: client_host.to_owned() };
            let response = consumer_group_heartbeat::handle(shard, version, client, body).await;
            Reply::Now(ResponseKind::ConsumerGroupHeartbeat(response))
        }
        RequestKind::ConsumerGroupDescribe(body) => {
            Reply::Now(ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(shard, version, body).await))
        }
        RequestKind::ShareGroupHeartbeat(body) => {
            let id = request.header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
            let client = Client { id, host: client_host.to_owned() };
            let response = share_group_heartbeat::handle(shard, client, body).await;
            Reply::Now(ResponseKind::ShareGroupHeartbeat(response))
        }
        RequestKind::ShareGroupDescribe(body) => {
            Reply::Now(ResponseKind::ShareGroupDescribe(share_group_describe::handle(shard, body).await))
        }
        RequestKind::ShareFetch(body) => Reply::Now(ResponseKind::ShareFetch(share_fetch::handle(shard, body).await)),
        RequestKind::ShareAcknowledge(body) => {
            Reply::Now(ResponseKind::ShareAcknowledge(share_acknowledge::handle(shard, body).await))
        }
        RequestKind::DescribeShareGroupOffsets(body) => {
            Reply::Now(ResponseKind::DescribeShareGroupOffsets(describe_share_group_offsets::handle(shard, body).await))
        }
        RequestKind::AlterShareGroupOffsets(body) => {
            Reply::Now(ResponseKind::AlterShareGroupOffsets(alter_share_group_offsets::handle(shard, body).await))
        }
        RequestKind::DeleteShareGroupOffsets(body) => {
            Reply::Now(ResponseKind::DeleteShareGroupOffsets(delete_share_group_offsets::handle(shard, body).await))
        }
        RequestKind::OffsetDelete(body) => offset_delete::handle(shard, version, body).await,
        RequestKind::WriteTxnMarkers(body) => {
            Reply::Now(ResponseKind::WriteTxnMarkers(write_txn_markers::handle(shard, version, body).await))
        }
        RequestKind::DescribeProducers(body) => {
            Reply::Now(ResponseKind::DescribeProducers(describe_producers::handle(shard, version, body).await))
        }
        RequestKind::TxnOffsetCommit(body) => txn_offset_commit::handle(shard, version, body).await,
        // Our bug (a row in SUPPORTED_APIS without an arm here), not the
        // client's: say so loudly, but cost only this connection.
        _ => {
            tracing::error!(api_key = ?request.api_key, version, "advertised API has no handler");
            Reply::Close(format!("no handler for {:?}", request.api_key))
        }
    }
}

/// A Rust string as the protocol's string type.
pub(crate) fn str_bytes(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}
