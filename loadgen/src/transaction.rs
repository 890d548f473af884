//! A producer's transactions (`--transaction-records`), as Kafka's
//! transactional producer runs them: a transactional id per producer,
//! FindCoordinator (key type 1) and InitProducerId with it, then for each
//! transaction AddPartitionsToTxn before a partition's first batch in it,
//! and EndTxn once every batch of the transaction is acknowledged.
//!
//! The control requests go over a connection of their own to the
//! transaction coordinator, one at a time, while the produce connections
//! stay pipelined. Like Kafka's clients, AddPartitionsToTxn is retried while
//! the coordinator still finishes the previous transaction
//! (CONCURRENT_TRANSACTIONS): EndTxn is answered once its Prepare record is
//! durable, before the markers are written.

use std::time::Duration;

use anyhow::{bail, Context};
use protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use protocol::messages::{
    AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, InitProducerIdRequest, ProducerId, RequestKind, ResponseKind,
    TopicName, TransactionalId,
};
use protocol::StrBytes;

use crate::cli::Cli;
use crate::cluster::{self, error_name};
use crate::connection::Connection;

/// Kafka's CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS and
/// COORDINATOR_NOT_AVAILABLE: ask again shortly.
const RETRIABLE: [i16; 3] = [51, 14, 15];
/// Kafka's producer retries after 20 ms (`retry.backoff.ms` is 100 ms, but
/// the transaction manager uses 20 ms for CONCURRENT_TRANSACTIONS).
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Longest a control request is retried.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// One producer's transactional state.
pub struct Transactions {
    coordinator: Connection,
    transactional_id: TransactionalId,
    pub producer_id: i64,
    pub producer_epoch: i16,
    topic: TopicName,
}

impl Transactions {
    /// Finds the coordinator of `transactional_id` and initializes it
    /// (fencing any earlier producer with the same id).
    pub async fn start(cli: &Cli, topic: &str, transactional_id: String) -> anyhow::Result<Transactions> {
        let address = {
            let mut bootstrap = Connection::connect(&cli.bootstrap, &cli.client_id).await?;
            cluster::find_coordinator(&mut bootstrap, cluster::KEY_TYPE_TRANSACTION, &transactional_id).await?
        };
        let coordinator = Connection::connect(&address, &cli.client_id)
            .await
            .with_context(|| format!("connecting to the coordinator of transactional id {transactional_id}"))?;
        let mut transactions = Transactions {
            coordinator,
            transactional_id: TransactionalId(StrBytes::from_string(transactional_id)),
            producer_id: -1,
            producer_epoch: -1,
            topic: TopicName(StrBytes::from_string(topic.to_owned())),
        };
        let timeout_ms = cli.transaction_timeout_ms;
        let build = |id: &TransactionalId| {
            let mut request = InitProducerIdRequest::default();
            request.transactional_id = Some(id.clone());
            request.transaction_timeout_ms = timeout_ms;
            request.producer_id = ProducerId(-1);
            request.producer_epoch = -1;
            (ApiKey::InitProducerId, RequestKind::InitProducerId(request))
        };
        let read = |response| match response {
            ResponseKind::InitProducerId(r) => Ok((r.error_code, (r.producer_id.0, r.producer_epoch))),
            _ => bail!("InitProducerId answered with another API"),
        };
        let (producer_id, producer_epoch) = transactions.retrying("InitProducerId", build, read).await?;
        transactions.producer_id = producer_id;
        transactions.producer_epoch = producer_epoch;
        Ok(transactions)
    }

    /// Adds `partitions` of the topic to the ongoing transaction (which
    /// the first add begins).
    pub async fn add_partitions(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let (producer_id, producer_epoch, topic) = (self.producer_id, self.producer_epoch, self.topic.clone());
        let build = |id: &TransactionalId| {
            let mut wanted = AddPartitionsToTxnTopic::default();
            wanted.name = topic.clone();
            wanted.partitions = partitions.to_vec();
            let mut request = AddPartitionsToTxnRequest::default();
            request.v3_and_below_transactional_id = id.clone();
            request.v3_and_below_producer_id = ProducerId(producer_id);
            request.v3_and_below_producer_epoch = producer_epoch;
            request.v3_and_below_topics = vec![wanted];
            (ApiKey::AddPartitionsToTxn, RequestKind::AddPartitionsToTxn(request))
        };
        let read = |response| match response {
            ResponseKind::AddPartitionsToTxn(r) => {
                let codes = r.results_by_topic_v3_and_below.iter().flat_map(|t| t.results_by_partition.iter());
                // One code stands for the request: the first error, else 0.
                Ok((codes.map(|p| p.partition_error_code).find(|&code| code != 0).unwrap_or(0), ()))
            }
            _ => bail!("AddPartitionsToTxn answered with another API"),
        };
        self.retrying("AddPartitionsToTxn", build, read).await
    }

    /// Commits (or aborts) the ongoing transaction.
    pub async fn end(&mut self, commit: bool) -> anyhow::Result<()> {
        let (producer_id, producer_epoch) = (self.producer_id, self.producer_epoch);
        let build = |id: &TransactionalId| {
            let mut request = EndTxnRequest::default();
            request.transactional_id = id.clone();
            request.producer_id = ProducerId(producer_id);
            request.producer_epoch = producer_epoch;
            request.committed = commit;
            (ApiKey::EndTxn, RequestKind::EndTxn(request))
        };
        let read = |response| match response {
            ResponseKind::EndTxn(r) => Ok((r.error_code, ())),
            _ => bail!("EndTxn answered with another API"),
        };
        self.retrying("EndTxn", build, read).await
    }

    /// Sends the request `build` makes until the error code `read` takes
    /// from its answer is not retriable; the value of a success, or the
    /// error named.
    async fn retrying<T>(
        &mut self,
        what: &str,
        build: impl Fn(&TransactionalId) -> (ApiKey, RequestKind),
        read: impl Fn(ResponseKind) -> anyhow::Result<(i16, T)>,
    ) -> anyhow::Result<T> {
        let deadline = std::time::Instant::now() + RETRY_FOR;
        loop {
            let (api_key, body) = build(&self.transactional_id);
            let (code, value) = read(self.coordinator.call(api_key, body).await?)?;
            match code {
                0 => return Ok(value),
                code if RETRIABLE.contains(&code) && std::time::Instant::now() < deadline => {
                    glommio::timer::sleep(RETRY_BACKOFF).await
                }
                code => bail!("{what} for transactional id {}: {}", self.transactional_id.0, error_name(code)),
            }
        }
    }
}
