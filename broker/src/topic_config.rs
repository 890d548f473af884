//! Kafka's topic-level configuration keys (`segment.bytes`, `retention.ms`, ...)
//! and their broker-level defaults (`log.segment.bytes`, ...): the one module
//! that knows these spellings, their types and what each means for the engine.
//!
//! CreateTopics, DescribeConfigs, AlterConfigs and IncrementalAlterConfigs all
//! go through here. A topic stores only the keys explicitly set on it
//! ([`TopicOverrides`]); its effective settings are layered, as in Kafka
//! ([`effective_with`]): built-in default < the file's `[topics]` value
//! ([`TopicDefaults`]) < the dynamic cluster-wide broker default < the
//! dynamic default of this broker ([`DynamicDefaults`], set with
//! AlterConfigs on a BROKER resource) < the topic's override.
//!
//! Dynamic broker configs are stored in the metadata image's
//! `broker_configs` map under their broker-level names: the cluster-wide
//! default as `log.retention.ms`, one broker's as `<node id>/log.retention.ms`
//! ([`scope_configs`], [`replace_scope_configs`]). They are validated by the
//! same parser as topic values ([`validate_broker_configs`]).
//!
//! Invariants: every key of [`TOPIC_KEYS`] is accepted by [`validate`] and
//! described by [`describe`]; a value that passed [`validate`] always applies
//! (so [`effective`] cannot fail on validated overrides); applying overrides is
//! order-independent (`flush.messages` and `flush.ms` combine into one
//! [`FlushPolicy`] through a bijection, see [`flush_parts`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use engine::{FlushPolicy, LogConfig};

use crate::config::{Config, TopicDefaults};

/// The keys explicitly set on one topic, Kafka spelling to value as the
/// client sent it. Keys not present take the broker's default.
pub type TopicOverrides = BTreeMap<String, String>;

/// How a batch's timestamp is chosen (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamp is kept (checked against the
    /// `message.timestamp.{before,after}.max.ms` bounds).
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's spelling, as in configs and DescribeConfigs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }

    /// Parses Kafka's spelling; case-sensitive, as Kafka's own validator is.
    pub fn parse(text: &str) -> Option<TimestampType> {
        match text {
            "CreateTime" => Some(TimestampType::CreateTime),
            "LogAppendTime" => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a topic config was refused. The broker answers INVALID_CONFIG (40)
/// with the `Display` text as the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("unknown topic config `{key}`")]
    Unknown { key: String },
    #[error("topic config `{key}`: expected {expected}, got `{value}`")]
    InvalidValue { key: String, value: String, expected: &'static str },
    /// A well-formed Kafka value that Stele does not implement.
    #[error("topic config `{key}` = `{value}`: {reason}")]
    Unsupported { key: String, value: String, reason: &'static str },
}

impl TopicConfigError {
    /// The key the error is about, as the client spelled it.
    pub fn key(&self) -> &str {
        match self {
            TopicConfigError::Unknown { key }
            | TopicConfigError::InvalidValue { key, .. }
            | TopicConfigError::Unsupported { key, .. } => key,
        }
    }
}

/// Where a described value comes from; the numbers are Kafka's
/// DescribeConfigs `ConfigSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (Kafka's DYNAMIC_TOPIC_CONFIG).
    TopicOverride = 1,
    /// Set dynamically for this broker, on BROKER resource `<node id>`
    /// (DYNAMIC_BROKER_CONFIG).
    DynamicBroker = 2,
    /// Set in the broker's configuration file (STATIC_BROKER_CONFIG).
    BrokerDefault = 4,
    /// Stele's built-in default (DEFAULT_CONFIG).
    Default = 5,
    /// Set dynamically as the cluster-wide default, on BROKER resource ``
    /// (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefaultBroker = 7,
    /// Set on a GROUP resource (DYNAMIC_GROUP_CONFIG, KIP-848).
    DynamicGroup = 8,
}

impl ConfigSource {
    /// The wire value (DescribeConfigs v1+ `config_source`).
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// A described value's type; the numbers are Kafka's DescribeConfigs v3+
/// `config_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

impl ConfigType {
    /// The wire value (DescribeConfigs v3+ `config_type`).
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// One entry of a DescribeConfigs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    /// Always false: no Stele config is a secret.
    pub sensitive: bool,
    pub config_type: ConfigType,
    pub documentation: &'static str,
    /// Where else the value could come from, most specific first, as Kafka
    /// lists them when `include_synonyms` is set: the topic override, the
    /// dynamic broker value, the dynamic cluster default, the broker key set
    /// in the file, the built-in default.
    pub synonyms: Vec<ConfigSynonym>,
}

/// One synonym of a [`ConfigEntry`] (DescribeConfigs v1+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

/// A topic's settings after applying its overrides to the broker defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveTopicConfig {
    /// What the engine needs: segment.*, retention.*, flush.*, index.interval.bytes.
    pub log: LogConfig,
    /// `max.message.bytes`: the largest record batch accepted, in bytes.
    pub message_bytes_max: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a CreateTime timestamp may
    /// lie in the past of the broker's clock.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far it may lie in the future.
    pub timestamp_after_max_ms: i64,
    /// `unclean.leader.election.enable`: accepted and kept for
    /// DescribeConfigs, but meaningless on a single node (a partition's only
    /// replica is always its leader).
    pub unclean_leader_election_enable: bool,
}

impl Default for EffectiveTopicConfig {
    /// Stele's built-in defaults, used when the broker file sets nothing.
    fn default() -> Self {
        EffectiveTopicConfig {
            log: LogConfig::default(),
            message_bytes_max: MESSAGE_BYTES_MAX_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            unclean_leader_election_enable: false,
        }
    }
}

/// Kafka's default `message.max.bytes`: 1 MiB plus the record batch overhead.
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1_048_588;
/// Kafka's default `message.timestamp.after.max.ms`: one hour.
pub const TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;

/// Kafka's value for "never" in `flush.messages`, `flush.ms` and other LONG
/// keys without a dedicated "off" value.
const LONG_MAX: i64 = i64::MAX;

/// One supported topic key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicKey {
    /// Topic-level name, Kafka spelling (`segment.bytes`).
    pub name: &'static str,
    /// Name of the broker-level default, Kafka spelling (`log.segment.bytes`);
    /// the key of the `[topics]` table in `stele.toml`.
    pub broker_name: &'static str,
    pub config_type: ConfigType,
    pub documentation: &'static str,
}

/// Every supported topic key. To add one: a row here, an arm in
/// `apply` and in `value_of`, a line in `docs/configuration.md` (a test checks
/// the docs) and in `stele.toml`.
pub const TOPIC_KEYS: &[TopicKey] = &[
    TopicKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        config_type: ConfigType::Int,
        documentation: "Roll to a new segment file before the active one grows past this many bytes.",
    },
    TopicKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        config_type: ConfigType::Long,
        documentation: "Roll to a new segment once the active segment's first batch is this old (milliseconds).",
    },
    TopicKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        config_type: ConfigType::Long,
        documentation: "Delete the oldest segments while the partition is larger than this; -1 for no size limit.",
    },
    TopicKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        config_type: ConfigType::Long,
        documentation: "Delete segments whose newest record is older than this (milliseconds); -1 keeps data forever.",
    },
    TopicKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        config_type: ConfigType::Long,
        documentation: "fdatasync once this many records are unflushed; 1 (Stele's default) syncs every write \
                        round, so acknowledged writes are on disk. 9223372036854775807 disables the trigger.",
    },
    TopicKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        config_type: ConfigType::Long,
        documentation: "fdatasync once the oldest unflushed record is this old (milliseconds); \
                        9223372036854775807 (the default) disables the trigger.",
    },
    TopicKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        config_type: ConfigType::Int,
        documentation: "Bytes of log between two entries of the offset and time indexes.",
    },
    TopicKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        config_type: ConfigType::Int,
        documentation: "Largest record batch accepted, in bytes (after producer compression).",
    },
    TopicKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        config_type: ConfigType::String,
        documentation: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches on append.",
    },
    TopicKey {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        documentation: "Refuse CreateTime batches whose timestamp is further than this in the past (milliseconds).",
    },
    TopicKey {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        documentation: "Refuse CreateTime batches whose timestamp is further than this in the future (milliseconds).",
    },
    TopicKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        config_type: ConfigType::List,
        documentation: "Only delete is supported: old segments are deleted by retention. Compaction is not \
                        supported yet.",
    },
    TopicKey {
        name: "compression.type",
        broker_name: "compression.type",
        config_type: ConfigType::String,
        documentation: "Only producer is supported: batches are stored as the producer compressed them.",
    },
    TopicKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        config_type: ConfigType::Int,
        documentation: "Only 1 is supported: a single-node broker keeps one replica of each partition.",
    },
    TopicKey {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        documentation: "Accepted and ignored: on a single node a partition's only replica is always its leader.",
    },
];

/// The supported key with this topic-level name.
pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|key| key.name == name)
}

/// The supported key whose broker-level default has this name.
pub fn topic_key_for_broker_name(broker_name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|key| key.broker_name == broker_name)
}

/// Checks one key and value as a client would send them in CreateTopics or
/// AlterConfigs: the key must be supported and the value well-formed and
/// accepted by Stele.
pub fn validate(key: &str, value: &str) -> Result<(), TopicConfigError> {
    let mut scratch = EffectiveTopicConfig::default();
    apply(&mut scratch, key, value)
}

/// Checks a whole set of overrides: each key and value, then the resulting
/// engine settings together (applied to Stele's built-in defaults).
pub fn validate_all(overrides: &TopicOverrides) -> Result<(), TopicConfigError> {
    let mut config = EffectiveTopicConfig::default();
    for (key, value) in overrides {
        apply(&mut config, key, value)?;
    }
    config.log.validate().map_err(|error| match error {
        engine::EngineError::Config { key, value, reason } => {
            TopicConfigError::InvalidValue { key: key.to_string(), value, expected: reason }
        }
        other => unreachable!("LogConfig::validate returns only Config errors, got {other}"),
    })
}

/// The broker defaults as a topic's effective settings (no overrides).
pub fn from_defaults(defaults: &TopicDefaults) -> EffectiveTopicConfig {
    EffectiveTopicConfig {
        log: defaults.log.clone(),
        message_bytes_max: defaults.message_bytes_max,
        timestamp_type: defaults.message_timestamp_type,
        timestamp_before_max_ms: defaults.message_timestamp_before_max_ms,
        timestamp_after_max_ms: defaults.message_timestamp_after_max_ms,
        unclean_leader_election_enable: defaults.unclean_leader_election_enable,
    }
}

/// A topic's settings without dynamic broker configs: the file's defaults
/// with its overrides applied. See [`effective_with`].
pub fn effective(defaults: &TopicDefaults, overrides: &TopicOverrides) -> EffectiveTopicConfig {
    effective_with(defaults, &DynamicDefaults::default(), overrides)
}

/// A topic's settings: the file's defaults, then the dynamic cluster-wide
/// and per-broker defaults, then the topic's overrides.
///
/// Every layer is validated before it is stored, so none should fail here;
/// a value that does (stored by an older Stele with looser rules) is skipped
/// with a warning rather than making the topic unusable.
pub fn effective_with(
    defaults: &TopicDefaults,
    dynamic: &DynamicDefaults,
    overrides: &TopicOverrides,
) -> EffectiveTopicConfig {
    let mut config = broker_layers(defaults, dynamic).node;
    for (key, value) in overrides {
        if let Err(error) = apply(&mut config, key, value) {
            tracing::warn!(%error, "ignoring a stored topic config that is no longer valid");
        }
    }
    config
}

/// Every supported key of a topic without dynamic broker configs. See
/// [`describe_with`].
pub fn describe(defaults: &TopicDefaults, overrides: &TopicOverrides) -> Vec<ConfigEntry> {
    describe_with(defaults, &DynamicDefaults::default(), overrides)
}

/// Every supported key of a topic, for DescribeConfigs on a TOPIC resource:
/// the effective value, its source and its synonyms, most specific first.
pub fn describe_with(
    defaults: &TopicDefaults,
    dynamic: &DynamicDefaults,
    overrides: &TopicOverrides,
) -> Vec<ConfigEntry> {
    let layers = broker_layers(defaults, dynamic);
    let topic = effective_with(defaults, dynamic, overrides);
    TOPIC_KEYS
        .iter()
        .map(|key| {
            let mut synonyms = Vec::with_capacity(5);
            if overrides.contains_key(key.name) {
                synonyms.push(ConfigSynonym {
                    name: key.name,
                    value: value_of(&topic, key.name),
                    source: ConfigSource::TopicOverride,
                });
            }
            synonyms.extend(broker_synonyms(key, &layers, dynamic));
            entry_from_synonyms(key.name, key, false, synonyms)
        })
        .collect()
}

/// Which BROKER resource a dynamic config is set on, as Kafka's
/// `ConfigResource(BROKER, name)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerScope {
    /// The empty name: the cluster-wide default (`kafka-configs.sh
    /// --entity-default`). On a single node it applies to this node too.
    ClusterDefault,
    /// One broker by its node id; wins over the cluster-wide default.
    Node(i32),
}

/// Separates the node id from the key in a per-broker entry of the image's
/// `broker_configs` (`1/log.retention.ms`); no config name contains it.
const NODE_KEY_SEPARATOR: char = '/';

/// The dynamic configs of one scope, broker-level name to value, out of the
/// image's `broker_configs` (which holds every scope).
pub fn scope_configs(stored: &BTreeMap<String, String>, scope: BrokerScope) -> BTreeMap<String, String> {
    stored
        .iter()
        .filter_map(|(stored_key, value)| {
            let name = match (scope, stored_key.split_once(NODE_KEY_SEPARATOR)) {
                (BrokerScope::ClusterDefault, None) => stored_key.as_str(),
                (BrokerScope::Node(node_id), Some((id, name))) if id == node_id.to_string() => name,
                _ => return None,
            };
            Some((name.to_owned(), value.clone()))
        })
        .collect()
}

/// The image's `broker_configs` with the entries of `scope` replaced by
/// `configs` (broker-level name to value); other scopes are kept.
pub fn replace_scope_configs(
    stored: &BTreeMap<String, String>,
    scope: BrokerScope,
    configs: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let in_scope = scope_configs(stored, scope);
    let stored_key = |name: &str| match scope {
        BrokerScope::ClusterDefault => name.to_owned(),
        BrokerScope::Node(node_id) => format!("{node_id}{NODE_KEY_SEPARATOR}{name}"),
    };
    let mut out = stored.clone();
    for name in in_scope.keys() {
        out.remove(&stored_key(name));
    }
    out.extend(configs.iter().map(|(name, value)| (stored_key(name), value.clone())));
    out
}

/// The dynamic broker configs that apply on this node, by broker-level name
/// (`log.retention.ms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicDefaults {
    /// Set on BROKER resource `` (DYNAMIC_DEFAULT_BROKER_CONFIG).
    pub cluster: BTreeMap<String, String>,
    /// Set on BROKER resource `<this node id>` (DYNAMIC_BROKER_CONFIG).
    pub node: BTreeMap<String, String>,
}

impl DynamicDefaults {
    /// The layers of node `node_id` out of the image's `broker_configs`.
    pub fn for_node(stored: &BTreeMap<String, String>, node_id: i32) -> DynamicDefaults {
        DynamicDefaults {
            cluster: scope_configs(stored, BrokerScope::ClusterDefault),
            node: scope_configs(stored, BrokerScope::Node(node_id)),
        }
    }
}

/// Why a dynamic broker config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerConfigError {
    /// A broker setting Stele knows but reads only from its file at startup
    /// (Kafka: "Cannot update these configs dynamically"; INVALID_REQUEST).
    #[error(
        "broker config `{key}` cannot be updated dynamically: Stele reads it from its configuration file at \
         startup; change the file and restart"
    )]
    ReadOnly { key: String },
    #[error(
        "unknown broker config `{key}`: the dynamic broker configs are the broker-level names of topic configs \
         (log.retention.ms, message.max.bytes, ...)"
    )]
    Unknown { key: String },
    /// The value failed the topic key's parser; `reason` says what it expects.
    #[error("broker config `{key}` = `{value}`: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
}

impl BrokerConfigError {
    /// The key the error is about, as the client spelled it.
    pub fn key(&self) -> &str {
        match self {
            BrokerConfigError::ReadOnly { key }
            | BrokerConfigError::Unknown { key }
            | BrokerConfigError::InvalidValue { key, .. } => key,
        }
    }

    /// Kafka answers a change of a static config with INVALID_REQUEST and a
    /// bad value with INVALID_CONFIG (Stele's rule for every config value).
    pub fn is_read_only(&self) -> bool {
        matches!(self, BrokerConfigError::ReadOnly { .. })
    }
}

/// Broker settings DescribeConfigs reports that come only from the file
/// (or the command line): a change is refused naming the key.
pub const STATIC_BROKER_KEYS: &[&str] = &[
    "node.id",
    "log.dirs",
    "listeners",
    "advertised.listeners",
    "socket.request.max.bytes",
    "num.partitions",
    "auto.create.topics.enable",
    "log.retention.check.interval.ms",
];

/// Checks one scope's dynamic configs (broker-level name to value) with the
/// topic keys' own parser, then the resulting engine settings together.
/// Every broker-level name of [`TOPIC_KEYS`] is dynamic, as in Kafka's
/// `DynamicLogConfig` (all topic-config synonyms but the message format).
pub fn validate_broker_configs(configs: &BTreeMap<String, String>) -> Result<(), BrokerConfigError> {
    let mut as_topic = TopicOverrides::new();
    for (name, value) in configs {
        let Some(key) = topic_key_for_broker_name(name) else {
            if STATIC_BROKER_KEYS.contains(&name.as_str()) {
                return Err(BrokerConfigError::ReadOnly { key: name.clone() });
            }
            return Err(BrokerConfigError::Unknown { key: name.clone() });
        };
        as_topic.insert(key.name.to_owned(), value.clone());
    }
    validate_all(&as_topic).map_err(|error| {
        let topic_name = error.key().to_owned();
        let key = topic_key(&topic_name).map_or(topic_name.clone(), |key| key.broker_name.to_owned());
        let (value, reason) = match error {
            TopicConfigError::InvalidValue { value, expected, .. } => (value, format!("expected {expected}")),
            TopicConfigError::Unsupported { value, reason, .. } => (value, reason.to_owned()),
            TopicConfigError::Unknown { .. } => unreachable!("only known topic keys were validated"),
        };
        BrokerConfigError::InvalidValue { key, value, reason }
    })
}

/// The value each broker-level key has at `scope` when the scope itself sets
/// nothing: where IncrementalAlterConfigs' APPEND and SUBTRACT start.
pub fn inherited_broker_values(
    defaults: &TopicDefaults,
    dynamic: &DynamicDefaults,
    scope: BrokerScope,
) -> BTreeMap<String, String> {
    let layers = broker_layers(defaults, dynamic);
    let inherited = match scope {
        BrokerScope::ClusterDefault => &layers.file,
        BrokerScope::Node(_) => &layers.cluster,
    };
    TOPIC_KEYS.iter().map(|key| (key.broker_name.to_owned(), value_of(inherited, key.name))).collect()
}

/// The value each topic key has when the topic does not override it.
pub fn inherited_topic_values(defaults: &TopicDefaults, dynamic: &DynamicDefaults) -> BTreeMap<String, String> {
    let broker = broker_layers(defaults, dynamic).node;
    TOPIC_KEYS.iter().map(|key| (key.name.to_owned(), value_of(&broker, key.name))).collect()
}

/// The broker-level settings after each layer, least specific first.
struct BrokerLayers {
    builtin: EffectiveTopicConfig,
    file: EffectiveTopicConfig,
    /// `file` with the dynamic cluster-wide defaults applied.
    cluster: EffectiveTopicConfig,
    /// `cluster` with this node's dynamic configs applied: what topics
    /// without overrides run with.
    node: EffectiveTopicConfig,
}

fn broker_layers(defaults: &TopicDefaults, dynamic: &DynamicDefaults) -> BrokerLayers {
    let file = from_defaults(defaults);
    let mut cluster = file.clone();
    apply_broker_layer(&mut cluster, &dynamic.cluster);
    let mut node = cluster.clone();
    apply_broker_layer(&mut node, &dynamic.node);
    BrokerLayers { builtin: EffectiveTopicConfig::default(), file, cluster, node }
}

/// Applies dynamic values by broker-level name. They were validated when
/// set; one that no longer parses is skipped with a warning, as in
/// [`effective_with`].
fn apply_broker_layer(config: &mut EffectiveTopicConfig, layer: &BTreeMap<String, String>) {
    for (name, value) in layer {
        let applied = match topic_key_for_broker_name(name) {
            Some(key) => apply(config, key.name, value).map_err(|error| error.to_string()),
            None => Err(format!("unknown broker config `{name}`")),
        };
        if let Err(error) = applied {
            tracing::warn!(%error, "ignoring a stored dynamic broker config that is no longer valid");
        }
    }
}

/// The broker-level synonyms of one topic key, most specific first: this
/// node's dynamic value, the cluster-wide dynamic default, the file's value
/// (when it differs from the built-in one), the built-in default.
fn broker_synonyms(key: &TopicKey, layers: &BrokerLayers, dynamic: &DynamicDefaults) -> Vec<ConfigSynonym> {
    let mut synonyms = Vec::with_capacity(4);
    if dynamic.node.contains_key(key.broker_name) {
        synonyms.push(ConfigSynonym {
            name: key.broker_name,
            value: value_of(&layers.node, key.name),
            source: ConfigSource::DynamicBroker,
        });
    }
    if dynamic.cluster.contains_key(key.broker_name) {
        synonyms.push(ConfigSynonym {
            name: key.broker_name,
            value: value_of(&layers.cluster, key.name),
            source: ConfigSource::DynamicDefaultBroker,
        });
    }
    let file_value = value_of(&layers.file, key.name);
    let builtin_value = value_of(&layers.builtin, key.name);
    // The file's explicit keys are not remembered: a file value equal to
    // the built-in one is reported as DEFAULT_CONFIG.
    if file_value != builtin_value {
        synonyms.push(ConfigSynonym { name: key.broker_name, value: file_value, source: ConfigSource::BrokerDefault });
    }
    synonyms.push(ConfigSynonym { name: key.broker_name, value: builtin_value, source: ConfigSource::Default });
    synonyms
}

/// An entry whose value and source are those of its first synonym.
fn entry_from_synonyms(
    name: &'static str,
    key: &TopicKey,
    read_only: bool,
    synonyms: Vec<ConfigSynonym>,
) -> ConfigEntry {
    debug_assert!(!synonyms.is_empty(), "{name} has no synonyms");
    ConfigEntry {
        name,
        value: synonyms[0].value.clone(),
        source: synonyms[0].source,
        read_only,
        sensitive: false,
        config_type: key.config_type,
        documentation: key.documentation,
        synonyms,
    }
}

/// This broker's settings, for DescribeConfigs on BROKER resource `<node
/// id>`: identity and network keys (read-only, from the file) and every
/// topic default under its broker name, dynamic (not read-only), with its
/// value from the most specific layer that sets it.
pub fn describe_broker(config: &Config, dynamic: &DynamicDefaults) -> Vec<ConfigEntry> {
    let layers = broker_layers(&config.topic_defaults, dynamic);
    let listen = format!("PLAINTEXT://{}", config.listen);
    let advertised = if config.advertised_host.contains(':') {
        format!("PLAINTEXT://[{}]:{}", config.advertised_host, config.advertised_port)
    } else {
        format!("PLAINTEXT://{}:{}", config.advertised_host, config.advertised_port)
    };
    let mut entries = vec![
        static_entry("node.id", config.node_id.to_string(), ConfigType::Int, "This broker's node id (Stele: node_id)."),
        static_entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            ConfigType::String,
            "Directory holding all partition logs and metadata (Stele: data_dir).",
        ),
        static_entry("listeners", listen, ConfigType::List, "Address the broker listens on (Stele: network.listen)."),
        static_entry(
            "advertised.listeners",
            advertised,
            ConfigType::List,
            "Address given to clients in Metadata (Stele: network.advertised_listener).",
        ),
        static_entry(
            "socket.request.max.bytes",
            config.request_bytes_max.to_string(),
            ConfigType::Int,
            "Largest request accepted, in bytes (Stele: network.request_bytes_max).",
        ),
        static_entry(
            "num.partitions",
            config.topic_defaults.partitions.to_string(),
            ConfigType::Int,
            "Partitions of a topic created without a partition count.",
        ),
        static_entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "Create a topic when a client asks for metadata of one that does not exist.",
        ),
    ];
    for key in TOPIC_KEYS {
        entries.push(entry_from_synonyms(key.broker_name, key, false, broker_synonyms(key, &layers, dynamic)));
    }
    entries
}

/// The cluster-wide dynamic defaults, for DescribeConfigs on BROKER resource
/// `` (empty name): only the keys set there, each with source
/// DYNAMIC_DEFAULT_BROKER_CONFIG and that one synonym, as Kafka answers.
pub fn describe_broker_defaults(defaults: &TopicDefaults, dynamic: &DynamicDefaults) -> Vec<ConfigEntry> {
    let layers = broker_layers(defaults, dynamic);
    TOPIC_KEYS
        .iter()
        .filter(|key| dynamic.cluster.contains_key(key.broker_name))
        .map(|key| {
            let synonym = ConfigSynonym {
                name: key.broker_name,
                value: value_of(&layers.cluster, key.name),
                source: ConfigSource::DynamicDefaultBroker,
            };
            entry_from_synonyms(key.broker_name, key, false, vec![synonym])
        })
        .collect()
}

fn static_entry(
    name: &'static str,
    value: String,
    config_type: ConfigType,
    documentation: &'static str,
) -> ConfigEntry {
    let source = ConfigSource::BrokerDefault;
    ConfigEntry {
        name,
        value: value.clone(),
        source,
        read_only: true,
        sensitive: false,
        config_type,
        documentation,
        synonyms: vec![ConfigSynonym { name, value, source }],
    }
}

/// Parses `value` for `key` and stores it in `config`.
pub(crate) fn apply(config: &mut EffectiveTopicConfig, key: &str, value: &str) -> Result<(), TopicConfigError> {
    let invalid = |expected: &'static str| TopicConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    };
    let unsupported =
        |reason: &'static str| TopicConfigError::Unsupported { key: key.to_string(), value: value.to_string(), reason };
    // Kafka trims values before parsing them.
    let text = value.trim();
    match key {
        "segment.bytes" => {
            let expected = "an integer between 4096 and 2147483647 (bytes)";
            let bytes = parse_integer(text, engine::config::SEGMENT_BYTES_MIN as i64, i32::MAX as i64)
                .ok_or_else(|| invalid(expected))?;
            config.log.segment_bytes_max = bytes as u64;
        }
        "segment.ms" => {
            let ms = parse_integer(text, 1, LONG_MAX).ok_or_else(|| invalid("a positive integer (milliseconds)"))?;
            config.log.segment_age_max = Some(Duration::from_millis(ms as u64));
        }
        "retention.bytes" => {
            let bytes = parse_integer(text, -1, LONG_MAX)
                .ok_or_else(|| invalid("-1 (no size limit) or a non-negative integer (bytes)"))?;
            config.log.retention_bytes_max = u64::try_from(bytes).ok();
        }
        "retention.ms" => {
            let ms = parse_integer(text, -1, LONG_MAX)
                .ok_or_else(|| invalid("-1 (keep forever) or a non-negative integer (milliseconds)"))?;
            config.log.retention_age_max = u64::try_from(ms).ok().map(Duration::from_millis);
        }
        "flush.messages" => {
            let messages = parse_integer(text, 1, LONG_MAX).ok_or_else(|| invalid("a positive integer (records)"))?;
            let (_, interval) = flush_parts(config.log.flush_policy);
            let messages = (messages != LONG_MAX).then_some(messages as u64);
            config.log.flush_policy = flush_policy(messages, interval);
        }
        "flush.ms" => {
            let ms =
                parse_integer(text, 0, LONG_MAX).ok_or_else(|| invalid("a non-negative integer (milliseconds)"))?;
            let (messages, _) = flush_parts(config.log.flush_policy);
            let interval = (ms != LONG_MAX).then(|| Duration::from_millis(ms as u64));
            config.log.flush_policy = flush_policy(messages, interval);
        }
        "index.interval.bytes" => {
            let bytes = parse_integer(text, 1, i32::MAX as i64)
                .ok_or_else(|| invalid("an integer between 1 and 2147483647 (bytes)"))?;
            config.log.index_interval_bytes = bytes as u32;
        }
        "max.message.bytes" => {
            let bytes = parse_integer(text, 1, i32::MAX as i64)
                .ok_or_else(|| invalid("an integer between 1 and 2147483647 (bytes)"))?;
            config.message_bytes_max = bytes as usize;
        }
        "message.timestamp.type" => {
            config.timestamp_type = TimestampType::parse(text).ok_or_else(|| invalid("CreateTime or LogAppendTime"))?;
        }
        "message.timestamp.before.max.ms" => {
            config.timestamp_before_max_ms =
                parse_integer(text, 0, LONG_MAX).ok_or_else(|| invalid("a non-negative integer (milliseconds)"))?;
        }
        "message.timestamp.after.max.ms" => {
            config.timestamp_after_max_ms =
                parse_integer(text, 0, LONG_MAX).ok_or_else(|| invalid("a non-negative integer (milliseconds)"))?;
        }
        "cleanup.policy" => {
            let policies: Vec<&str> = text.split(',').map(str::trim).collect();
            if policies.contains(&"compact") {
                return Err(unsupported("log compaction is not supported yet; only `delete` is accepted"));
            }
            if policies != ["delete"] {
                return Err(invalid("`delete`"));
            }
        }
        "compression.type" => match text {
            "producer" => {}
            "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {
                return Err(unsupported(
                    "Stele stores batches as the producer compressed them and does not recompress; \
                     only `producer` is accepted",
                ));
            }
            _ => return Err(invalid("`producer`")),
        },
        "min.insync.replicas" => {
            let replicas = parse_integer(text, 1, i32::MAX as i64).ok_or_else(|| invalid("a positive integer"))?;
            if replicas != 1 {
                return Err(unsupported("a single-node broker keeps one replica per partition; only 1 is accepted"));
            }
        }
        "unclean.leader.election.enable" => {
            config.unclean_leader_election_enable = parse_boolean(text).ok_or_else(|| invalid("true or false"))?;
        }
        _ => return Err(TopicConfigError::Unknown { key: key.to_string() }),
    }
    Ok(())
}

/// The value of `key` in `config`, in Kafka's string form.
fn value_of(config: &EffectiveTopicConfig, key: &str) -> String {
    let millis = |duration: Option<Duration>, none: i64| {
        duration.map_or(none, |duration| i64::try_from(duration.as_millis()).unwrap_or(LONG_MAX))
    };
    let (flush_messages, flush_interval) = flush_parts(config.log.flush_policy);
    match key {
        "segment.bytes" => config.log.segment_bytes_max.to_string(),
        "segment.ms" => millis(config.log.segment_age_max, LONG_MAX).to_string(),
        "retention.bytes" => config.log.retention_bytes_max.map_or(-1, |bytes| bytes as i64).to_string(),
        "retention.ms" => millis(config.log.retention_age_max, -1).to_string(),
        "flush.messages" => flush_messages.map_or(LONG_MAX, |messages| messages as i64).to_string(),
        "flush.ms" => millis(flush_interval, LONG_MAX).to_string(),
        "index.interval.bytes" => config.log.index_interval_bytes.to_string(),
        "max.message.bytes" => config.message_bytes_max.to_string(),
        "message.timestamp.type" => config.timestamp_type.as_str().to_string(),
        "message.timestamp.before.max.ms" => config.timestamp_before_max_ms.to_string(),
        "message.timestamp.after.max.ms" => config.timestamp_after_max_ms.to_string(),
        "cleanup.policy" => "delete".to_string(),
        "compression.type" => "producer".to_string(),
        "min.insync.replicas" => "1".to_string(),
        "unclean.leader.election.enable" => config.unclean_leader_election_enable.to_string(),
        _ => unreachable!("value_of called with unsupported key {key}"),
    }
}

/// A flush policy as Kafka's two keys: `flush.messages` and `flush.ms`, `None`
/// meaning that trigger is off. `Always` is `flush.messages = 1` with no time
/// trigger; this and [`flush_policy`] are inverses, which makes applying the
/// two keys order-independent.
pub fn flush_parts(policy: FlushPolicy) -> (Option<u64>, Option<Duration>) {
    match policy {
        FlushPolicy::Always => (Some(1), None),
        FlushPolicy::Interval { messages, interval } => (messages, interval),
    }
}

/// The flush policy for Kafka's `flush.messages` and `flush.ms`.
pub fn flush_policy(messages: Option<u64>, interval: Option<Duration>) -> FlushPolicy {
    match (messages, interval) {
        (Some(1), None) => FlushPolicy::Always,
        (messages, interval) => FlushPolicy::Interval { messages, interval },
    }
}

/// A decimal integer within `min..=max`.
fn parse_integer(text: &str, min: i64, max: i64) -> Option<i64> {
    text.parse::<i64>().ok().filter(|value| (min..=max).contains(value))
}

/// Kafka's booleans are case-insensitive.
fn parse_boolean(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> TopicOverrides {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn no_overrides_gives_the_broker_defaults() {
        // Proves: a topic without overrides runs with exactly the broker's defaults.
        let defaults = TopicDefaults::default();
        let config = effective(&defaults, &TopicOverrides::new());
        assert_eq!(config, from_defaults(&defaults));
        assert_eq!(config.log, LogConfig::default());
        assert_eq!(config.message_bytes_max, 1_048_588);
        assert_eq!(config.timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.timestamp_before_max_ms, i64::MAX);
        assert_eq!(config.timestamp_after_max_ms, 3_600_000);
    }

    #[test]
    fn overrides_map_onto_engine_settings() {
        // Proves: each Kafka key lands in the right engine field with Kafka's
        // units and its special values (-1 = no limit).
        let set = overrides(&[
            ("segment.bytes", "8192"),
            ("segment.ms", "60000"),
            ("retention.bytes", "1000000"),
            ("retention.ms", "-1"),
            ("index.interval.bytes", "1024"),
            ("max.message.bytes", " 2000000 "),
            ("message.timestamp.type", "LogAppendTime"),
            ("message.timestamp.before.max.ms", "5000"),
            ("message.timestamp.after.max.ms", "6000"),
            ("cleanup.policy", "delete"),
            ("compression.type", "producer"),
            ("min.insync.replicas", "1"),
            ("unclean.leader.election.enable", "TRUE"),
        ]);
        validate_all(&set).unwrap();
        let config = effective(&TopicDefaults::default(), &set);
        assert_eq!(config.log.segment_bytes_max, 8192);
        assert_eq!(config.log.segment_age_max, Some(Duration::from_secs(60)));
        assert_eq!(config.log.retention_bytes_max, Some(1_000_000));
        assert_eq!(config.log.retention_age_max, None);
        assert_eq!(config.log.index_interval_bytes, 1024);
        assert_eq!(config.message_bytes_max, 2_000_000);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.timestamp_before_max_ms, 5000);
        assert_eq!(config.timestamp_after_max_ms, 6000);
        assert!(config.unclean_leader_election_enable);
    }

    #[test]
    fn flush_keys_combine_into_one_policy() {
        // Proves: flush.messages=1 without flush.ms is FlushPolicy::Always,
        // anything else is Interval, and the order of the two keys does not matter.
        let defaults = TopicDefaults::default();
        let policy = |pairs: &[(&str, &str)]| effective(&defaults, &overrides(pairs)).log.flush_policy;
        assert_eq!(policy(&[]), FlushPolicy::Always);
        assert_eq!(policy(&[("flush.messages", "1")]), FlushPolicy::Always);
        assert_eq!(
            policy(&[("flush.messages", "1000")]),
            FlushPolicy::Interval { messages: Some(1000), interval: None }
        );
        assert_eq!(
            policy(&[("flush.messages", "9223372036854775807"), ("flush.ms", "200")]),
            FlushPolicy::Interval { messages: None, interval: Some(Duration::from_millis(200)) }
        );
        let mut forward = EffectiveTopicConfig::default();
        apply(&mut forward, "flush.ms", "300").unwrap();
        apply(&mut forward, "flush.messages", "1").unwrap();
        let mut backward = EffectiveTopicConfig::default();
        apply(&mut backward, "flush.messages", "1").unwrap();
        apply(&mut backward, "flush.ms", "300").unwrap();
        assert_eq!(forward, backward);
        assert_eq!(
            forward.log.flush_policy,
            FlushPolicy::Interval { messages: Some(1), interval: Some(Duration::from_millis(300)) }
        );
    }

    #[test]
    fn unknown_key_is_named() {
        // Proves: an unsupported key is refused with its name in the message.
        let error = validate("segment.jitter.ms", "0").unwrap_err();
        assert_eq!(error, TopicConfigError::Unknown { key: "segment.jitter.ms".into() });
        assert!(error.to_string().contains("`segment.jitter.ms`"), "{error}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_expected_form() {
        // Proves: a malformed or out-of-range value is refused with the key,
        // the value and what would have been accepted.
        let error = validate("retention.ms", "-2").unwrap_err();
        assert_eq!(error.key(), "retention.ms");
        assert_eq!(
            error.to_string(),
            "topic config `retention.ms`: expected -1 (keep forever) or a non-negative integer (milliseconds), got `-2`"
        );
        for (key, value) in [
            ("segment.bytes", "100"),
            ("segment.bytes", "4294967296"),
            ("segment.ms", "0"),
            ("flush.messages", "0"),
            ("flush.ms", "soon"),
            ("index.interval.bytes", "0"),
            ("message.timestamp.type", "createtime"),
            ("unclean.leader.election.enable", "yes"),
            ("cleanup.policy", "purge"),
            ("compression.type", "brotli"),
        ] {
            let error = validate(key, value).unwrap_err();
            assert!(matches!(error, TopicConfigError::InvalidValue { .. }), "{key}={value}: {error}");
            let message = error.to_string();
            assert!(message.contains(key) && message.contains(value) && message.contains("expected"), "{message}");
        }
    }

    #[test]
    fn unsupported_kafka_values_say_why() {
        // Proves: valid Kafka values that Stele does not implement are refused
        // with a reason rather than silently ignored.
        let compact = validate("cleanup.policy", "compact,delete").unwrap_err();
        assert!(compact.to_string().contains("compaction is not supported"), "{compact}");
        let gzip = validate("compression.type", "gzip").unwrap_err();
        assert!(gzip.to_string().contains("does not recompress"), "{gzip}");
        let replicas = validate("min.insync.replicas", "2").unwrap_err();
        assert!(matches!(replicas, TopicConfigError::Unsupported { .. }), "{replicas}");
    }

    #[test]
    fn every_key_round_trips_through_its_described_value() {
        // Proves: the table, the parser and the describer agree: each key's
        // described value is accepted and applying it changes nothing.
        let config = EffectiveTopicConfig::default();
        for key in TOPIC_KEYS {
            let value = value_of(&config, key.name);
            let mut applied = config.clone();
            apply(&mut applied, key.name, &value).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(applied, config, "{} = {value}", key.name);
            assert_eq!(topic_key(key.name), Some(key));
            assert_eq!(topic_key_for_broker_name(key.broker_name), Some(key));
        }
    }

    #[test]
    fn describe_reports_sources_and_synonyms() {
        // Proves: DescribeConfigs sources follow Kafka: a topic override is
        // DYNAMIC_TOPIC_CONFIG (1), a changed broker default STATIC_BROKER_CONFIG
        // (4), anything else DEFAULT_CONFIG (5), with synonyms most specific first.
        let mut defaults = TopicDefaults::default();
        defaults.log.segment_bytes_max = 1 << 20;
        let entries = describe(&defaults, &overrides(&[("retention.ms", "1000")]));
        assert_eq!(entries.len(), TOPIC_KEYS.len());
        let entry = |name: &str| entries.iter().find(|entry| entry.name == name).unwrap().clone();

        let retention = entry("retention.ms");
        assert_eq!((retention.value.as_str(), retention.source.code()), ("1000", 1));
        assert_eq!(retention.config_type.code(), 5);
        assert_eq!(retention.synonyms.len(), 2);
        assert_eq!(retention.synonyms[1].name, "log.retention.ms");

        let segment = entry("segment.bytes");
        assert_eq!((segment.value.as_str(), segment.source.code()), ("1048576", 4));
        assert_eq!(segment.config_type.code(), 3);
        assert_eq!(segment.synonyms[0].name, "log.segment.bytes");

        let flush = entry("flush.messages");
        assert_eq!((flush.value.as_str(), flush.source.code()), ("1", 5));
        assert_eq!(entry("flush.ms").value, "9223372036854775807");
        assert_eq!(entry("retention.bytes").value, "-1");
        assert_eq!(entry("cleanup.policy").config_type.code(), 7);
        assert!(entries.iter().all(|entry| !entry.sensitive && !entry.read_only));
    }

    #[test]
    fn describe_broker_lists_static_and_dynamic_values() {
        // Proves: a BROKER resource describes its identity and network
        // settings read-only, and the topic defaults under Kafka's broker
        // names as dynamically updatable.
        let config = Config::load(None).unwrap();
        let entries = describe_broker(&config, &DynamicDefaults::default());
        let entry = |name: &str| entries.iter().find(|entry| entry.name == name).unwrap().clone();
        let value = |name: &str| entry(name).value;
        assert_eq!(value("node.id"), "1");
        assert_eq!(value("log.dirs"), "./stele-data");
        assert_eq!(value("socket.request.max.bytes"), "104857600");
        assert_eq!(value("num.partitions"), "1");
        assert_eq!(value("auto.create.topics.enable"), "true");
        assert_eq!(value("log.segment.bytes"), "1073741824");
        assert_eq!(value("message.max.bytes"), "1048588");
        assert_eq!(value("advertised.listeners"), "PLAINTEXT://127.0.0.1:9092");
        assert!(entries.iter().all(|entry| !entry.sensitive));
        for name in STATIC_BROKER_KEYS.iter().filter(|name| **name != "log.retention.check.interval.ms") {
            assert!(entry(name).read_only, "{name}");
        }
        for key in TOPIC_KEYS {
            assert!(!entry(key.broker_name).read_only, "{}", key.broker_name);
        }
    }

    fn dynamic(cluster: &[(&str, &str)], node: &[(&str, &str)]) -> DynamicDefaults {
        DynamicDefaults { cluster: overrides(cluster), node: overrides(node) }
    }

    #[test]
    fn layers_apply_in_kafkas_order() {
        // Proves the precedence: built-in < file [topics] < dynamic cluster
        // default < dynamic per-broker < topic override, key by key.
        let mut file = TopicDefaults::default();
        file.log.retention_age_max = Some(Duration::from_millis(1000));
        file.log.segment_bytes_max = 1 << 20;
        file.message_bytes_max = 5000;
        let layers = dynamic(
            &[("log.retention.ms", "2000"), ("message.max.bytes", "6000"), ("log.roll.ms", "60000")],
            &[("log.retention.ms", "3000")],
        );
        let topic = overrides(&[("retention.ms", "4000")]);

        let plain = effective_with(&file, &layers, &TopicOverrides::new());
        assert_eq!(plain.log.retention_age_max, Some(Duration::from_millis(3000)), "per-broker beats cluster");
        assert_eq!(plain.message_bytes_max, 6000, "cluster default beats the file");
        assert_eq!(plain.log.segment_age_max, Some(Duration::from_secs(60)), "cluster default beats built-in");
        assert_eq!(plain.log.segment_bytes_max, 1 << 20, "file beats built-in");
        assert_eq!(plain.log.index_interval_bytes, EffectiveTopicConfig::default().log.index_interval_bytes);

        let overridden = effective_with(&file, &layers, &topic);
        assert_eq!(overridden.log.retention_age_max, Some(Duration::from_millis(4000)), "topic beats all");
        assert_eq!(overridden.message_bytes_max, 6000);

        let cluster_only = effective_with(&file, &dynamic(&[("log.retention.ms", "2000")], &[]), &topic);
        assert_eq!(cluster_only.log.retention_age_max, Some(Duration::from_millis(4000)));
        assert_eq!(
            effective_with(&file, &DynamicDefaults::default(), &TopicOverrides::new()),
            effective(&file, &TopicOverrides::new()),
            "no dynamic configs: the file's defaults"
        );
    }

    #[test]
    fn describe_reports_dynamic_sources_and_synonyms() {
        // Proves: DescribeConfigs reports a dynamic per-broker value as
        // DYNAMIC_BROKER_CONFIG (2) and a cluster default as
        // DYNAMIC_DEFAULT_BROKER_CONFIG (7), on topics and on the broker,
        // with the synonyms in Kafka's order; the empty BROKER resource lists
        // only the cluster defaults.
        let file = TopicDefaults { message_bytes_max: 5000, ..TopicDefaults::default() };
        let layers =
            dynamic(&[("log.retention.ms", "2000"), ("message.max.bytes", "6000")], &[("log.retention.ms", "3000")]);
        let entries = describe_with(&file, &layers, &overrides(&[("segment.ms", "1000")]));
        let entry = |name: &str| entries.iter().find(|entry| entry.name == name).unwrap().clone();
        let sources =
            |entry: &ConfigEntry| entry.synonyms.iter().map(|s| (s.source.code(), s.value.clone())).collect::<Vec<_>>();

        let retention = entry("retention.ms");
        assert_eq!((retention.value.as_str(), retention.source), ("3000", ConfigSource::DynamicBroker));
        assert_eq!(sources(&retention), vec![(2, "3000".into()), (7, "2000".into()), (5, "604800000".into())]);
        let message = entry("max.message.bytes");
        assert_eq!((message.value.as_str(), message.source), ("6000", ConfigSource::DynamicDefaultBroker));
        assert_eq!(sources(&message), vec![(7, "6000".into()), (4, "5000".into()), (5, "1048588".into())]);
        assert_eq!(message.synonyms[0].name, "message.max.bytes");
        let segment = entry("segment.ms");
        assert_eq!(segment.source, ConfigSource::TopicOverride, "a topic override still wins");

        let mut config = Config::load(None).unwrap();
        config.topic_defaults = file.clone();
        let broker = describe_broker(&config, &layers);
        let retention = broker.iter().find(|entry| entry.name == "log.retention.ms").unwrap();
        assert_eq!((retention.value.as_str(), retention.source.code()), ("3000", 2));
        assert_eq!(retention.synonyms.len(), 3);

        let cluster = describe_broker_defaults(&file, &layers);
        let names: Vec<_> =
            cluster.iter().map(|entry| (entry.name, entry.value.as_str(), entry.source.code())).collect();
        assert_eq!(names, vec![("log.retention.ms", "2000", 7), ("message.max.bytes", "6000", 7)]);
        assert!(cluster.iter().all(|entry| entry.synonyms.len() == 1 && !entry.read_only));
    }

    #[test]
    fn scopes_are_stored_side_by_side() {
        // Proves: the cluster default and each broker's values live in one
        // map without touching each other, and replacing a scope removes
        // its keys left out.
        let stored = replace_scope_configs(
            &BTreeMap::new(),
            BrokerScope::ClusterDefault,
            &overrides(&[("log.retention.ms", "1"), ("message.max.bytes", "2")]),
        );
        let stored = replace_scope_configs(&stored, BrokerScope::Node(7), &overrides(&[("log.retention.ms", "3")]));
        assert_eq!(stored.get("7/log.retention.ms").map(String::as_str), Some("3"));
        assert_eq!(scope_configs(&stored, BrokerScope::Node(7)), overrides(&[("log.retention.ms", "3")]));
        assert!(scope_configs(&stored, BrokerScope::Node(8)).is_empty());
        let layers = DynamicDefaults::for_node(&stored, 7);
        assert_eq!(layers.cluster.len(), 2);
        assert_eq!(layers.node.len(), 1);

        let stored =
            replace_scope_configs(&stored, BrokerScope::ClusterDefault, &overrides(&[("message.max.bytes", "9")]));
        assert_eq!(scope_configs(&stored, BrokerScope::ClusterDefault), overrides(&[("message.max.bytes", "9")]));
        assert_eq!(scope_configs(&stored, BrokerScope::Node(7)).len(), 1, "the other scope is kept");
    }

    #[test]
    fn broker_values_use_the_topic_parser_and_name_the_broker_key() {
        // Proves: dynamic broker values are checked exactly as topic values,
        // errors name the broker-level key; static settings are read-only and
        // other names unknown.
        assert_eq!(
            validate_broker_configs(&overrides(&[("log.retention.ms", "-1"), ("message.max.bytes", "10")])),
            Ok(())
        );
        let error = validate_broker_configs(&overrides(&[("log.retention.ms", "-2")])).unwrap_err();
        assert_eq!(error.key(), "log.retention.ms");
        assert!(!error.is_read_only());
        assert_eq!(
            error.to_string(),
            "broker config `log.retention.ms` = `-2`: expected -1 (keep forever) or a non-negative integer (milliseconds)"
        );
        let compact = validate_broker_configs(&overrides(&[("log.cleanup.policy", "compact")])).unwrap_err();
        assert!(compact.to_string().contains("compaction is not supported"), "{compact}");
        for key in ["node.id", "log.dirs"] {
            let error = validate_broker_configs(&overrides(&[(key, "1")])).unwrap_err();
            assert!(error.is_read_only(), "{error}");
            assert!(error.to_string().contains(key), "{error}");
        }
        let unknown = validate_broker_configs(&overrides(&[("retention.ms", "1")])).unwrap_err();
        assert_eq!(unknown, BrokerConfigError::Unknown { key: "retention.ms".into() });
    }

    #[test]
    fn inherited_values_skip_the_scope_itself() {
        // Proves: APPEND/SUBTRACT on a scope start from the layers below it:
        // the cluster default inherits the file, a broker the cluster default.
        let layers = dynamic(&[("log.retention.ms", "2000")], &[("log.retention.ms", "3000")]);
        let file = TopicDefaults::default();
        assert_eq!(
            inherited_broker_values(&file, &layers, BrokerScope::ClusterDefault)["log.retention.ms"],
            "604800000"
        );
        assert_eq!(inherited_broker_values(&file, &layers, BrokerScope::Node(1))["log.retention.ms"], "2000");
        assert_eq!(inherited_topic_values(&file, &layers)["retention.ms"], "3000");
    }
}
