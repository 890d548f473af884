//! Metadata records and their flatbuffers encoding: one batch of records is
//! one `RecordBatch` flatbuffer, the payload of one frame of the metadata log
//! (see `docs/metadata.md`). Encoding never fails; decoding checks the buffer
//! with flatbuffers' verifier and every field this code requires.

use std::collections::BTreeMap;

use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, WIPOffset};
use uuid::Uuid;

use super::image::PartitionMeta;
use super::schema::{self, RecordRef};

/// One change to the cluster metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// First record of every log (and snapshot): the cluster's id.
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: Vec<PartitionMeta>,
        configs: BTreeMap<String, String>,
    },
    /// Partitions appended to an existing topic (CreatePartitions).
    PartitionsCreated {
        topic_id: Uuid,
        partitions: Vec<PartitionMeta>,
    },
    TopicDeleted {
        topic_id: Uuid,
    },
    /// Replaces the topic's whole set of config overrides.
    TopicConfigsSet {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Replaces the whole set of dynamic broker config overrides.
    BrokerConfigsSet {
        configs: BTreeMap<String, String>,
    },
    /// A block of producer ids was handed out: ids below `next_producer_id`
    /// are taken.
    ProducerIdsAllocated {
        next_producer_id: i64,
    },
}

/// Why a payload whose CRC matched did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// The payload is not a valid `RecordBatch`, or a required field is
    /// missing or malformed.
    Invalid(String),
    /// A record type this broker does not know.
    UnknownRecordType(u8),
}

/// Encodes `records` as one `RecordBatch` flatbuffer.
pub(super) fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::with_capacity(1024);
    let entries: Vec<_> = records.iter().map(|record| encode_entry(&mut builder, record)).collect();
    let entries = builder.create_vector(&entries);
    let batch = builder.start_table();
    builder.push_slot_always(schema::RecordBatch::VT_RECORDS, entries);
    let batch = builder.end_table(batch);
    builder.finish_minimal(batch);
    builder.finished_data().to_vec()
}

/// Decodes a payload written by [`encode_batch`].
pub(super) fn decode_batch(payload: &[u8]) -> Result<Vec<MetadataRecord>, DecodeError> {
    let batch =
        schema::verified_batch(payload).map_err(|e| DecodeError::Invalid(format!("invalid flatbuffer: {e}")))?;
    let entries = batch.records().ok_or_else(|| invalid("RecordBatch without records"))?;
    if entries.is_empty() {
        return Err(invalid("RecordBatch with no records"));
    }
    entries.iter().map(|entry| decode_record(entry.record())).collect()
}

type Table = WIPOffset<TableFinishedWIPOffset>;

fn encode_entry(builder: &mut FlatBufferBuilder, record: &MetadataRecord) -> Table {
    let (record_type, value) = encode_record(builder, record);
    let entry = builder.start_table();
    builder.push_slot::<u8>(schema::RecordEntry::VT_RECORD_TYPE, record_type, 0);
    builder.push_slot_always(schema::RecordEntry::VT_RECORD, value);
    builder.end_table(entry)
}

/// Writes the record's own table; returns its union type and offset.
fn encode_record(builder: &mut FlatBufferBuilder, record: &MetadataRecord) -> (u8, Table) {
    use schema::*;
    match record {
        MetadataRecord::ClusterCreated { cluster_id } => {
            let cluster_id = builder.create_string(cluster_id);
            let table = builder.start_table();
            builder.push_slot_always(ClusterCreated::VT_CLUSTER_ID, cluster_id);
            (record_type::CLUSTER_CREATED, builder.end_table(table))
        }
        MetadataRecord::TopicCreated { name, topic_id, partitions, configs } => {
            let name = builder.create_string(name);
            let topic_id = builder.create_vector(topic_id.as_bytes());
            let partitions = encode_partitions(builder, partitions);
            let configs = encode_configs(builder, configs);
            let table = builder.start_table();
            builder.push_slot_always(TopicCreated::VT_NAME, name);
            builder.push_slot_always(TopicCreated::VT_TOPIC_ID, topic_id);
            builder.push_slot_always(TopicCreated::VT_PARTITIONS, partitions);
            builder.push_slot_always(TopicCreated::VT_CONFIGS, configs);
            (record_type::TOPIC_CREATED, builder.end_table(table))
        }
        MetadataRecord::PartitionsCreated { topic_id, partitions } => {
            let topic_id = builder.create_vector(topic_id.as_bytes());
            let partitions = encode_partitions(builder, partitions);
            let table = builder.start_table();
            builder.push_slot_always(PartitionsCreated::VT_TOPIC_ID, topic_id);
            builder.push_slot_always(PartitionsCreated::VT_PARTITIONS, partitions);
            (record_type::PARTITIONS_CREATED, builder.end_table(table))
        }
        MetadataRecord::TopicDeleted { topic_id } => {
            let topic_id = builder.create_vector(topic_id.as_bytes());
            let table = builder.start_table();
            builder.push_slot_always(TopicDeleted::VT_TOPIC_ID, topic_id);
            (record_type::TOPIC_DELETED, builder.end_table(table))
        }
        MetadataRecord::TopicConfigsSet { topic_id, configs } => {
            let topic_id = builder.create_vector(topic_id.as_bytes());
            let configs = encode_configs(builder, configs);
            let table = builder.start_table();
            builder.push_slot_always(TopicConfigsSet::VT_TOPIC_ID, topic_id);
            builder.push_slot_always(TopicConfigsSet::VT_CONFIGS, configs);
            (record_type::TOPIC_CONFIGS_SET, builder.end_table(table))
        }
        MetadataRecord::BrokerConfigsSet { configs } => {
            let configs = encode_configs(builder, configs);
            let table = builder.start_table();
            builder.push_slot_always(BrokerConfigsSet::VT_CONFIGS, configs);
            (record_type::BROKER_CONFIGS_SET, builder.end_table(table))
        }
        MetadataRecord::ProducerIdsAllocated { next_producer_id } => {
            let table = builder.start_table();
            builder.push_slot::<i64>(ProducerIdsAllocated::VT_NEXT_PRODUCER_ID, *next_producer_id, 0);
            (record_type::PRODUCER_IDS_ALLOCATED, builder.end_table(table))
        }
    }
}

fn encode_partitions<'b>(
    builder: &mut FlatBufferBuilder<'b>,
    partitions: &[PartitionMeta],
) -> WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<TableFinishedWIPOffset>>> {
    use schema::PartitionEntry;
    let entries: Vec<Table> = partitions
        .iter()
        .map(|p| {
            let table = builder.start_table();
            builder.push_slot::<i32>(PartitionEntry::VT_PARTITION, p.partition, 0);
            builder.push_slot::<u32>(PartitionEntry::VT_SHARD, p.shard, 0);
            builder.push_slot::<i32>(PartitionEntry::VT_LEADER_EPOCH, p.leader_epoch, 0);
            builder.end_table(table)
        })
        .collect();
    builder.create_vector(&entries)
}

fn encode_configs<'b>(
    builder: &mut FlatBufferBuilder<'b>,
    configs: &BTreeMap<String, String>,
) -> WIPOffset<flatbuffers::Vector<'b, flatbuffers::ForwardsUOffset<TableFinishedWIPOffset>>> {
    use schema::ConfigEntry;
    let entries: Vec<Table> = configs
        .iter()
        .map(|(key, value)| {
            let key = builder.create_string(key);
            let value = builder.create_string(value);
            let table = builder.start_table();
            builder.push_slot_always(ConfigEntry::VT_KEY, key);
            builder.push_slot_always(ConfigEntry::VT_VALUE, value);
            builder.end_table(table)
        })
        .collect();
    builder.create_vector(&entries)
}

fn invalid(reason: &str) -> DecodeError {
    DecodeError::Invalid(reason.to_owned())
}

fn decode_record(record: RecordRef<'_>) -> Result<MetadataRecord, DecodeError> {
    Ok(match record {
        RecordRef::ClusterCreated(t) => MetadataRecord::ClusterCreated {
            cluster_id: t.cluster_id().ok_or_else(|| invalid("ClusterCreated without cluster_id"))?.to_owned(),
        },
        RecordRef::TopicCreated(t) => MetadataRecord::TopicCreated {
            name: t.name().ok_or_else(|| invalid("TopicCreated without name"))?.to_owned(),
            topic_id: decode_uuid(t.topic_id(), "TopicCreated")?,
            partitions: decode_partitions(t.partitions()),
            configs: decode_configs(t.configs())?,
        },
        RecordRef::PartitionsCreated(t) => MetadataRecord::PartitionsCreated {
            topic_id: decode_uuid(t.topic_id(), "PartitionsCreated")?,
            partitions: decode_partitions(t.partitions()),
        },
        RecordRef::TopicDeleted(t) => {
            MetadataRecord::TopicDeleted { topic_id: decode_uuid(t.topic_id(), "TopicDeleted")? }
        }
        RecordRef::TopicConfigsSet(t) => MetadataRecord::TopicConfigsSet {
            topic_id: decode_uuid(t.topic_id(), "TopicConfigsSet")?,
            configs: decode_configs(t.configs())?,
        },
        RecordRef::BrokerConfigsSet(t) => MetadataRecord::BrokerConfigsSet { configs: decode_configs(t.configs())? },
        RecordRef::ProducerIdsAllocated(t) => {
            MetadataRecord::ProducerIdsAllocated { next_producer_id: t.next_producer_id().unwrap_or(0) }
        }
        RecordRef::Missing => return Err(invalid("RecordEntry without a record")),
        RecordRef::Unknown(record_type) => return Err(DecodeError::UnknownRecordType(record_type)),
    })
}

fn decode_uuid(bytes: Option<flatbuffers::Vector<'_, u8>>, record: &str) -> Result<Uuid, DecodeError> {
    let bytes = bytes.ok_or_else(|| DecodeError::Invalid(format!("{record} without topic_id")))?;
    Uuid::from_slice(bytes.bytes())
        .map_err(|_| DecodeError::Invalid(format!("{record} topic_id of {} bytes, expected 16", bytes.len())))
}

fn decode_partitions(
    partitions: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<schema::PartitionEntry<'_>>>>,
) -> Vec<PartitionMeta> {
    partitions
        .into_iter()
        .flatten()
        .map(|p| PartitionMeta {
            partition: p.partition().unwrap_or(0),
            shard: p.shard().unwrap_or(0),
            leader_epoch: p.leader_epoch().unwrap_or(0),
        })
        .collect()
}

fn decode_configs(
    configs: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<schema::ConfigEntry<'_>>>>,
) -> Result<BTreeMap<String, String>, DecodeError> {
    configs
        .into_iter()
        .flatten()
        .map(|entry| {
            let key = entry.key().ok_or_else(|| invalid("ConfigEntry without key"))?;
            let value = entry.value().ok_or_else(|| invalid("ConfigEntry without value"))?;
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// One record of every type, with non-default values in every field.
    pub(in super::super) fn every_record_type() -> Vec<MetadataRecord> {
        let topic_id = Uuid::new_v4();
        vec![
            MetadataRecord::ClusterCreated { cluster_id: "aGVsbG8td29ybGQtMTIzNA".into() },
            MetadataRecord::TopicCreated {
                name: "orders".into(),
                topic_id,
                partitions: vec![
                    PartitionMeta { partition: 0, shard: 3, leader_epoch: 7 },
                    PartitionMeta { partition: 1, shard: 0, leader_epoch: 0 },
                ],
                configs: BTreeMap::from([("retention.ms".into(), "60000".into()), ("empty".into(), String::new())]),
            },
            MetadataRecord::PartitionsCreated {
                topic_id,
                partitions: vec![PartitionMeta { partition: 2, shard: 1, leader_epoch: 0 }],
            },
            MetadataRecord::TopicConfigsSet {
                topic_id,
                configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            },
            MetadataRecord::BrokerConfigsSet { configs: BTreeMap::from([("log.retention.ms".into(), "1".into())]) },
            MetadataRecord::ProducerIdsAllocated { next_producer_id: 5000 },
            MetadataRecord::TopicDeleted { topic_id },
            MetadataRecord::TopicCreated {
                name: "bare".into(),
                topic_id: Uuid::new_v4(),
                partitions: Vec::new(),
                configs: BTreeMap::new(),
            },
        ]
    }

    /// A batch holding one entry of union type `record_type` whose value is
    /// an empty table: what a newer broker's record looks like to this one.
    pub(in super::super) fn encode_unknown_type(record_type: u8) -> Vec<u8> {
        let mut builder = FlatBufferBuilder::new();
        let value = builder.start_table();
        let value = builder.end_table(value);
        let entry = builder.start_table();
        builder.push_slot::<u8>(schema::RecordEntry::VT_RECORD_TYPE, record_type, 0);
        builder.push_slot_always(schema::RecordEntry::VT_RECORD, value);
        let entry = builder.end_table(entry);
        let entries = builder.create_vector(&[entry]);
        let batch = builder.start_table();
        builder.push_slot_always(schema::RecordBatch::VT_RECORDS, entries);
        let batch = builder.end_table(batch);
        builder.finish_minimal(batch);
        builder.finished_data().to_vec()
    }

    // Proves that every record type survives encode/decode unchanged.
    #[test]
    fn batch_round_trip() {
        let records = every_record_type();
        assert_eq!(decode_batch(&encode_batch(&records)).unwrap(), records);
    }

    // Proves that a record type from a newer version is reported by number,
    // and that garbage or truncated payloads are errors, never panics.
    #[test]
    fn unknown_types_and_garbage_are_errors() {
        assert_eq!(decode_batch(&encode_unknown_type(200)), Err(DecodeError::UnknownRecordType(200)));
        assert!(matches!(decode_batch(&[]), Err(DecodeError::Invalid(_))));
        assert!(matches!(decode_batch(&[0xff; 64]), Err(DecodeError::Invalid(_))));
        let payload = encode_batch(&every_record_type());
        for cut in 0..payload.len() {
            let _ = decode_batch(&payload[..cut]);
        }
        for flip in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[flip] ^= 0x5a;
            let _ = decode_batch(&damaged);
        }
    }
}
