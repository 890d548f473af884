//! Cluster metadata: the cluster id, topics with their ids, partitions with
//! their shard placement and leader epochs, topic and broker config
//! overrides, and the next producer id block.
//!
//! One writer, the controller on shard 0, turns each change into
//! [`MetadataRecord`]s, makes them durable with [`MetadataLog::append`],
//! applies them to its [`MetadataImage`] and publishes a fresh
//! `Arc<MetadataImage>` to every shard. Shards only ever read an immutable
//! image, so nothing here is locked.
//!
//! The durable form is the metadata log in `<data dir>/__cluster_metadata/`,
//! specified in `docs/metadata.md`.
//!
//! # Layout
//! - [`image`] holds `MetadataImage`, `TopicMeta`, `PartitionMeta` and how
//!   records change them.
//! - [`record`] holds `MetadataRecord` and its flatbuffers encoding.
//! - `schema` holds the flatbuffers tables, hand-written as `flatc` would
//!   generate them (the module's only `unsafe`).
//! - [`log`] owns the metadata log file: framing, recovery, snapshots.
//! - [`placement`] spreads new partitions over shards.
//! - [`error`] holds `MetadataError`.

pub mod error;
pub mod image;
pub mod log;
pub mod placement;
pub mod record;
mod schema;

pub use error::MetadataError;
pub use image::{MetadataImage, PartitionMeta, TopicMeta};
pub use log::{new_cluster_id, MetadataLog, METADATA_DIR};
pub use placement::place_partitions;
pub use record::MetadataRecord;

/// Longest legal topic name, as in Kafka (`Topic.MAX_NAME_LENGTH`): a
/// partition directory `<name>-<partition>` must fit in 255 bytes.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Checks a topic name against Kafka's rules (`Topic.validate`): 1 to 249
/// characters of ASCII letters, digits, '.', '_' and '-', and not "." or
/// "..". The error is a message for the client, in Kafka's words.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".to_owned());
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(format!(
            "Topic name is illegal, it can't be longer than {TOPIC_NAME_LENGTH_MAX} characters, topic name: {name}"
        ));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves Kafka's topic name rules: length bounds, the two dot names, and
    // the allowed character set (no spaces, slashes or non-ASCII letters).
    #[test]
    fn topic_name_validation() {
        for good in ["a", "orders", "my.topic_v2-x", "__consumer_offsets", "...", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", &"x".repeat(250), "a b", "a/b", "tópico", "a\0", "a:b", "a*"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_topic_name("a b").unwrap_err().contains("ASCII alphanumerics"));
    }
}
