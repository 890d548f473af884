//! The broker's configuration file (`stele.toml`) and its validation.
//!
//! The file is read into a TOML table and walked by hand rather than through
//! serde, so that every error names the file, the full key
//! (`shard.overrides.0.io_depth`), what was expected and what was found.
//! Unknown keys are errors: a misspelt key silently falling back to its
//! default is the kind of mistake an operator finds in production.
//!
//! Layers: [`Config::from_toml_str`] parses into a [`FileConfig`] (every value
//! checked on its own, defaults filled in), command-line flags are laid over it
//! ([`ConfigOverrides`]), and `resolve` makes the checks that need the whole
//! picture (shard count, wildcard listen address, per-shard limits) and yields
//! the [`Config`] the broker runs with. Invariant of a [`Config`]:
//! `shard_limits.len() == shards > 0` and every limit passed
//! `ShardLimits::validate`; `topic_defaults.log` passed `LogConfig::validate`.
//!
//! Topic defaults live in `[topics]` under Kafka's broker-level names; their
//! spellings and meaning belong to [`crate::topic_config`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use engine::{LogConfig, ShardLimits};
use toml::{Table, Value};

use crate::group::config::{GroupConfig, GroupValue, GROUP_KEYS};
pub use crate::topic_config::TimestampType;
use crate::topic_config::{self, ConfigType, EffectiveTopicConfig, TopicConfigError};
use crate::txn::config::{TxnConfig, TRANSACTION_KEYS};

/// What the broker runs with: the file, the flags and the defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This broker's node id in Metadata (Kafka: `node.id`).
    pub node_id: i32,
    /// Directory of all partition logs and metadata (Kafka: `log.dirs`).
    pub data_dir: PathBuf,
    /// Executors, one per core; resolved, so always > 0.
    pub shards: usize,
    /// `tracing_subscriber::EnvFilter` directive; `RUST_LOG`, when set, wins.
    pub log_level: String,
    /// Address every shard binds (SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Host given to clients in Metadata; an IPv6 address has no brackets.
    pub advertised_host: String,
    /// Port given to clients in Metadata. Equals `listen`'s port unless an
    /// advertised listener was given; 0 only when `listen` has port 0, in
    /// which case the server must advertise the port it actually bound.
    pub advertised_port: u16,
    /// Largest request accepted (Kafka: `socket.request.max.bytes`).
    pub request_bytes_max: usize,
    /// Connections one shard serves at once; further ones are closed on accept.
    pub connections_per_shard_max: usize,
    /// Requests read from one connection and not yet answered; at the limit
    /// the connection is not read until an answer is sent.
    pub requests_in_flight_per_connection_max: usize,
    /// Create a topic when a client asks for one that does not exist (Kafka:
    /// `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// How often each shard applies retention to its partitions (Kafka:
    /// `log.retention.check.interval.ms`).
    pub retention_check_interval_ms: u64,
    /// Broker-level defaults of topic configs.
    pub topic_defaults: TopicDefaults,
    /// One per shard, `[shard]` with that shard's `[shard.overrides.N]` applied.
    pub shard_limits: Vec<ShardLimits>,
    /// Touch each shard's budgeted memory at startup, before accepting
    /// clients, and keep it (`[shard] prefault_memory`; engine::prefault).
    pub prefault_memory: bool,
    /// The group coordinators' settings (`[groups]`, Kafka's names).
    pub groups: GroupConfig,
    /// The transaction coordinators' settings (`[transactions]`, Kafka's names).
    pub transactions: TxnConfig,
}

/// Broker-level defaults for topics (`[topics]`, Kafka's broker key names).
/// A topic's own overrides are applied on top by [`topic_config::effective`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    /// Partitions of a topic created without a count (`num.partitions`).
    pub partitions: i32,
    /// `log.segment.bytes`, `log.roll.ms`, `log.retention.*`, `log.flush.*`,
    /// `log.index.interval.bytes`.
    pub log: LogConfig,
    /// `message.max.bytes`.
    pub message_bytes_max: usize,
    /// `log.message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `log.message.timestamp.before.max.ms`.
    pub message_timestamp_before_max_ms: i64,
    /// `log.message.timestamp.after.max.ms`.
    pub message_timestamp_after_max_ms: i64,
    /// `unclean.leader.election.enable`: kept for DescribeConfigs only.
    pub unclean_leader_election_enable: bool,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults::from_effective(1, &EffectiveTopicConfig::default())
    }
}

impl TopicDefaults {
    fn from_effective(partitions: i32, config: &EffectiveTopicConfig) -> TopicDefaults {
        TopicDefaults {
            partitions,
            log: config.log.clone(),
            message_bytes_max: config.message_bytes_max,
            message_timestamp_type: config.timestamp_type,
            message_timestamp_before_max_ms: config.timestamp_before_max_ms,
            message_timestamp_after_max_ms: config.timestamp_after_max_ms,
            unclean_leader_election_enable: config.unclean_leader_election_enable,
        }
    }
}

/// `host:port` given to clients (`network.advertised_listener`,
/// `--advertised-listener`). Accepts Kafka's `PLAINTEXT://host:port` too, and
/// `[v6 address]:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub host: String,
    pub port: u16,
}

impl FromStr for AdvertisedListener {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || format!("expected HOST:PORT (such as \"broker1.example.com:9092\"), got \"{text}\"");
        let address = text.strip_prefix("PLAINTEXT://").unwrap_or(text);
        let (host, port) = address.rsplit_once(':').ok_or_else(expected)?;
        let host = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| expected())?;
        if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
            return Err(expected());
        }
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(format!("{host} is a wildcard address that clients cannot connect to, got \"{text}\""));
        }
        Ok(AdvertisedListener { host: host.to_string(), port })
    }
}

impl fmt::Display for AdvertisedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why the configuration was refused. Each names the file (or the command
/// line), the key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: invalid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: unknown key `{key}`{hint}", path.display())]
    UnknownKey { path: PathBuf, key: String, hint: String },
    #[error("{}: key `{key}`: expected {expected}, got {got}", path.display())]
    InvalidValue { path: PathBuf, key: String, expected: String, got: String },
    /// A value that is well-formed but does not fit with the others.
    #[error("{}: key `{key}`: {reason}", path.display())]
    Invalid { path: PathBuf, key: String, reason: String },
}

/// Where the built-in defaults come from, in error messages.
pub const DEFAULTS_SOURCE: &str = "<built-in defaults>";

/// The most shards accepted; far above any core count Stele runs on, it only
/// catches typos that would start thousands of executors.
pub const SHARDS_MAX: usize = 1024;
/// Named limits on the network keys, catching typos rather than tuning.
pub const CONNECTIONS_PER_SHARD_MAX: usize = 1_000_000;
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 65_536;

/// Every key of the file other than the topic defaults, as (table, key); the
/// `[topics]` table also takes each [`topic_config::TOPIC_KEYS`]' broker name
/// ([`keys`] lists them all). `[shard.overrides.N]` takes the `[shard]` keys.
/// docs/configuration.md and stele.toml must mention each (tests check).
pub const KEYS: &[(&str, &str)] = &[
    ("", "node_id"),
    ("", "data_dir"),
    ("", "shards"),
    ("", "log_level"),
    ("network", "listen"),
    ("network", "advertised_listener"),
    ("network", "request_bytes_max"),
    ("network", "connections_per_shard_max"),
    ("network", "requests_in_flight_per_connection_max"),
    ("topics", "auto.create.topics.enable"),
    ("topics", "num.partitions"),
    ("topics", "log.retention.check.interval.ms"),
    ("shard", "write_buffer_bytes"),
    ("shard", "tail_cache_bytes"),
    ("shard", "io_depth"),
    ("shard", "write_chunk_bytes"),
    ("shard", "prefault_memory"),
];

/// Every accepted key as (table, key): [`KEYS`], the topic defaults, the
/// group and the transaction settings.
pub fn keys() -> Vec<(&'static str, &'static str)> {
    let topics = topic_config::TOPIC_KEYS.iter().map(|key| ("topics", key.broker_name));
    let groups = GROUP_KEYS.iter().map(|key| ("groups", *key));
    let transactions = TRANSACTION_KEYS.iter().map(|key| ("transactions", *key));
    KEYS.iter().copied().chain(topics).chain(groups).chain(transactions).collect()
}

/// Settings given on the command line; each `Some` replaces the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    pub node_id: Option<i32>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub log_level: Option<String>,
    pub listen: Option<SocketAddr>,
    pub advertised_listener: Option<AdvertisedListener>,
    pub prefault_memory: Option<bool>,
}

impl Config {
    /// Parses a configuration file's text; `source` names it in errors.
    pub fn from_toml_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_str_with(text, source, &ConfigOverrides::default())
    }

    /// Reads the file at `path`, or uses the built-in defaults for `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, &ConfigOverrides::default())
    }

    /// [`Config::load`] with command-line overrides laid over the file.
    pub fn load_with(path: Option<&Path>, overrides: &ConfigOverrides) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml_str_with("", Path::new(DEFAULTS_SOURCE), overrides),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
                Config::from_toml_str_with(&text, path, overrides)
            }
        }
    }

    /// [`Config::from_toml_str`] with command-line overrides laid over the file.
    pub fn from_toml_str_with(text: &str, source: &Path, overrides: &ConfigOverrides) -> Result<Config, ConfigError> {
        let file = FileConfig::parse(text, source)?;
        file.resolve(overrides)
    }
}

/// The file's settings, each checked on its own, before flags and resolution.
#[derive(Debug, Clone)]
struct FileConfig {
    path: PathBuf,
    node_id: i32,
    data_dir: PathBuf,
    /// 0 = one per available core.
    shards: usize,
    log_level: String,
    listen: SocketAddr,
    advertised_listener: Option<AdvertisedListener>,
    request_bytes_max: usize,
    connections_per_shard_max: usize,
    requests_in_flight_per_connection_max: usize,
    auto_create_topics: bool,
    retention_check_interval_ms: u64,
    topic_defaults: TopicDefaults,
    shard: ShardLimits,
    prefault_memory: bool,
    shard_overrides: BTreeMap<usize, ShardOverride>,
    groups: GroupConfig,
    transactions: TxnConfig,
}

/// The keys one `[shard.overrides.N]` sets.
#[derive(Debug, Clone, Default)]
struct ShardOverride {
    write_buffer_bytes: Option<usize>,
    tail_cache_bytes: Option<usize>,
    io_depth: Option<usize>,
    write_chunk_bytes: Option<usize>,
}

impl FileConfig {
    fn defaults(path: &Path) -> FileConfig {
        FileConfig {
            path: path.to_path_buf(),
            node_id: 1,
            data_dir: PathBuf::from("./stele-data"),
            shards: 0,
            log_level: "info".to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9092),
            advertised_listener: None,
            request_bytes_max: 104_857_600,
            connections_per_shard_max: 10_000,
            requests_in_flight_per_connection_max: 32,
            auto_create_topics: true,
            retention_check_interval_ms: 300_000,
            topic_defaults: TopicDefaults::default(),
            shard: ShardLimits::default(),
            prefault_memory: true,
            shard_overrides: BTreeMap::new(),
            groups: GroupConfig::default(),
            transactions: TxnConfig::default(),
        }
    }

    fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let table: Table = text.parse().map_err(|error: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let reader = Reader { path };
        let mut file = FileConfig::defaults(path);
        for (key, value) in &table {
            match key.as_str() {
                "node_id" => {
                    file.node_id = reader.integer(key, value, 0, i32::MAX as i64, "a non-negative integer")? as i32
                }
                "data_dir" => file.data_dir = PathBuf::from(reader.string(key, value, "a non-empty path")?),
                "shards" => {
                    let expected = "0 (one per core) or a shard count up to 1024";
                    file.shards = reader.integer(key, value, 0, SHARDS_MAX as i64, expected)? as usize;
                }
                "log_level" => {
                    let text = reader.string(key, value, LOG_LEVEL_EXPECTED)?;
                    validate_log_level(text).map_err(|_| reader.invalid(key, LOG_LEVEL_EXPECTED, value))?;
                    file.log_level = text.to_string();
                }
                "network" => file.parse_network(&reader, reader.table(key, value)?)?,
                "topics" => file.parse_topics(&reader, reader.table(key, value)?)?,
                "shard" => file.parse_shard(&reader, reader.table(key, value)?)?,
                "groups" => file.parse_groups(&reader, reader.table(key, value)?)?,
                "transactions" => file.parse_transactions(&reader, reader.table(key, value)?)?,
                _ => return Err(reader.unknown(key, "")),
            }
        }
        Ok(file)
    }

    fn parse_network(&mut self, reader: &Reader<'_>, table: &Table) -> Result<(), ConfigError> {
        for (name, value) in table {
            let key = &dotted("network", name);
            match name.as_str() {
                "listen" => {
                    let expected = "an IP address and port such as \"127.0.0.1:9092\" or \"0.0.0.0:9092\"";
                    let text = reader.string(key, value, expected)?;
                    self.listen = text.parse().map_err(|_| reader.invalid(key, expected, value))?;
                }
                "advertised_listener" => {
                    let expected = "HOST:PORT that clients can connect to, such as \"broker1.example.com:9092\"";
                    let text = reader.string(key, value, expected)?;
                    let listener = text.parse().map_err(|_| reader.invalid(key, expected, value))?;
                    self.advertised_listener = Some(listener);
                }
                "request_bytes_max" => {
                    self.request_bytes_max = reader.size(key, value, 1024, i32::MAX as u64)? as usize;
                }
                "connections_per_shard_max" => {
                    let expected = "an integer between 1 and 1000000";
                    self.connections_per_shard_max =
                        reader.integer(key, value, 1, CONNECTIONS_PER_SHARD_MAX as i64, expected)? as usize;
                }
                "requests_in_flight_per_connection_max" => {
                    let expected = "an integer between 1 and 65536";
                    self.requests_in_flight_per_connection_max =
                        reader.integer(key, value, 1, REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX as i64, expected)? as usize;
                }
                _ => return Err(reader.unknown(key, "network")),
            }
        }
        Ok(())
    }

    fn parse_topics(&mut self, reader: &Reader<'_>, table: &Table) -> Result<(), ConfigError> {
        let mut topics = topic_config::from_defaults(&self.topic_defaults);
        for (name, value) in table {
            let key = &dotted("topics", name);
            match name.as_str() {
                "auto.create.topics.enable" => self.auto_create_topics = reader.boolean(key, value)?,
                "num.partitions" => {
                    let expected = "a positive integer";
                    self.topic_defaults.partitions = reader.integer(key, value, 1, i32::MAX as i64, expected)? as i32;
                }
                "log.retention.check.interval.ms" => {
                    let expected = "a positive number of milliseconds";
                    self.retention_check_interval_ms = reader.integer(key, value, 1, i64::MAX, expected)? as u64;
                }
                _ => {
                    let topic_key =
                        topic_config::topic_key_for_broker_name(name).ok_or_else(|| reader.unknown(key, "topics"))?;
                    let text = reader.topic_value(key, topic_key, value)?;
                    topic_config::apply(&mut topics, topic_key.name, &text)
                        .map_err(|error| reader.topic_error(key, value, error))?;
                }
            }
        }
        topics.log.validate().map_err(|error| {
            reader.engine_error(error, |engine_key| {
                let broker_name = topic_config::topic_key(engine_key).map_or(engine_key, |key| key.broker_name);
                dotted("topics", broker_name)
            })
        })?;
        self.topic_defaults = TopicDefaults::from_effective(self.topic_defaults.partitions, &topics);
        Ok(())
    }

    fn parse_groups(&mut self, reader: &Reader<'_>, table: &Table) -> Result<(), ConfigError> {
        for (name, value) in table {
            let key = &dotted("groups", name);
            if !GROUP_KEYS.contains(&name.as_str()) {
                return Err(reader.unknown(key, "groups"));
            }
            let given = match value {
                Value::Integer(number) => GroupValue::Integer(*number),
                Value::Boolean(flag) => GroupValue::Boolean(*flag),
                Value::String(text) => match parse_size(text) {
                    Some(bytes) if name.ends_with(".bytes") => GroupValue::Integer(bytes.min(i64::MAX as u64) as i64),
                    _ => GroupValue::Text(text),
                },
                _ => GroupValue::Text(""),
            };
            self.groups.set(name, given).map_err(|expected| reader.invalid(key, &expected, value))?;
        }
        self.groups.validate().map_err(|reason| ConfigError::Invalid {
            path: reader.path.to_path_buf(),
            key: "groups".to_string(),
            reason,
        })
    }

    fn parse_transactions(&mut self, reader: &Reader<'_>, table: &Table) -> Result<(), ConfigError> {
        for (name, value) in table {
            let key = &dotted("transactions", name);
            if !TRANSACTION_KEYS.contains(&name.as_str()) {
                return Err(reader.unknown(key, "transactions"));
            }
            let boolean = name.ends_with(".enable");
            let given = match value {
                Value::Integer(number) if !boolean => Some(*number),
                Value::Boolean(flag) if boolean => Some(i64::from(*flag)),
                Value::String(text) if name.ends_with(".bytes") => {
                    parse_size(text).map(|bytes| bytes.min(i64::MAX as u64) as i64)
                }
                _ => None,
            };
            let expected = if boolean { "true or false" } else { "an integer" };
            let set = given.ok_or_else(|| expected.to_string()).and_then(|n| self.transactions.set(name, n));
            set.map_err(|expected| reader.invalid(key, &expected, value))?;
        }
        Ok(())
    }

    fn parse_shard(&mut self, reader: &Reader<'_>, table: &Table) -> Result<(), ConfigError> {
        for (name, value) in table {
            if name == "overrides" {
                for (index, value) in reader.table("shard.overrides", value)? {
                    let key = format!("shard.overrides.{index}");
                    let shard: usize = index.parse().map_err(|_| ConfigError::InvalidValue {
                        path: reader.path.to_path_buf(),
                        key: key.clone(),
                        expected: "a table named after a shard index (0, 1, ...)".to_string(),
                        got: format!("\"{index}\""),
                    })?;
                    let table = reader.table(&key, value)?;
                    let mut shard_override = ShardOverride::default();
                    for (name, value) in table {
                        let key = format!("shard.overrides.{index}.{name}");
                        if name == "prefault_memory" {
                            return Err(ConfigError::Invalid {
                                path: reader.path.to_path_buf(),
                                key,
                                reason: "applies to the whole broker: set it in [shard]".to_string(),
                            });
                        }
                        let slot = shard_override.slot(name).ok_or_else(|| reader.unknown(&key, "shard"))?;
                        *slot = Some(reader.shard_value(&key, name, value)?);
                    }
                    self.shard_overrides.insert(shard, shard_override);
                }
                continue;
            }
            let key = &dotted("shard", name);
            if name == "prefault_memory" {
                // One setting for the whole process: the allocator's
                // purging is process-wide, so it has no per-shard override.
                self.prefault_memory = reader.boolean(key, value)?;
                continue;
            }
            let parsed = reader.shard_value(key, name, value)?;
            match name.as_str() {
                "write_buffer_bytes" => self.shard.write_buffer_bytes_max = parsed,
                "tail_cache_bytes" => self.shard.tail_cache_bytes_max = parsed,
                "io_depth" => self.shard.writes_in_flight_max = parsed,
                "write_chunk_bytes" => self.shard.write_chunk_bytes_max = parsed,
                _ => unreachable!("shard_value accepts only the [shard] keys"),
            }
        }
        Ok(())
    }

    /// Lays the flags over the file and makes the checks that need all values.
    fn resolve(self, overrides: &ConfigOverrides) -> Result<Config, ConfigError> {
        let shards = match overrides.shards.unwrap_or(self.shards) {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            shards => shards,
        };
        let listen = overrides.listen.unwrap_or(self.listen);
        let advertised = match overrides.advertised_listener.clone().or_else(|| self.advertised_listener.clone()) {
            Some(listener) => listener,
            None if listen.ip().is_unspecified() => {
                return Err(ConfigError::Invalid {
                    path: self.path.clone(),
                    key: "network.advertised_listener".to_string(),
                    reason: format!(
                        "must be set (or --advertised-listener given) because the listen address {listen} is a \
                         wildcard that clients cannot connect to"
                    ),
                });
            }
            None => AdvertisedListener { host: listen.ip().to_string(), port: listen.port() },
        };
        let shard_limits = self.shard_limits(shards)?;
        Ok(Config {
            node_id: overrides.node_id.unwrap_or(self.node_id),
            data_dir: overrides.data_dir.clone().unwrap_or(self.data_dir),
            shards,
            log_level: overrides.log_level.clone().unwrap_or(self.log_level),
            listen,
            advertised_host: advertised.host,
            advertised_port: advertised.port,
            request_bytes_max: self.request_bytes_max,
            connections_per_shard_max: self.connections_per_shard_max,
            requests_in_flight_per_connection_max: self.requests_in_flight_per_connection_max,
            auto_create_topics: self.auto_create_topics,
            retention_check_interval_ms: self.retention_check_interval_ms,
            topic_defaults: self.topic_defaults,
            shard_limits,
            prefault_memory: overrides.prefault_memory.unwrap_or(self.prefault_memory),
            groups: self.groups,
            transactions: self.transactions,
        })
    }

    /// `[shard]` with each shard's overrides applied, each checked by the engine.
    fn shard_limits(&self, shards: usize) -> Result<Vec<ShardLimits>, ConfigError> {
        if let Some((&index, _)) = self.shard_overrides.range(shards..).next() {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                key: format!("shard.overrides.{index}"),
                reason: format!("there is no shard {index}: shards are numbered 0 to {}", shards - 1),
            });
        }
        let reader = Reader { path: &self.path };
        let mut all = Vec::with_capacity(shards);
        for shard in 0..shards {
            let set = self.shard_overrides.get(&shard).cloned().unwrap_or_default();
            let limits = ShardLimits {
                write_buffer_bytes_max: set.write_buffer_bytes.unwrap_or(self.shard.write_buffer_bytes_max),
                tail_cache_bytes_max: set.tail_cache_bytes.unwrap_or(self.shard.tail_cache_bytes_max),
                writes_in_flight_max: set.io_depth.unwrap_or(self.shard.writes_in_flight_max),
                write_chunk_bytes_max: set.write_chunk_bytes.unwrap_or(self.shard.write_chunk_bytes_max),
            };
            limits.validate().map_err(|error| {
                let error = reader.engine_error(error, |name| {
                    let mut set = set.clone();
                    match set.slot(name) {
                        Some(Some(_)) => format!("shard.overrides.{shard}.{name}"),
                        _ => dotted("shard", name),
                    }
                });
                match error {
                    ConfigError::Invalid { path, key, reason } => {
                        ConfigError::Invalid { path, key, reason: format!("{reason} (shard {shard})") }
                    }
                    other => other,
                }
            })?;
            all.push(limits);
        }
        Ok(all)
    }
}

impl ShardOverride {
    fn slot(&mut self, name: &str) -> Option<&mut Option<usize>> {
        match name {
            "write_buffer_bytes" => Some(&mut self.write_buffer_bytes),
            "tail_cache_bytes" => Some(&mut self.tail_cache_bytes),
            "io_depth" => Some(&mut self.io_depth),
            "write_chunk_bytes" => Some(&mut self.write_chunk_bytes),
            _ => None,
        }
    }
}

const LOG_LEVEL_EXPECTED: &str =
    "a level (off, error, warn, info, debug, trace) or an EnvFilter directive such as \"info,broker=debug\"";

/// Checks a `log_level` value: an `EnvFilter` directive, except that a lone
/// word must be a level. EnvFilter reads a lone word as a target name, so a
/// typo such as "inf" would silently turn all logging off.
pub fn validate_log_level(text: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let lone_word = !text.contains(['=', ',', '[', ':']);
    let is_level = LEVELS.iter().any(|level| level.eq_ignore_ascii_case(text.trim()));
    if text.trim().is_empty() || (lone_word && !is_level) {
        return Err(format!("expected {LOG_LEVEL_EXPECTED}, got \"{text}\""));
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| ())
        .map_err(|error| format!("expected {LOG_LEVEL_EXPECTED}, got \"{text}\": {error}"))
}

/// `table.key`, quoting a key that contains dots as TOML would.
fn dotted(table: &str, key: &str) -> String {
    if key.contains('.') {
        format!("{table}.\"{key}\"")
    } else {
        format!("{table}.{key}")
    }
}

/// Reads typed values out of TOML, turning every mismatch into an error that
/// names the file and key.
struct Reader<'a> {
    path: &'a Path,
}

const SIZE_EXPECTED: &str = "a size in bytes: an integer, or a string such as \"64MiB\"";

impl Reader<'_> {
    fn invalid(&self, key: &str, expected: &str, got: &Value) -> ConfigError {
        ConfigError::InvalidValue {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }

    fn unknown(&self, key: &str, table: &str) -> ConfigError {
        let leaf = key.strip_prefix(table).and_then(|key| key.strip_prefix('.')).unwrap_or(key).trim_matches('"');
        let known: Vec<&str> = keys().into_iter().filter(|(t, _)| *t == table).map(|(_, key)| key).collect();
        let hint = match topic_config::topic_key(leaf) {
            Some(topic_key) if table == "topics" => {
                format!(" (did you mean `{}`? [topics] takes Kafka's broker-level names)", topic_key.broker_name)
            }
            _ if table.is_empty() => {
                format!(" (known: {}, [network], [topics], [shard], [groups], [transactions])", known.join(", "))
            }
            _ => format!(" (known keys of [{table}]: {})", known.join(", ")),
        };
        ConfigError::UnknownKey { path: self.path.to_path_buf(), key: key.to_string(), hint }
    }

    fn table<'v>(&self, key: &str, value: &'v Value) -> Result<&'v Table, ConfigError> {
        value.as_table().ok_or_else(|| self.invalid(key, "a table", value))
    }

    fn integer(&self, key: &str, value: &Value, min: i64, max: i64, expected: &str) -> Result<i64, ConfigError> {
        value
            .as_integer()
            .filter(|number| (min..=max).contains(number))
            .ok_or_else(|| self.invalid(key, expected, value))
    }

    fn string<'v>(&self, key: &str, value: &'v Value, expected: &str) -> Result<&'v str, ConfigError> {
        value.as_str().filter(|text| !text.trim().is_empty()).ok_or_else(|| self.invalid(key, expected, value))
    }

    fn boolean(&self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        value.as_bool().ok_or_else(|| self.invalid(key, "true or false", value))
    }

    /// A size in bytes within `min..=max`: an integer or "64MiB".
    fn size(&self, key: &str, value: &Value, min: u64, max: u64) -> Result<u64, ConfigError> {
        let bytes = match value {
            Value::Integer(number) => u64::try_from(*number).ok(),
            Value::String(text) => parse_size(text),
            _ => None,
        };
        match bytes {
            Some(bytes) if (min..=max).contains(&bytes) => Ok(bytes),
            Some(_) => Err(self.invalid(key, &format!("{SIZE_EXPECTED}, between {min} and {max}"), value)),
            None => Err(self.invalid(key, SIZE_EXPECTED, value)),
        }
    }

    /// A `[shard]` or `[shard.overrides.N]` value.
    fn shard_value(&self, key: &str, name: &str, value: &Value) -> Result<usize, ConfigError> {
        let max = isize::MAX as u64;
        let parsed = match name {
            "write_buffer_bytes" | "write_chunk_bytes" => self.size(key, value, 1, max)?,
            "tail_cache_bytes" => self.size(key, value, 0, max)?,
            "io_depth" => self.integer(key, value, 1, 65_536, "a positive integer up to 65536")? as u64,
            _ => return Err(self.unknown(key, "shard")),
        };
        Ok(parsed as usize)
    }

    /// A `[topics]` value as the string Kafka would send, after checking that
    /// its TOML type fits the key's type.
    fn topic_value(&self, key: &str, topic_key: &topic_config::TopicKey, value: &Value) -> Result<String, ConfigError> {
        let text = match (topic_key.config_type, value) {
            (ConfigType::Int | ConfigType::Long | ConfigType::Short, Value::Integer(number)) => {
                Some(number.to_string())
            }
            (ConfigType::Int | ConfigType::Long, Value::String(text)) if topic_key.name.ends_with(".bytes") => {
                parse_size(text).map(|bytes| bytes.to_string())
            }
            (ConfigType::Boolean, Value::Boolean(flag)) => Some(flag.to_string()),
            (ConfigType::String | ConfigType::List, Value::String(text)) => Some(text.clone()),
            (ConfigType::List, Value::Array(items)) => {
                items.iter().map(|item| item.as_str()).collect::<Option<Vec<_>>>().map(|items| items.join(","))
            }
            _ => None,
        };
        text.ok_or_else(|| {
            let expected = match topic_key.config_type {
                ConfigType::Boolean => "true or false",
                ConfigType::String => "a string",
                ConfigType::List => "a string or an array of strings",
                _ if topic_key.name.ends_with(".bytes") => SIZE_EXPECTED,
                _ => "an integer",
            };
            self.invalid(key, expected, value)
        })
    }

    fn topic_error(&self, key: &str, value: &Value, error: TopicConfigError) -> ConfigError {
        match error {
            TopicConfigError::InvalidValue { expected, .. } => self.invalid(key, expected, value),
            TopicConfigError::Unsupported { reason, .. } => ConfigError::Invalid {
                path: self.path.to_path_buf(),
                key: key.to_string(),
                reason: format!("{value}: {reason}"),
            },
            TopicConfigError::Unknown { .. } => self.unknown(key, "topics"),
        }
    }

    /// An engine validation error, its key translated to the file's key.
    fn engine_error(&self, error: engine::EngineError, file_key: impl FnOnce(&str) -> String) -> ConfigError {
        match error {
            engine::EngineError::Config { key, value, reason } => ConfigError::Invalid {
                path: self.path.to_path_buf(),
                key: file_key(key),
                reason: format!("{reason}, got {value}"),
            },
            other => unreachable!("engine validation returns only Config errors, got {other}"),
        }
    }
}

/// Parses "4096", "64MiB", "64 MiB", "1GiB", "100MB": binary (KiB, MiB,
/// GiB, TiB) and decimal (KB, MB, GB, TB) units; `None` on anything else or
/// on overflow.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use engine::FlushPolicy;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("stele.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |cores| cores.get())
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        // Proves: the built-in defaults are the ones docs/configuration.md lists.
        let config = Config::load(None).unwrap();
        assert_eq!(config, parse("").unwrap());
        assert_eq!(config.node_id, 1);
        assert_eq!(config.data_dir, PathBuf::from("./stele-data"));
        assert_eq!(config.shards, cores());
        assert_eq!(config.log_level, "info");
        assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("127.0.0.1", 9092));
        assert_eq!(config.request_bytes_max, 104_857_600);
        assert_eq!(config.connections_per_shard_max, 10_000);
        assert_eq!(config.requests_in_flight_per_connection_max, 32);
        assert!(config.auto_create_topics);
        assert_eq!(config.topic_defaults.partitions, 1);
        assert_eq!(config.topic_defaults.log, LogConfig::default());
        assert_eq!(config.topic_defaults.message_bytes_max, 1_048_588);
        assert_eq!(config.topic_defaults.message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.topic_defaults.message_timestamp_before_max_ms, i64::MAX);
        assert_eq!(config.topic_defaults.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(config.shard_limits, vec![ShardLimits::default(); cores()]);
        assert!(config.prefault_memory);
        assert_eq!(config.transactions, crate::txn::config::TxnConfig::default());
        assert_eq!(config.transactions.transaction_timeout_ms_max, 900_000);
        assert_eq!(config.transactions.transactional_id_expiration_ms, 604_800_000);
        assert_eq!(config.transactions.abort_timed_out_interval_ms, 10_000);
    }

    #[test]
    fn every_section_overrides_its_defaults() {
        // Proves: each key of the file reaches its field, in the file's units.
        let config = parse(
            r#"
            node_id = 7
            data_dir = "/var/lib/stele"
            shards = 3
            log_level = "info,broker=debug"
            [network]
            listen = "0.0.0.0:19092"
            advertised_listener = "PLAINTEXT://broker7.example.com:29092"
            request_bytes_max = "50MiB"
            connections_per_shard_max = 100
            requests_in_flight_per_connection_max = 4
            [topics]
            "auto.create.topics.enable" = false
            "num.partitions" = 6
            "log.segment.bytes" = "128MiB"
            "log.roll.ms" = 3600000
            "log.retention.ms" = -1
            "log.retention.bytes" = 1000000000
            "log.flush.interval.messages" = 10000
            "log.flush.interval.ms" = 1000
            "log.index.interval.bytes" = 8192
            "message.max.bytes" = 2097152
            "log.message.timestamp.type" = "LogAppendTime"
            "log.message.timestamp.before.max.ms" = 86400000
            "log.message.timestamp.after.max.ms" = 60000
            "log.cleanup.policy" = ["delete"]
            "compression.type" = "producer"
            "min.insync.replicas" = 1
            "unclean.leader.election.enable" = false
            [shard]
            write_buffer_bytes = "32MiB"
            tail_cache_bytes = 0
            io_depth = 8
            write_chunk_bytes = 524288
            prefault_memory = false
            [transactions]
            "transaction.max.timeout.ms" = 60000
            "transactional.id.expiration.ms" = 86400000
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" = 1000
            "transaction.remove.expired.transaction.cleanup.interval.ms" = 60000
            "transaction.state.log.segment.bytes" = "8MiB"
            "transaction.partition.verification.enable" = false
            "#,
        )
        .unwrap();
        assert_eq!(config.node_id, 7);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/stele"));
        assert_eq!(config.shards, 3);
        assert_eq!(config.log_level, "info,broker=debug");
        assert!(!config.prefault_memory);
        assert_eq!(config.listen, "0.0.0.0:19092".parse().unwrap());
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("broker7.example.com", 29092));
        assert_eq!(config.request_bytes_max, 50 << 20);
        assert_eq!(config.connections_per_shard_max, 100);
        assert_eq!(config.requests_in_flight_per_connection_max, 4);
        assert!(!config.auto_create_topics);
        let topics = &config.topic_defaults;
        assert_eq!(topics.partitions, 6);
        assert_eq!(topics.log.segment_bytes_max, 128 << 20);
        assert_eq!(topics.log.segment_age_max, Some(Duration::from_secs(3600)));
        assert_eq!(topics.log.retention_age_max, None);
        assert_eq!(topics.log.retention_bytes_max, Some(1_000_000_000));
        assert_eq!(
            topics.log.flush_policy,
            FlushPolicy::Interval { messages: Some(10_000), interval: Some(Duration::from_secs(1)) }
        );
        assert_eq!(topics.log.index_interval_bytes, 8192);
        assert_eq!(topics.message_bytes_max, 2 << 20);
        assert_eq!(topics.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(topics.message_timestamp_before_max_ms, 86_400_000);
        assert_eq!(topics.message_timestamp_after_max_ms, 60_000);
        let shard = ShardLimits {
            write_buffer_bytes_max: 32 << 20,
            tail_cache_bytes_max: 0,
            writes_in_flight_max: 8,
            write_chunk_bytes_max: 512 << 10,
        };
        assert_eq!(config.shard_limits, vec![shard; 3]);
        let transactions = &config.transactions;
        assert_eq!(transactions.transaction_timeout_ms_max, 60_000);
        assert_eq!(transactions.transactional_id_expiration_ms, 86_400_000);
        assert_eq!(transactions.abort_timed_out_interval_ms, 1_000);
        assert_eq!(transactions.remove_expired_interval_ms, 60_000);
        assert_eq!(transactions.log_segment_bytes, 8 << 20);
        assert!(!transactions.partition_verification);
    }

    #[test]
    fn per_shard_overrides_apply_to_their_shard_only() {
        // Proves: [shard.overrides.N] changes shard N and nothing else, and an
        // index beyond the shard count is an error naming the table.
        let config = parse(
            "shards = 3\n[shard]\nio_depth = 16\n[shard.overrides.1]\ntail_cache_bytes = \"512MiB\"\nio_depth = 64\n",
        )
        .unwrap();
        let base = ShardLimits { writes_in_flight_max: 16, ..ShardLimits::default() };
        assert_eq!(config.shard_limits[0], base);
        assert_eq!(
            config.shard_limits[1],
            ShardLimits { tail_cache_bytes_max: 512 << 20, writes_in_flight_max: 64, ..base.clone() }
        );
        assert_eq!(config.shard_limits[2], base);

        let message = error("shards = 2\n[shard.overrides.2]\nio_depth = 4\n");
        assert!(message.contains("key `shard.overrides.2`") && message.contains("0 to 1"), "{message}");
        let message = error("shards = 2\n[shard.overrides.first]\nio_depth = 4\n");
        assert!(message.contains("`shard.overrides.first`"), "{message}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        // Proves: a misspelt key anywhere fails with its full name, and a
        // topic-level name in [topics] gets a hint with the broker-level one.
        let message = error("node-id = 3");
        assert!(message.starts_with("stele.toml: unknown key `node-id`"), "{message}");
        let message = error("[network]\nlisten_address = \"127.0.0.1:1\"");
        assert!(message.contains("`network.listen_address`") && message.contains("listen"), "{message}");
        let message = error("[topics]\n\"segment.bytes\" = 4096");
        assert!(message.contains("`topics.\"segment.bytes\"`") && message.contains("`log.segment.bytes`"), "{message}");
        let message = error("[shard]\niodepth = 3");
        assert!(message.contains("`shard.iodepth`"), "{message}");
        let message = error("shards = 1\n[shard.overrides.0]\ncache = 3");
        assert!(message.contains("`shard.overrides.0.cache`"), "{message}");
        let message = error("[transactions]\n\"transaction.timeout.ms\" = 3");
        assert!(message.contains("`transactions.\"transaction.timeout.ms\"`"), "{message}");
        assert!(message.contains("transaction.max.timeout.ms"), "{message}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_expected_form() {
        // Proves: each refused value names the file, the key, the expected
        // form and the value found.
        assert_eq!(
            error("[shard]\nio_depth = -3"),
            "stele.toml: key `shard.io_depth`: expected a positive integer up to 65536, got -3"
        );
        assert_eq!(
            error("[network]\nlisten = \"localhost\""),
            "stele.toml: key `network.listen`: expected an IP address and port such as \"127.0.0.1:9092\" or \
             \"0.0.0.0:9092\", got \"localhost\""
        );
        let message = error("[shard.overrides.0]\nprefault_memory = false");
        assert!(
            message.contains("`shard.overrides.0.prefault_memory`") && message.contains("whole broker"),
            "{message}"
        );
        for (text, key) in [
            ("node_id = -1", "node_id"),
            ("shards = 5000", "shards"),
            ("log_level = \"infp\"", "log_level"),
            ("data_dir = 3", "data_dir"),
            ("network = 1", "network"),
            ("[network]\nadvertised_listener = \"no-port\"", "network.advertised_listener"),
            ("[network]\nrequest_bytes_max = \"lots\"", "network.request_bytes_max"),
            ("[topics]\n\"log.retention.ms\" = -5", "topics.\"log.retention.ms\""),
            ("[topics]\n\"log.segment.bytes\" = 100", "topics.\"log.segment.bytes\""),
            ("[topics]\n\"num.partitions\" = \"3\"", "topics.\"num.partitions\""),
            ("[topics]\n\"log.message.timestamp.type\" = \"Now\"", "topics.\"log.message.timestamp.type\""),
            ("[shard]\nwrite_chunk_bytes = 1000", "shard.write_chunk_bytes"),
            ("[shard]\nprefault_memory = \"yes\"", "shard.prefault_memory"),
            ("[transactions]\n\"transaction.max.timeout.ms\" = 0", "transactions.\"transaction.max.timeout.ms\""),
            (
                "[transactions]\n\"transactional.id.expiration.ms\" = \"1d\"",
                "transactions.\"transactional.id.expiration.ms\"",
            ),
            (
                "[transactions]\n\"transaction.state.log.segment.bytes\" = \"1KiB\"",
                "transactions.\"transaction.state.log.segment.bytes\"",
            ),
        ] {
            let message = error(text);
            assert!(message.starts_with(&format!("stele.toml: key `{key}`: ")), "{text}: {message}");
        }
        let message = error("[topics]\n\"log.cleanup.policy\" = \"compact\"");
        assert!(message.contains("compaction is not supported"), "{message}");
        let message = error("shards = 2\n[shard.overrides.1]\nwrite_buffer_bytes = 4096");
        assert!(message.contains("`shard.overrides.1.write_buffer_bytes`") && message.contains("shard 1"), "{message}");
        let message = error("this is not toml");
        assert!(message.starts_with("stele.toml: invalid TOML"), "{message}");
    }

    #[test]
    fn wildcard_listen_needs_an_advertised_listener() {
        // Proves: listening on 0.0.0.0 without saying what to advertise is
        // refused, since clients would be told to connect to 0.0.0.0.
        let message = error("[network]\nlisten = \"0.0.0.0:9092\"");
        assert!(message.contains("`network.advertised_listener`"), "{message}");
        let config = parse("[network]\nlisten = \"[::1]:9093\"").unwrap();
        assert_eq!((config.advertised_host.as_str(), config.advertised_port), ("::1", 9093));
        assert!(error("[network]\nadvertised_listener = \"0.0.0.0:9092\"").contains("advertised_listener"));
    }

    #[test]
    fn sizes_accept_units() {
        // Proves: sizes may be written with binary or decimal units.
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5GiB"), None);
        assert_eq!(parse_size("99999999999TiB"), None);
    }

    fn repository_file(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    #[test]
    fn example_file_equals_the_built_in_defaults() {
        // Proves: stele.toml at the repository root parses and spells out
        // exactly the built-in defaults, and shows every key.
        let text = repository_file("stele.toml");
        assert_eq!(parse(&text).unwrap(), Config::load(None).unwrap());
        for (table, key) in keys() {
            assert!(text.contains(key), "stele.toml does not mention [{table}] {key}");
        }
    }

    #[test]
    fn docs_describe_every_key() {
        // Proves: docs/configuration.md documents every key the file and
        // topics accept.
        let text = repository_file("docs/configuration.md");
        for (table, key) in keys() {
            assert!(text.contains(&format!("`{key}`")), "docs/configuration.md does not document [{table}] {key}");
        }
        for key in topic_config::TOPIC_KEYS {
            assert!(text.contains(&format!("`{}`", key.name)), "docs/configuration.md misses `{}`", key.name);
        }
    }
}
