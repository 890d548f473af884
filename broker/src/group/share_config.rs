//! Share groups' GROUP configs (resource type 32 of DescribeConfigs and
//! IncrementalAlterConfigs), under Kafka 4.2's names: `share.*` values set
//! per group id, validated against the broker's `group.share.*` bounds as
//! Kafka's `GroupConfig.validate` does (INVALID_CONFIG, Kafka's messages),
//! and the effective settings the share fetch path reads
//! ([`effective_share_config`]).
//!
//! A group's configs are kept on its coordinator shard with its other state
//! and written to the group log as one `GroupConfig` record stating them
//! all (docs/groups.md). As in Kafka they are keyed by the group id only:
//! they may be set before the group exists and outlive DeleteGroups.
//! Kafka also has `consumer.*` and `streams.*` GROUP configs; Stele serves
//! only the share ones (any other name is "Unknown group config name").

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::GroupConfig;
use crate::shard::Shard;
use crate::topic_config::{ConfigEntry, ConfigSource, ConfigSynonym, ConfigType};

/// Kafka's ConfigResource type of groups.
pub const RESOURCE_GROUP: i8 = 32;

pub const SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
pub const HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
pub const RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
pub const ISOLATION_LEVEL: &str = "share.isolation.level";

/// Every GROUP config name Stele accepts, in the order DescribeConfigs
/// lists them.
pub const GROUP_CONFIG_KEYS: &[&str] = &[
    SESSION_TIMEOUT_MS,
    HEARTBEAT_INTERVAL_MS,
    RECORD_LOCK_DURATION_MS,
    DELIVERY_COUNT_LIMIT,
    AUTO_OFFSET_RESET,
    ISOLATION_LEVEL,
];

/// The most GROUP configs one group may hold: one per known name.
pub const GROUP_CONFIGS_PER_GROUP_MAX: usize = 6;
const _: () = assert!(GROUP_CONFIG_KEYS.len() == GROUP_CONFIGS_PER_GROUP_MAX);

/// `share.auto.offset.reset`: where a share partition starts when the
/// group first reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// The log end (Kafka's default).
    Latest,
    /// The log start.
    Earliest,
    /// The first record at or after now minus this duration.
    ByDuration(Duration),
}

/// `share.isolation.level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
}

/// What a share group's partitions run with: its GROUP configs over the
/// broker's `group.share.*` values, each within the broker's bounds
/// (a value set before the bounds were narrowed is clamped to them, as
/// Kafka's `GroupConfig.evaluate` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareGroupSettings {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    pub record_lock_duration_ms: i32,
    pub delivery_count_limit: i32,
    pub auto_offset_reset: AutoOffsetReset,
    pub isolation_level: IsolationLevel,
    /// `group.share.partition.max.record.locks` (broker only in 4.2).
    pub partition_max_record_locks: i32,
}

/// The settings of `group_id`'s share partitions; call it on the group's
/// coordinator shard (`super::coordinator_shard`), where its configs live.
/// A group without configs (or that does not exist) gets the broker's.
pub fn effective_share_config(shard: &Shard, group_id: &str) -> ShareGroupSettings {
    let configs = shard.groups.group_configs(group_id);
    settings(&shard.groups.config, &configs)
}

/// [`effective_share_config`] from the broker settings and a group's
/// configs.
pub fn settings(broker: &GroupConfig, configs: &BTreeMap<String, String>) -> ShareGroupSettings {
    let int = |key: &str, default: i32, low: i32, high: i32| {
        configs.get(key).and_then(|value| value.parse::<i32>().ok()).map_or(default, |value| value.clamp(low, high))
    };
    let session_timeout_ms = int(
        SESSION_TIMEOUT_MS,
        broker.share_session_timeout_ms,
        broker.share_session_timeout_ms_min,
        broker.share_session_timeout_ms_max,
    );
    let heartbeat_interval_ms = int(
        HEARTBEAT_INTERVAL_MS,
        broker.share_heartbeat_interval_ms,
        broker.share_heartbeat_interval_ms_min,
        broker.share_heartbeat_interval_ms_max,
    );
    ShareGroupSettings {
        session_timeout_ms,
        heartbeat_interval_ms,
        record_lock_duration_ms: int(
            RECORD_LOCK_DURATION_MS,
            broker.share_record_lock_duration_ms,
            broker.share_record_lock_duration_ms_min,
            broker.share_record_lock_duration_ms_max,
        ),
        delivery_count_limit: int(
            DELIVERY_COUNT_LIMIT,
            broker.share_delivery_count_limit,
            broker.share_delivery_count_limit_min,
            broker.share_delivery_count_limit_max,
        ),
        auto_offset_reset: configs
            .get(AUTO_OFFSET_RESET)
            .and_then(|value| parse_auto_offset_reset(value).ok())
            .unwrap_or(AutoOffsetReset::Latest),
        isolation_level: match configs.get(ISOLATION_LEVEL).map(String::as_str) {
            Some("read_committed") => IsolationLevel::ReadCommitted,
            _ => IsolationLevel::ReadUncommitted,
        },
        partition_max_record_locks: broker.share_partition_max_record_locks,
    }
}

/// Kafka's `GroupConfig.validate` for the share keys: every name known,
/// every value of its type and within its range, then within the broker's
/// bounds, and the session timeout above the heartbeat interval (values not
/// set count as the broker's). The error is Kafka's message; its code is
/// INVALID_CONFIG.
pub fn validate(broker: &GroupConfig, configs: &BTreeMap<String, String>) -> Result<(), String> {
    if let Some(unknown) = configs.keys().find(|key| !GROUP_CONFIG_KEYS.contains(&key.as_str())) {
        return Err(format!("Unknown group config name: {unknown}"));
    }
    let int = |key: &str, default: i32, at_least: i32| -> Result<i32, String> {
        let Some(value) = configs.get(key) else {
            return Ok(default);
        };
        let parsed = value
            .trim()
            .parse::<i32>()
            .map_err(|_| format!("Invalid value {value} for configuration {key}: Not a number of type INT"))?;
        if parsed < at_least {
            return Err(format!("Invalid value {value} for configuration {key}: Value must be at least {at_least}"));
        }
        Ok(parsed)
    };
    let session = int(SESSION_TIMEOUT_MS, broker.share_session_timeout_ms, 1)?;
    let heartbeat = int(HEARTBEAT_INTERVAL_MS, broker.share_heartbeat_interval_ms, 1)?;
    let lock = int(RECORD_LOCK_DURATION_MS, broker.share_record_lock_duration_ms, 1000)?;
    let deliveries = int(DELIVERY_COUNT_LIMIT, broker.share_delivery_count_limit, 2)?;
    if let Some(value) = configs.get(AUTO_OFFSET_RESET) {
        parse_auto_offset_reset(value)?;
    }
    if let Some(value) = configs.get(ISOLATION_LEVEL) {
        if value != "read_committed" && value != "read_uncommitted" {
            return Err(format!(
                "Invalid value {value} for configuration {ISOLATION_LEVEL}: String must be one of: read_committed, \
                 read_uncommitted"
            ));
        }
    }
    let b = broker;
    let bounds = [
        (
            HEARTBEAT_INTERVAL_MS,
            heartbeat,
            b.share_heartbeat_interval_ms_min,
            b.share_heartbeat_interval_ms_max,
            "heartbeat.interval.ms",
        ),
        (
            SESSION_TIMEOUT_MS,
            session,
            b.share_session_timeout_ms_min,
            b.share_session_timeout_ms_max,
            "session.timeout.ms",
        ),
        (
            RECORD_LOCK_DURATION_MS,
            lock,
            b.share_record_lock_duration_ms_min,
            b.share_record_lock_duration_ms_max,
            "record.lock.duration.ms",
        ),
        (
            DELIVERY_COUNT_LIMIT,
            deliveries,
            b.share_delivery_count_limit_min,
            b.share_delivery_count_limit_max,
            "delivery.count.limit",
        ),
    ];
    // Kafka names the broker key of the bound: group.share.min.<suffix>
    // and group.share.max.<suffix>.
    for (key, value, min, max, suffix) in bounds {
        if value < min {
            return Err(format!("{key} must be greater than or equal to group.share.min.{suffix}"));
        }
        if value > max {
            return Err(format!("{key} must be less than or equal to group.share.max.{suffix}"));
        }
    }
    if session <= heartbeat {
        return Err(format!("{SESSION_TIMEOUT_MS} must be greater than {HEARTBEAT_INTERVAL_MS}"));
    }
    Ok(())
}

/// Kafka's `ShareGroupAutoOffsetResetStrategy`: `latest`, `earliest` or
/// `by_duration:<ISO 8601 duration>` (`PnDTnHnMn.nS`, not negative),
/// compared without regard to case.
pub fn parse_auto_offset_reset(value: &str) -> Result<AutoOffsetReset, String> {
    let lower = value.to_ascii_lowercase();
    let invalid = |why: &str| format!("Invalid value {value} for configuration {AUTO_OFFSET_RESET}: {why}");
    match lower.as_str() {
        "latest" => Ok(AutoOffsetReset::Latest),
        "earliest" => Ok(AutoOffsetReset::Earliest),
        _ => match lower.strip_prefix("by_duration:") {
            Some(duration) => parse_iso8601_duration(duration.trim())
                .map(AutoOffsetReset::ByDuration)
                .ok_or_else(|| invalid("Unable to parse the duration, or it is negative")),
            None => Err(invalid("String must be one of: latest, earliest, by_duration:<ISO8601 duration>")),
        },
    }
}

/// Java's `Duration.parse` for non-negative values: `P[nD][T[nH][nM][n[.n]S]]`
/// (case-insensitive), at least one part; `None` otherwise.
fn parse_iso8601_duration(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix(['p', 'P'])?;
    let (days, time) = match rest.find(['t', 'T']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut parts = 0;
    if !days.is_empty() {
        let count: u64 = days.strip_suffix(['d', 'D'])?.parse().ok()?;
        total += Duration::from_secs(count.checked_mul(86_400)?);
        parts += 1;
    }
    if let Some(mut time) = time {
        if time.is_empty() {
            return None;
        }
        for (unit, seconds) in [('h', 3600u64), ('m', 60)] {
            if let Some(at) = time.find([unit, unit.to_ascii_uppercase()]) {
                let count: u64 = time[..at].parse().ok()?;
                total += Duration::from_secs(count.checked_mul(seconds)?);
                time = &time[at + 1..];
                parts += 1;
            }
        }
        if !time.is_empty() {
            let seconds = time.strip_suffix(['s', 'S'])?;
            if !seconds.chars().all(|c| c.is_ascii_digit() || c == '.') || seconds.starts_with('.') {
                return None;
            }
            total += Duration::try_from_secs_f64(seconds.parse::<f64>().ok()?).ok()?;
            parts += 1;
        }
    }
    (parts > 0).then_some(total)
}

/// DescribeConfigs of a GROUP resource: every share key, the group's value
/// (DYNAMIC_GROUP_CONFIG) or the broker's (DEFAULT_CONFIG), with synonyms
/// most specific first.
pub fn describe(broker: &GroupConfig, configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    GROUP_CONFIG_KEYS
        .iter()
        .map(|&name| {
            let default = default_value(broker, name);
            let set = configs.get(name);
            let mut synonyms = Vec::new();
            if let Some(value) = set {
                synonyms.push(ConfigSynonym { name, value: value.clone(), source: ConfigSource::DynamicGroup });
            }
            synonyms.push(ConfigSynonym { name, value: default.clone(), source: ConfigSource::Default });
            ConfigEntry {
                name,
                value: set.cloned().unwrap_or(default),
                source: if set.is_some() { ConfigSource::DynamicGroup } else { ConfigSource::Default },
                read_only: false,
                sensitive: false,
                config_type: if name == AUTO_OFFSET_RESET || name == ISOLATION_LEVEL {
                    ConfigType::String
                } else {
                    ConfigType::Int
                },
                documentation: documentation(name),
                synonyms,
            }
        })
        .collect()
}

/// A GROUP config's value when the group sets none: the broker's.
fn default_value(broker: &GroupConfig, name: &str) -> String {
    match name {
        SESSION_TIMEOUT_MS => broker.share_session_timeout_ms.to_string(),
        HEARTBEAT_INTERVAL_MS => broker.share_heartbeat_interval_ms.to_string(),
        RECORD_LOCK_DURATION_MS => broker.share_record_lock_duration_ms.to_string(),
        DELIVERY_COUNT_LIMIT => broker.share_delivery_count_limit.to_string(),
        AUTO_OFFSET_RESET => "latest".to_owned(),
        ISOLATION_LEVEL => "read_uncommitted".to_owned(),
        other => unreachable!("{other} is not a GROUP config"),
    }
}

fn documentation(name: &str) -> &'static str {
    match name {
        SESSION_TIMEOUT_MS => "The timeout to detect client failures when using the share group protocol.",
        HEARTBEAT_INTERVAL_MS => "The heartbeat interval given to the members of a share group.",
        RECORD_LOCK_DURATION_MS => "The record acquisition lock duration in milliseconds for share groups.",
        DELIVERY_COUNT_LIMIT => "The maximum number of delivery attempts for a record delivered to a share group.",
        AUTO_OFFSET_RESET => {
            "The strategy to initialize the share-partition start offset: earliest, latest, or \
             by_duration:<ISO8601 duration> from the current timestamp."
        }
        ISOLATION_LEVEL => {
            "Controls how to read records written transactionally: read_committed delivers only committed \
             transactional records, read_uncommitted all of them."
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn values_are_checked_against_the_broker_bounds_with_kafkas_messages() {
        // Proves Kafka's GroupConfig.validate rules for the share keys:
        // unknown names, non-numbers, values below the type's minimum,
        // outside the broker's bounds, a session not above the heartbeat,
        // bad enumerations; good values pass.
        let broker = GroupConfig::default();
        let check = |pairs: &[(&str, &str)]| validate(&broker, &configs(pairs));
        assert_eq!(
            check(&[("consumer.session.timeout.ms", "50000")]).unwrap_err(),
            "Unknown group config name: consumer.session.timeout.ms"
        );
        assert!(check(&[(SESSION_TIMEOUT_MS, "x")]).unwrap_err().contains("Not a number of type INT"));
        assert!(check(&[(RECORD_LOCK_DURATION_MS, "999")]).unwrap_err().contains("Value must be at least 1000"));
        assert_eq!(
            check(&[(SESSION_TIMEOUT_MS, "44999")]).unwrap_err(),
            "share.session.timeout.ms must be greater than or equal to group.share.min.session.timeout.ms"
        );
        assert_eq!(
            check(&[(HEARTBEAT_INTERVAL_MS, "15001")]).unwrap_err(),
            "share.heartbeat.interval.ms must be less than or equal to group.share.max.heartbeat.interval.ms"
        );
        assert_eq!(
            check(&[(DELIVERY_COUNT_LIMIT, "11")]).unwrap_err(),
            "share.delivery.count.limit must be less than or equal to group.share.max.delivery.count.limit"
        );
        assert!(check(&[(ISOLATION_LEVEL, "READ_COMMITTED")]).is_err(), "case matters, as in Kafka");
        assert!(check(&[(AUTO_OFFSET_RESET, "none")]).is_err());
        assert!(check(&[(AUTO_OFFSET_RESET, "by_duration:-PT1H")]).is_err());
        let wide = GroupConfig { share_heartbeat_interval_ms_max: 60_000, ..GroupConfig::default() };
        let refused = validate(&wide, &configs(&[(HEARTBEAT_INTERVAL_MS, "50000")])).unwrap_err();
        assert_eq!(refused, "share.session.timeout.ms must be greater than share.heartbeat.interval.ms");
        assert_eq!(
            check(&[
                (SESSION_TIMEOUT_MS, "50000"),
                (HEARTBEAT_INTERVAL_MS, "6000"),
                (RECORD_LOCK_DURATION_MS, "20000"),
                (DELIVERY_COUNT_LIMIT, "3"),
                (AUTO_OFFSET_RESET, "By_Duration:P1DT2H30M1.5S"),
                (ISOLATION_LEVEL, "read_committed"),
            ]),
            Ok(())
        );
    }

    #[test]
    fn effective_settings_take_the_group_over_the_broker_within_bounds() {
        // Proves the getter the share fetch path uses: broker values when
        // nothing is set, the group's values when set, clamped into bounds
        // that narrowed since they were set.
        let broker = GroupConfig::default();
        let defaults = settings(&broker, &BTreeMap::new());
        assert_eq!(defaults.record_lock_duration_ms, 30_000);
        assert_eq!(defaults.delivery_count_limit, 5);
        assert_eq!(defaults.partition_max_record_locks, 2000);
        assert_eq!(defaults.auto_offset_reset, AutoOffsetReset::Latest);
        assert_eq!(defaults.isolation_level, IsolationLevel::ReadUncommitted);
        let set = settings(
            &broker,
            &configs(&[
                (RECORD_LOCK_DURATION_MS, "20000"),
                (DELIVERY_COUNT_LIMIT, "25"),
                (AUTO_OFFSET_RESET, "by_duration:PT1H"),
                (ISOLATION_LEVEL, "read_committed"),
            ]),
        );
        assert_eq!(set.record_lock_duration_ms, 20_000);
        assert_eq!(set.delivery_count_limit, 10, "clamped to group.share.max.delivery.count.limit");
        assert_eq!(set.auto_offset_reset, AutoOffsetReset::ByDuration(Duration::from_secs(3600)));
        assert_eq!(set.isolation_level, IsolationLevel::ReadCommitted);
    }

    #[test]
    fn iso8601_durations_parse_like_java() {
        // Proves the forms Java's Duration.parse accepts that Kafka users
        // write, and that malformed ones are refused.
        let parse = parse_iso8601_duration;
        assert_eq!(parse("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("P2D"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse("pt1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("PT0.5S"), Some(Duration::from_millis(500)));
        for bad in ["", "P", "PT", "1H", "PT1X", "P1H", "PT-1H", "PT.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn describe_names_the_source_of_every_value() {
        // Proves DescribeConfigs' view: a set value is DYNAMIC_GROUP_CONFIG
        // with the broker value as its synonym; the rest DEFAULT_CONFIG.
        let entries = describe(&GroupConfig::default(), &configs(&[(DELIVERY_COUNT_LIMIT, "3")]));
        assert_eq!(entries.len(), GROUP_CONFIG_KEYS.len());
        let limit = entries.iter().find(|e| e.name == DELIVERY_COUNT_LIMIT).unwrap();
        assert_eq!((limit.value.as_str(), limit.source), ("3", ConfigSource::DynamicGroup));
        assert_eq!(limit.synonyms.len(), 2);
        let reset = entries.iter().find(|e| e.name == AUTO_OFFSET_RESET).unwrap();
        assert_eq!(
            (reset.value.as_str(), reset.source, reset.config_type),
            ("latest", ConfigSource::Default, ConfigType::String)
        );
    }
}
