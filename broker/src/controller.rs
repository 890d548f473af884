//! The controller role: the one writer of cluster metadata, on shard 0.
//!
//! A change (create or delete topics, add partitions, set topic or dynamic
//! broker configs, hand out producer ids) is made one at a time: written to the metadata log (durable
//! on return), then published as a new immutable snapshot to every shard,
//! each of which opens or removes the partitions placed on it before the
//! change is acknowledged. Other shards reach the controller with
//! `invoke_on(CONTROLLER_SHARD, ..)`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use protocol::ErrorCode;
use uuid::Uuid;

use crate::metadata::{self, MetadataImage, MetadataLog, MetadataRecord, PartitionMeta, TopicMeta};
use crate::partition::Partition;
use crate::shard::Shard;
use crate::topic_config::{self, BrokerScope, DynamicDefaults};

/// Producer ids are handed out in blocks; one metadata record per block.
const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    log: RefCell<MetadataLog>,
    /// Serialises metadata changes: a change is logged and published before
    /// the next one starts, so every shard sees them in the same order.
    changing: Semaphore,
    /// Producer ids left in the current block: [next, end).
    producer_ids: RefCell<(i64, i64)>,
}

/// What to create, from CreateTopics or auto-creation.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// -1: the broker default (`num.partitions`).
    pub partitions: i32,
    /// -1 or 1; a single node cannot do more.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    pub validate_only: bool,
}

impl TopicSpec {
    /// A topic with the broker's defaults (auto-creation).
    pub fn with_defaults(name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_owned(),
            partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
            validate_only: false,
        }
    }
}

/// One topic's outcome.
#[derive(Debug, Clone)]
pub struct TopicOutcome {
    pub name: String,
    pub error: Option<(ErrorCode, String)>,
    pub topic_id: Uuid,
    pub partitions: i32,
    /// The overrides it was created with (validate-only answers show them).
    pub configs: BTreeMap<String, String>,
}

impl TopicOutcome {
    pub fn failed(name: &str, error: ErrorCode, message: impl Into<String>) -> TopicOutcome {
        TopicOutcome {
            name: name.to_owned(),
            error: Some((error, message.into())),
            topic_id: Uuid::nil(),
            partitions: -1,
            configs: BTreeMap::new(),
        }
    }
}

impl Controller {
    pub fn new(log: MetadataLog) -> Controller {
        Controller { log: RefCell::new(log), changing: Semaphore::new(1), producer_ids: RefCell::new((0, 0)) }
    }

    /// Logs `records`, applies them to a copy of the current image and
    /// publishes it to every shard.
    async fn commit(&self, shard: &Rc<Shard>, records: Vec<MetadataRecord>) -> Result<(), String> {
        self.log.borrow_mut().append(&records).map_err(|err| err.to_string())?;
        let mut image = MetadataImage::clone(&shard.metadata());
        for record in &records {
            image.apply(record);
        }
        publish(shard, Arc::new(image)).await
    }

    pub async fn create_topics(&self, shard: &Rc<Shard>, specs: Vec<TopicSpec>) -> Vec<TopicOutcome> {
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let image = shard.metadata();
        let mut records = Vec::new();
        let mut outcomes = Vec::new();
        let mut placed = MetadataImage::clone(&image);
        for spec in specs {
            let outcome = self.plan_topic(shard, &placed, &spec);
            if let Some(record) = outcome.1 {
                if !spec.validate_only {
                    placed.apply(&record);
                    records.push(record);
                }
            }
            outcomes.push(outcome.0);
        }
        if !records.is_empty() {
            if let Err(err) = self.commit(shard, records).await {
                tracing::error!(error = %err, "creating topics failed");
                for outcome in outcomes.iter_mut().filter(|o| o.error.is_none()) {
                    outcome.error = Some((ErrorCode::UnknownServerError, err.clone()));
                }
            }
        }
        outcomes
    }

    fn plan_topic(
        &self,
        shard: &Shard,
        image: &MetadataImage,
        spec: &TopicSpec,
    ) -> (TopicOutcome, Option<MetadataRecord>) {
        let name = spec.name.as_str();
        if let Err(reason) = metadata::validate_topic_name(name) {
            return (TopicOutcome::failed(name, ErrorCode::InvalidTopicException, reason), None);
        }
        if image.topics.contains_key(name) {
            return (
                TopicOutcome::failed(name, ErrorCode::TopicAlreadyExists, format!("topic '{name}' already exists")),
                None,
            );
        }
        let partitions = if spec.partitions == -1 { shard.config.topic_defaults.partitions } else { spec.partitions };
        if partitions <= 0 {
            return (
                TopicOutcome::failed(
                    name,
                    ErrorCode::InvalidPartitions,
                    format!("{partitions} partitions: must be positive"),
                ),
                None,
            );
        }
        if spec.replication_factor != -1 && spec.replication_factor != 1 {
            return (
                TopicOutcome::failed(
                    name,
                    ErrorCode::InvalidReplicationFactor,
                    format!("replication factor {} is larger than the 1 available broker", spec.replication_factor),
                ),
                None,
            );
        }
        if let Err(err) = topic_config::validate_all(&spec.configs) {
            return (TopicOutcome::failed(name, ErrorCode::InvalidConfig, err.to_string()), None);
        }
        let topic_id = Uuid::new_v4();
        let placement = metadata::place_partitions(image, shard.count as u32, 0, partitions);
        let record = MetadataRecord::TopicCreated {
            name: name.to_owned(),
            topic_id,
            partitions: placement,
            configs: spec.configs.clone(),
        };
        (
            TopicOutcome { name: name.to_owned(), error: None, topic_id, partitions, configs: spec.configs.clone() },
            Some(record),
        )
    }

    /// Deletes topics by name; returns per-name outcomes (error or the id).
    pub async fn delete_topics(&self, shard: &Rc<Shard>, names: Vec<String>) -> Vec<TopicOutcome> {
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let image = shard.metadata();
        let mut records = Vec::new();
        let mut outcomes = Vec::new();
        for name in names {
            match image.topics.get(&name) {
                None => outcomes.push(TopicOutcome::failed(
                    &name,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )),
                Some(topic) => {
                    if !records
                        .iter()
                        .any(|r| matches!(r, MetadataRecord::TopicDeleted { topic_id } if *topic_id == topic.topic_id))
                    {
                        records.push(MetadataRecord::TopicDeleted { topic_id: topic.topic_id });
                    }
                    outcomes.push(TopicOutcome {
                        name: name.clone(),
                        error: None,
                        topic_id: topic.topic_id,
                        partitions: topic.partitions.len() as i32,
                        configs: topic.configs.clone(),
                    });
                }
            }
        }
        if !records.is_empty() {
            if let Err(err) = self.commit(shard, records).await {
                for outcome in outcomes.iter_mut().filter(|o| o.error.is_none()) {
                    outcome.error = Some((ErrorCode::UnknownServerError, err.clone()));
                }
            }
        }
        outcomes
    }

    /// Grows a topic to `total` partitions (CreatePartitions).
    pub async fn create_partitions(
        &self,
        shard: &Rc<Shard>,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let image = shard.metadata();
        let topic = existing_topic(&image, name)?;
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("topic '{name}' has {current} partitions; the new count {total} must be larger"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let partitions = metadata::place_partitions(&image, shard.count as u32, current, total - current);
        let record = MetadataRecord::PartitionsCreated { topic_id: topic.topic_id, partitions };
        self.commit(shard, vec![record]).await.map_err(|err| (ErrorCode::UnknownServerError, err))
    }

    /// Replaces a topic's config overrides (AlterConfigs, IncrementalAlterConfigs).
    pub async fn set_topic_configs(
        &self,
        shard: &Rc<Shard>,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), (ErrorCode, String)>,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let image = shard.metadata();
        let topic = existing_topic(&image, name)?;
        let mut configs = topic.configs.clone();
        edit(&mut configs)?;
        topic_config::validate_all(&configs).map_err(|err| (ErrorCode::InvalidConfig, err.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::TopicConfigsSet { topic_id: topic.topic_id, configs };
        self.commit(shard, vec![record]).await.map_err(|err| (ErrorCode::UnknownServerError, err))
    }

    /// Replaces the dynamic broker configs of one BROKER resource (`scope`)
    /// with what `edit` makes of them (AlterConfigs, IncrementalAlterConfigs
    /// on a BROKER resource). Keys are broker-level names (`log.retention.ms`),
    /// validated with the topic keys' parser; the whole set of dynamic
    /// configs is logged as one `BrokerConfigsSet` and published, and every
    /// shard applies the new effective config to the partitions it changes.
    pub async fn set_broker_configs(
        &self,
        shard: &Rc<Shard>,
        scope: BrokerScope,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), (ErrorCode, String)>,
        validate_only: bool,
    ) -> Result<(), (ErrorCode, String)> {
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let image = shard.metadata();
        let mut configs = topic_config::scope_configs(&image.broker_configs, scope);
        edit(&mut configs)?;
        topic_config::validate_broker_configs(&configs).map_err(|err| {
            let code = if err.is_read_only() { ErrorCode::InvalidRequest } else { ErrorCode::InvalidConfig };
            (code, err.to_string())
        })?;
        let stored = topic_config::replace_scope_configs(&image.broker_configs, scope, &configs);
        if validate_only || stored == image.broker_configs {
            return Ok(());
        }
        let record = MetadataRecord::BrokerConfigsSet { configs: stored };
        self.commit(shard, vec![record]).await.map_err(|err| (ErrorCode::UnknownServerError, err))
    }

    /// A producer id never handed out before, across restarts: ids come in
    /// blocks whose end is logged before any id of the block is used.
    pub async fn allocate_producer_id(&self, shard: &Rc<Shard>) -> Result<i64, String> {
        {
            let mut ids = self.producer_ids.borrow_mut();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let _turn = self.changing.acquire_permit(1).await.expect("controller semaphore is never closed");
        let mut ids = *self.producer_ids.borrow();
        if ids.0 >= ids.1 {
            let start = shard.metadata().next_producer_id;
            let end = start + PRODUCER_ID_BLOCK;
            self.commit(shard, vec![MetadataRecord::ProducerIdsAllocated { next_producer_id: end }]).await?;
            ids = (start, end);
        }
        let id = ids.0;
        *self.producer_ids.borrow_mut() = (ids.0 + 1, ids.1);
        Ok(id)
    }
}

fn existing_topic<'a>(image: &'a MetadataImage, name: &str) -> Result<&'a Arc<TopicMeta>, (ErrorCode, String)> {
    image.topics.get(name).ok_or_else(|| (ErrorCode::UnknownTopicOrPartition, format!("topic '{name}' does not exist")))
}

/// Installs `image` on every shard and waits until each has opened or
/// removed its partitions.
async fn publish(shard: &Rc<Shard>, image: Arc<MetadataImage>) -> Result<(), String> {
    let results = shard
        .invoke_on_all(move |shard| async move { install(&shard, image).await })
        .await
        .map_err(|err| err.to_string())?;
    results.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}

/// Brings a shard's open partitions in line with `image`: opens those newly
/// placed here, removes those of deleted topics (files included), applies
/// changed effective configs (a topic's overrides or the dynamic broker
/// defaults changed). Used at startup too.
pub async fn install(shard: &Rc<Shard>, image: Arc<MetadataImage>) -> Result<(), String> {
    let old = shard.metadata();
    shard.set_metadata(image.clone());
    let topic_ids = |image: &MetadataImage| image.topics.values().map(|topic| topic.topic_id).collect::<Vec<_>>();
    if topic_ids(&old) != topic_ids(&image) {
        // Topics came or went: regex subscriptions must be resolved again.
        shard.groups.metadata_changed();
    }
    let dynamic = DynamicDefaults::for_node(&image.broker_configs, shard.config.node_id);
    // Most changes (topics created, producer ids) leave every config alone:
    // only then is each open partition's effective config recomputed.
    let broker_configs_changed = old.broker_configs != image.broker_configs;
    let mut failures = Vec::new();
    for partition in shard.partitions() {
        let still_here = image.topic_by_id(&partition.topic_id).and_then(|topic| {
            topic.partitions.iter().find(|p| p.partition == partition.index).map(|p| (topic.clone(), *p))
        });
        match still_here {
            Some((topic, placed)) if shard.owner_of(placed.shard) == shard.id => {
                let overrides_changed = old.topic_by_id(&topic.topic_id).map(|t| &t.configs) != Some(&topic.configs);
                if overrides_changed || broker_configs_changed {
                    let config = topic_config::effective_with(&shard.config.topic_defaults, &dynamic, &topic.configs);
                    // Compared with what the partition runs with, so a
                    // change that leaves this topic's config as it was
                    // (it overrides the key) touches nothing.
                    if config != partition.config() {
                        if let Err(err) = partition.set_config(config) {
                            failures.push(format!("{}-{}: {err}", topic.name, partition.index));
                        }
                    }
                }
            }
            _ => {
                shard.remove_partition(&(partition.topic_id, partition.index));
                // Its share-state log is in the partition's directory.
                shard.share.remove_partition(&(partition.topic_id, partition.index)).await;
                if let Err(err) = partition.log.close().await {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %err, "closing a deleted partition");
                }
                let dir = partition.log.dir().to_path_buf();
                if let Err(err) = std::fs::remove_dir_all(&dir) {
                    failures.push(format!("removing {}: {err}", dir.display()));
                }
                tracing::info!(topic = %partition.topic, partition = partition.index, "partition deleted");
            }
        }
    }
    for topic in image.topics.values() {
        for placed in &topic.partitions {
            if shard.owner_of(placed.shard) != shard.id
                || shard.partition(&(topic.topic_id, placed.partition)).is_some()
            {
                continue;
            }
            if let Err(err) = open_partition(shard, topic, placed, &dynamic).await {
                failures.push(err);
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

async fn open_partition(
    shard: &Rc<Shard>,
    topic: &TopicMeta,
    placed: &PartitionMeta,
    dynamic: &DynamicDefaults,
) -> Result<(), String> {
    let dir = shard.partition_dir(&topic.name, placed.partition);
    let config = topic_config::effective_with(&shard.config.topic_defaults, dynamic, &topic.configs);
    let partition = Partition::open(
        dir.clone(),
        topic.name.clone(),
        topic.topic_id,
        placed.partition,
        placed.leader_epoch,
        config,
        shard.resources.clone(),
    )
    .await
    .map_err(|err| format!("opening {}: {err}", dir.display()))?;
    shard.insert_partition(Rc::new(partition));
    Ok(())
}
