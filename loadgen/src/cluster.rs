//! What loadgen learns from the cluster before it starts: the brokers, the
//! topic (created with `--partitions` when missing) and each partition's
//! leader; plus the small setup calls a producer, consumer or committer
//! makes (InitProducerId, ListOffsets, FindCoordinator).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use protocol::messages::metadata_request::MetadataRequestTopic;
use protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, FindCoordinatorRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, RequestKind, ResponseKind, TopicName,
};
use protocol::{ErrorCode, StrBytes};

use crate::connection::Connection;

/// How long the topic may take to get leaders for all its partitions.
const LEADERS_WAIT: Duration = Duration::from_secs(30);
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// How long a group's coordinator may take to be found (a broker that just
/// started may still be loading its coordinators).
const COORDINATOR_WAIT: Duration = Duration::from_secs(30);
/// FindCoordinator's key types: consumer groups, transactional ids.
pub const KEY_TYPE_GROUP: i8 = 0;
pub const KEY_TYPE_TRANSACTION: i8 = 1;
/// Codes that mean "ask again shortly": COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_RETRIABLE: [i16; 2] = [14, 15];

/// A partition and the broker that leads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
}

/// The topic and the addresses of the brokers leading its partitions.
/// Plain data, sent to every executor.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
    /// Broker id to "host:port".
    pub brokers: BTreeMap<i32, String>,
}

impl Cluster {
    pub fn broker_addr(&self, node_id: i32) -> anyhow::Result<&str> {
        self.brokers.get(&node_id).map(String::as_str).with_context(|| format!("no address for broker {node_id}"))
    }

    /// Leaders in ascending id order, each with its partitions (indexes
    /// into `partitions`) among those in `chosen`.
    pub fn by_leader(&self, chosen: impl Fn(usize) -> bool) -> BTreeMap<i32, Vec<usize>> {
        let mut out: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, partition) in self.partitions.iter().enumerate() {
            if chosen(i) {
                out.entry(partition.leader).or_default().push(i);
            }
        }
        out
    }
}

pub fn error_name(code: i16) -> String {
    match ErrorCode::try_from_code(code) {
        Some(error) => format!("{error:?} ({code})"),
        None => format!("error {code}"),
    }
}

/// Finds the topic, creating it with `partitions` partitions if it is
/// missing, and waits until every partition has a leader.
pub async fn discover(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
    client_id: &str,
) -> anyhow::Result<Cluster> {
    let mut connection = Connection::connect(bootstrap, client_id).await?;
    let deadline = Instant::now() + LEADERS_WAIT;
    let mut created = false;
    loop {
        match metadata(&mut connection, topic).await? {
            Lookup::Ready(cluster) => return Ok(cluster),
            Lookup::Missing if !created => {
                create_topic(&mut connection, topic, partitions, configs).await?;
                created = true;
            }
            Lookup::Missing | Lookup::NotReady => {}
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after {} s", LEADERS_WAIT.as_secs());
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

enum Lookup {
    Ready(Cluster),
    Missing,
    NotReady,
}

async fn metadata(connection: &mut Connection, topic: &str) -> anyhow::Result<Lookup> {
    let mut request = MetadataRequest::default();
    let mut wanted = MetadataRequestTopic::default();
    wanted.name = Some(TopicName(StrBytes::from_string(topic.to_owned())));
    request.topics = Some(vec![wanted]);
    request.allow_auto_topic_creation = false;
    let ResponseKind::Metadata(response) = connection.call(ApiKey::Metadata, RequestKind::Metadata(request)).await?
    else {
        bail!("Metadata answered with another API");
    };
    let brokers = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
    let Some(found) = response.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic)) else {
        return Ok(Lookup::Missing);
    };
    match found.error_code {
        0 => {}
        3 => return Ok(Lookup::Missing),
        5 => return Ok(Lookup::NotReady),
        code => bail!("Metadata for topic {topic}: {}", error_name(code)),
    }
    let mut partitions: Vec<PartitionInfo> = found
        .partitions
        .iter()
        .map(|p| PartitionInfo { index: p.partition_index, leader: p.leader_id.0, leader_epoch: p.leader_epoch })
        .collect();
    partitions.sort_by_key(|p| p.index);
    let cluster = Cluster { topic: topic.to_owned(), topic_id: found.topic_id, partitions, brokers };
    let ready = !cluster.partitions.is_empty()
        && cluster.partitions.iter().all(|p| p.leader >= 0 && cluster.brokers.contains_key(&p.leader));
    Ok(if ready { Lookup::Ready(cluster) } else { Lookup::NotReady })
}

async fn create_topic(
    connection: &mut Connection,
    topic: &str,
    partitions: i32,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let mut creatable = CreatableTopic::default();
    creatable.configs = configs
        .iter()
        .map(|(key, value)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string(key.clone());
            config.value = Some(StrBytes::from_string(value.clone()));
            config
        })
        .collect();
    creatable.name = TopicName(StrBytes::from_string(topic.to_owned()));
    creatable.num_partitions = partitions;
    creatable.replication_factor = -1;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![creatable];
    request.timeout_ms = 30_000;
    let body = RequestKind::CreateTopics(request);
    let ResponseKind::CreateTopics(response) = connection.call(ApiKey::CreateTopics, body).await? else {
        bail!("CreateTopics answered with another API");
    };
    for result in &response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            bail!("creating topic {topic}: {} {message}", error_name(result.error_code));
        }
    }
    Ok(())
}

/// An idempotent producer id and epoch.
pub async fn init_producer_id(connection: &mut Connection) -> anyhow::Result<(i64, i16)> {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = -1;
    let body = RequestKind::InitProducerId(request);
    let ResponseKind::InitProducerId(response) = connection.call(ApiKey::InitProducerId, body).await? else {
        bail!("InitProducerId answered with another API");
    };
    if response.error_code != 0 {
        bail!("InitProducerId: {}", error_name(response.error_code));
    }
    Ok((response.producer_id.0, response.producer_epoch))
}

/// ListOffsets timestamps.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// The offset at `timestamp` (EARLIEST or LATEST) of each of `partitions`.
pub async fn list_offsets(
    connection: &mut Connection,
    topic: &str,
    partitions: &[PartitionInfo],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    let mut wanted = ListOffsetsTopic::default();
    wanted.name = TopicName(StrBytes::from_string(topic.to_owned()));
    wanted.partitions = partitions
        .iter()
        .map(|p| {
            let mut partition = ListOffsetsPartition::default();
            partition.partition_index = p.index;
            partition.current_leader_epoch = p.leader_epoch;
            partition.timestamp = timestamp;
            partition
        })
        .collect();
    request.topics = vec![wanted];
    let body = RequestKind::ListOffsets(request);
    let ResponseKind::ListOffsets(response) = connection.call(ApiKey::ListOffsets, body).await? else {
        bail!("ListOffsets answered with another API");
    };
    let mut offsets = BTreeMap::new();
    for topic_response in &response.topics {
        for partition in &topic_response.partitions {
            if partition.error_code != 0 {
                bail!("ListOffsets {topic}-{}: {}", partition.partition_index, error_name(partition.error_code));
            }
            offsets.insert(partition.partition_index, partition.offset);
        }
    }
    for p in partitions {
        if !offsets.contains_key(&p.index) {
            bail!("ListOffsets did not answer for {topic}-{}", p.index);
        }
    }
    Ok(offsets)
}

/// The address ("host:port") of the coordinator of `key` (a group, or a
/// transactional id, by `key_type`), asked of `connection`'s broker;
/// retried while the broker says the coordinator is loading or not
/// available, for up to [`COORDINATOR_WAIT`].
pub async fn find_coordinator(connection: &mut Connection, key_type: i8, key: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + COORDINATOR_WAIT;
    loop {
        let version = connection.versions.get(ApiKey::FindCoordinator)?;
        let mut request = FindCoordinatorRequest::default();
        request.key_type = key_type;
        if version >= 4 {
            request.coordinator_keys = vec![StrBytes::from_string(key.to_owned())];
        } else {
            request.key = StrBytes::from_string(key.to_owned());
        }
        let body = RequestKind::FindCoordinator(request);
        let ResponseKind::FindCoordinator(response) = connection.call(ApiKey::FindCoordinator, body).await? else {
            bail!("FindCoordinator answered with another API");
        };
        let (code, host, port) = if version >= 4 {
            let found = response.coordinators.first().context("FindCoordinator answered no coordinator")?;
            (found.error_code, found.host.to_string(), found.port)
        } else {
            (response.error_code, response.host.to_string(), response.port)
        };
        match code {
            0 => return Ok(format!("{host}:{port}")),
            code if COORDINATOR_RETRIABLE.contains(&code) && Instant::now() < deadline => {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            code => bail!("FindCoordinator for {key}: {}", error_name(code)),
        }
    }
}
