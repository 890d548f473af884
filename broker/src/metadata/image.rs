//! The in-memory cluster metadata image: what every shard reads, as an
//! immutable `Arc<MetadataImage>` snapshot published by the controller
//! (shard 0) after each durable change.
//!
//! Invariants kept by [`MetadataImage::apply`]:
//! - `topics` and `topic_names_by_id` describe the same set of topics: every
//!   topic's id maps back to its name and nothing else is in the map;
//! - a topic's `partitions` are sorted by partition id, without duplicates.
//!
//! `apply` is total: replaying a log must never fail on a record that the
//! controller should not have written (a second topic with the same name,
//! partitions of a deleted topic). Such records are our bugs, so they are
//! logged as warnings and applied in the least surprising way, rather than
//! leaving a broker that cannot start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::record::MetadataRecord;

/// One immutable version of the cluster metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// Generated once when the metadata log is created (22 characters of
    /// base64url, like Kafka's) and never changed.
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Topic ids to names, for the APIs that address topics by id.
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// Dynamic broker config overrides (IncrementalAlterConfigs on a broker).
    pub broker_configs: BTreeMap<String, String>,
    /// First producer id not yet handed out by any block.
    pub next_producer_id: i64,
}

/// A topic and its partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub topic_id: Uuid,
    /// Sorted by `partition`; ids are 0..n when the controller created them.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides, keyed by Kafka's spelling
    /// (`retention.ms`); defaults are not stored.
    pub configs: BTreeMap<String, String>,
}

/// One partition's placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PartitionMeta {
    pub partition: i32,
    /// The shard (executor index) that owns the partition on this broker.
    pub shard: u32,
    pub leader_epoch: i32,
}

impl TopicMeta {
    /// The partition with id `partition`, if the topic has it.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMeta> {
        self.partitions.binary_search_by_key(&partition, |p| p.partition).ok().map(|i| &self.partitions[i])
    }
}

impl MetadataImage {
    /// The topic with id `id`, if it exists.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicMeta>> {
        self.topic_names_by_id.get(id).and_then(|name| self.topics.get(name))
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMeta>> {
        self.topics.get(name)
    }

    /// An existing topic whose name differs from `name` only by '.' versus
    /// '_'. Kafka refuses to create such a topic (INVALID_TOPIC_EXCEPTION)
    /// because both spellings map to the same metric names.
    pub fn colliding_topic_name(&self, name: &str) -> Option<&str> {
        let unify = |s: &str| s.replace('.', "_");
        let wanted = unify(name);
        self.topics.keys().find(|existing| existing.as_str() != name && unify(existing) == wanted).map(String::as_str)
    }

    /// Applies one record. Total: see the module comment.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => self.cluster_id.clone_from(cluster_id),
            MetadataRecord::TopicCreated { name, topic_id, partitions, configs } => {
                self.create_topic(name, *topic_id, partitions, configs)
            }
            MetadataRecord::PartitionsCreated { topic_id, partitions } => self.create_partitions(topic_id, partitions),
            MetadataRecord::TopicDeleted { topic_id } => {
                if let Some(name) = self.topic_names_by_id.remove(topic_id) {
                    self.topics.remove(&name);
                } else {
                    tracing::warn!(%topic_id, "metadata: deletion of unknown topic id ignored");
                }
            }
            MetadataRecord::TopicConfigsSet { topic_id, configs } => match self.topic_mut(topic_id) {
                Some(topic) => topic.configs.clone_from(configs),
                None => tracing::warn!(%topic_id, "metadata: configs of unknown topic id ignored"),
            },
            MetadataRecord::BrokerConfigsSet { configs } => self.broker_configs.clone_from(configs),
            MetadataRecord::ProducerIdsAllocated { next_producer_id } => {
                // Never move backwards: a producer id handed out twice would
                // let two producers fence each other's sequences.
                if *next_producer_id < self.next_producer_id {
                    tracing::warn!(
                        next_producer_id,
                        current = self.next_producer_id,
                        "metadata: producer id allocation moving backwards ignored"
                    );
                }
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
        self.debug_check_invariants(record);
    }

    /// The image as the shortest list of records that rebuilds it: what a
    /// snapshot of the metadata log holds.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::with_capacity(self.topics.len() + 3);
        records.push(MetadataRecord::ClusterCreated { cluster_id: self.cluster_id.clone() });
        if !self.broker_configs.is_empty() {
            records.push(MetadataRecord::BrokerConfigsSet { configs: self.broker_configs.clone() });
        }
        if self.next_producer_id != 0 {
            records.push(MetadataRecord::ProducerIdsAllocated { next_producer_id: self.next_producer_id });
        }
        records.extend(self.topics.values().map(|topic| MetadataRecord::TopicCreated {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions.clone(),
            configs: topic.configs.clone(),
        }));
        records
    }

    fn topic_mut(&mut self, topic_id: &Uuid) -> Option<&mut TopicMeta> {
        let name = self.topic_names_by_id.get(topic_id)?;
        self.topics.get_mut(name).map(Arc::make_mut)
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        partitions: &[PartitionMeta],
        configs: &BTreeMap<String, String>,
    ) {
        if let Some(old) = self.topics.remove(name) {
            tracing::warn!(topic = name, old_topic_id = %old.topic_id, "metadata: topic created twice; replacing it");
            self.topic_names_by_id.remove(&old.topic_id);
        }
        if let Some(old_name) = self.topic_names_by_id.remove(&topic_id) {
            tracing::warn!(%topic_id, old_name, "metadata: topic id reused; dropping the older topic");
            self.topics.remove(&old_name);
        }
        let mut topic = TopicMeta { name: name.to_owned(), topic_id, partitions: Vec::new(), configs: configs.clone() };
        merge_partitions(&mut topic, partitions);
        self.topic_names_by_id.insert(topic_id, name.to_owned());
        self.topics.insert(name.to_owned(), Arc::new(topic));
    }

    fn create_partitions(&mut self, topic_id: &Uuid, partitions: &[PartitionMeta]) {
        match self.topic_mut(topic_id) {
            Some(topic) => merge_partitions(topic, partitions),
            None => tracing::warn!(%topic_id, "metadata: partitions of unknown topic id ignored"),
        }
    }

    /// Checks the module's invariants for the topic a record touched (all
    /// topics would make replay quadratic in debug builds).
    fn debug_check_invariants(&self, record: &MetadataRecord) {
        debug_assert_eq!(self.topics.len(), self.topic_names_by_id.len(), "topics and topic ids disagree");
        let topic = match record {
            MetadataRecord::TopicCreated { name, .. } => self.topics.get(name),
            MetadataRecord::PartitionsCreated { topic_id, .. } => self.topic_by_id(topic_id),
            _ => None,
        };
        if let Some(topic) = topic {
            debug_assert_eq!(
                self.topic_names_by_id.get(&topic.topic_id),
                Some(&topic.name),
                "topic id does not map back"
            );
            debug_assert!(
                topic.partitions.windows(2).all(|w| w[0].partition < w[1].partition),
                "partitions of {} not sorted and unique",
                topic.name
            );
        }
    }
}

/// Adds `partitions` to `topic`, keeping them sorted; a partition id that
/// already exists is replaced (the later record wins).
fn merge_partitions(topic: &mut TopicMeta, partitions: &[PartitionMeta]) {
    for partition in partitions {
        match topic.partitions.binary_search_by_key(&partition.partition, |p| p.partition) {
            Ok(index) => {
                tracing::warn!(
                    topic = topic.name,
                    partition = partition.partition,
                    "metadata: partition created twice"
                );
                topic.partitions[index] = *partition;
            }
            Err(index) => topic.partitions.insert(index, *partition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(shards: &[u32]) -> Vec<PartitionMeta> {
        shards
            .iter()
            .enumerate()
            .map(|(i, &shard)| PartitionMeta { partition: i as i32, shard, leader_epoch: 0 })
            .collect()
    }

    // Proves that deleting a topic frees both its name and its id, and that a
    // topic of the same name can be created again with a new id.
    #[test]
    fn deleted_topic_frees_its_name() {
        let mut image = MetadataImage::default();
        let first_id = Uuid::new_v4();
        image.apply(&MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: first_id,
            partitions: partitions(&[0, 1]),
            configs: BTreeMap::new(),
        });
        image.apply(&MetadataRecord::TopicDeleted { topic_id: first_id });
        assert!(image.topic("orders").is_none());
        assert!(image.topic_by_id(&first_id).is_none());
        assert!(image.topic_names_by_id.is_empty());

        let second_id = Uuid::new_v4();
        image.apply(&MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: second_id,
            partitions: partitions(&[1]),
            configs: BTreeMap::new(),
        });
        assert_eq!(image.topic("orders").unwrap().topic_id, second_id);
        assert_eq!(image.topic_by_id(&second_id).unwrap().partitions.len(), 1);
    }

    // Proves that appended partitions land in order, that configs are
    // replaced as a whole, and that producer id blocks never move backwards.
    #[test]
    fn apply_partitions_configs_and_producer_ids() {
        let mut image = MetadataImage::default();
        let topic_id = Uuid::new_v4();
        let configs = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        image.apply(&MetadataRecord::TopicCreated {
            name: "t".into(),
            topic_id,
            partitions: partitions(&[0]),
            configs,
        });
        image.apply(&MetadataRecord::PartitionsCreated {
            topic_id,
            partitions: vec![
                PartitionMeta { partition: 2, shard: 0, leader_epoch: 0 },
                PartitionMeta { partition: 1, shard: 1, leader_epoch: 0 },
            ],
        });
        let topic = image.topic_by_id(&topic_id).unwrap();
        assert_eq!(topic.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(topic.partition(1).unwrap().shard, 1);

        let new_configs = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
        image.apply(&MetadataRecord::TopicConfigsSet { topic_id, configs: new_configs.clone() });
        assert_eq!(image.topic("t").unwrap().configs, new_configs);

        image.apply(&MetadataRecord::ProducerIdsAllocated { next_producer_id: 2000 });
        image.apply(&MetadataRecord::ProducerIdsAllocated { next_producer_id: 1000 });
        assert_eq!(image.next_producer_id, 2000);
    }

    // Proves that '.' and '_' spellings of one name are detected as a
    // collision, as Kafka's CreateTopics checks, but a name never collides
    // with itself.
    #[test]
    fn colliding_topic_names() {
        let mut image = MetadataImage::default();
        image.apply(&MetadataRecord::TopicCreated {
            name: "a.b".into(),
            topic_id: Uuid::new_v4(),
            partitions: Vec::new(),
            configs: BTreeMap::new(),
        });
        assert_eq!(image.colliding_topic_name("a_b"), Some("a.b"));
        assert_eq!(image.colliding_topic_name("a.b"), None);
        assert_eq!(image.colliding_topic_name("a-b"), None);
    }
}
