//! The group coordinators' settings: the `[groups]` table of stele.toml,
//! under Kafka's broker-level names and with Kafka's defaults. This is the
//! one place those spellings live; `crate::config` reads the table through
//! [`GroupConfig::set`].

/// Every key of `[groups]` (docs/configuration.md and stele.toml mention
/// each; a test checks).
pub const GROUP_KEYS: &[&str] = &[
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "offset.metadata.max.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "offsets.topic.segment.bytes",
    "group.consumer.session.timeout.ms",
    "group.consumer.min.session.timeout.ms",
    "group.consumer.max.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.min.heartbeat.interval.ms",
    "group.consumer.max.heartbeat.interval.ms",
    "group.consumer.max.size",
    "group.consumer.assignors",
    "group.share.enable",
    "group.share.session.timeout.ms",
    "group.share.min.session.timeout.ms",
    "group.share.max.session.timeout.ms",
    "group.share.heartbeat.interval.ms",
    "group.share.min.heartbeat.interval.ms",
    "group.share.max.heartbeat.interval.ms",
    "group.share.max.size",
    "group.share.assignors",
    "group.share.record.lock.duration.ms",
    "group.share.min.record.lock.duration.ms",
    "group.share.max.record.lock.duration.ms",
    "group.share.delivery.count.limit",
    "group.share.min.delivery.count.limit",
    "group.share.max.delivery.count.limit",
    "group.share.partition.max.record.locks",
    "group.share.max.share.sessions",
];

/// Server-side assignors of the consumer protocol, in Kafka's names.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Classic members' session timeouts must lie within these bounds
    /// (`group.min.session.timeout.ms`, `group.max.session.timeout.ms`).
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// How long the first join phase of an empty classic group waits for
    /// more members (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay_ms: i32,
    /// Members of one classic group (`group.max.size`).
    pub group_size_max: usize,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_bytes_max: usize,
    /// Offsets of an empty group expire this long after it became empty,
    /// or after their commit for groups that never had members
    /// (`offsets.retention.minutes`, kept here in milliseconds).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// Segment size of each shard's group log, and how much it grows
    /// before it is compacted (`offsets.topic.segment.bytes`).
    pub offsets_segment_bytes: u64,
    /// Consumer-protocol (KIP-848) members: session timeout and heartbeat
    /// interval given to members, and the bounds of their per-group
    /// overrides (`group.consumer.*`).
    pub consumer_session_timeout_ms: i32,
    pub consumer_session_timeout_ms_min: i32,
    pub consumer_session_timeout_ms_max: i32,
    pub consumer_heartbeat_interval_ms: i32,
    pub consumer_heartbeat_interval_ms_min: i32,
    pub consumer_heartbeat_interval_ms_max: i32,
    /// Members of one consumer-protocol group (`group.consumer.max.size`).
    pub consumer_group_size_max: usize,
    /// Server-side assignors offered; the first is the default
    /// (`group.consumer.assignors`).
    pub consumer_assignors: Vec<String>,
    /// Whether the share group APIs are advertised and served
    /// (`group.share.enable`, Kafka 4.0/4.1's early-access switch; true).
    pub share_enable: bool,
    /// Share group (KIP-932) members: session timeout and heartbeat
    /// interval given to members, and the bounds of a group's
    /// `share.session.timeout.ms` / `share.heartbeat.interval.ms`.
    pub share_session_timeout_ms: i32,
    pub share_session_timeout_ms_min: i32,
    pub share_session_timeout_ms_max: i32,
    pub share_heartbeat_interval_ms: i32,
    pub share_heartbeat_interval_ms_min: i32,
    pub share_heartbeat_interval_ms_max: i32,
    /// Members of one share group (`group.share.max.size`).
    pub share_group_size_max: usize,
    /// How long a share consumer holds an acquired record, and the bounds
    /// of a group's `share.record.lock.duration.ms`.
    pub share_record_lock_duration_ms: i32,
    pub share_record_lock_duration_ms_min: i32,
    pub share_record_lock_duration_ms_max: i32,
    /// Deliveries of a record before it is archived, and the bounds of a
    /// group's `share.delivery.count.limit`.
    pub share_delivery_count_limit: i32,
    pub share_delivery_count_limit_min: i32,
    pub share_delivery_count_limit_max: i32,
    /// Records one share partition holds acquired at most.
    pub share_partition_max_record_locks: i32,
    /// Share sessions (ShareFetch) per broker.
    pub share_sessions_max: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: i32::MAX as usize,
            offset_metadata_bytes_max: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_segment_bytes: 100 << 20,
            consumer_session_timeout_ms: 45_000,
            consumer_session_timeout_ms_min: 45_000,
            consumer_session_timeout_ms_max: 60_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_heartbeat_interval_ms_min: 5_000,
            consumer_heartbeat_interval_ms_max: 15_000,
            consumer_group_size_max: i32::MAX as usize,
            consumer_assignors: ASSIGNORS.iter().map(|name| name.to_string()).collect(),
            share_enable: true,
            share_session_timeout_ms: 45_000,
            share_session_timeout_ms_min: 45_000,
            share_session_timeout_ms_max: 60_000,
            share_heartbeat_interval_ms: 5_000,
            share_heartbeat_interval_ms_min: 5_000,
            share_heartbeat_interval_ms_max: 15_000,
            share_group_size_max: 200,
            share_record_lock_duration_ms: 30_000,
            share_record_lock_duration_ms_min: 15_000,
            share_record_lock_duration_ms_max: 60_000,
            share_delivery_count_limit: 5,
            share_delivery_count_limit_min: 2,
            share_delivery_count_limit_max: 10,
            share_partition_max_record_locks: 2000,
            share_sessions_max: 2000,
        }
    }
}

/// A value as the file gave it.
pub enum GroupValue<'a> {
    Integer(i64),
    Text(&'a str),
    Boolean(bool),
}

impl GroupConfig {
    /// Sets `key` to `value`; the error says what was expected.
    pub fn set(&mut self, key: &str, value: GroupValue<'_>) -> Result<(), String> {
        let integer = |low: i64, high: i64| match value {
            GroupValue::Integer(n) if (low..=high).contains(&n) => Ok(n),
            _ => Err(format!("an integer between {low} and {high}")),
        };
        let milliseconds = |low: i64| integer(low, i32::MAX as i64).map(|n| n as i32);
        // Kafka's ConfigDef ranges of the share keys.
        let ranged = |low: i64, high: i64| integer(low, high).map(|n| n as i32);
        match key {
            "group.min.session.timeout.ms" => self.session_timeout_ms_min = milliseconds(1)?,
            "group.max.session.timeout.ms" => self.session_timeout_ms_max = milliseconds(1)?,
            "group.initial.rebalance.delay.ms" => self.initial_rebalance_delay_ms = milliseconds(0)?,
            "group.max.size" => self.group_size_max = integer(1, i32::MAX as i64)? as usize,
            "offset.metadata.max.bytes" => self.offset_metadata_bytes_max = integer(0, i32::MAX as i64)? as usize,
            "offsets.retention.minutes" => self.offsets_retention_ms = integer(1, i32::MAX as i64)? * 60_000,
            "offsets.retention.check.interval.ms" => {
                self.offsets_retention_check_interval_ms = integer(1, i64::MAX)? as u64
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_segment_bytes = integer(engine::config::SEGMENT_BYTES_MIN as i64, i32::MAX as i64)? as u64
            }
            "group.consumer.session.timeout.ms" => self.consumer_session_timeout_ms = milliseconds(1)?,
            "group.consumer.min.session.timeout.ms" => self.consumer_session_timeout_ms_min = milliseconds(1)?,
            "group.consumer.max.session.timeout.ms" => self.consumer_session_timeout_ms_max = milliseconds(1)?,
            "group.consumer.heartbeat.interval.ms" => self.consumer_heartbeat_interval_ms = milliseconds(1)?,
            "group.consumer.min.heartbeat.interval.ms" => self.consumer_heartbeat_interval_ms_min = milliseconds(1)?,
            "group.consumer.max.heartbeat.interval.ms" => self.consumer_heartbeat_interval_ms_max = milliseconds(1)?,
            "group.consumer.max.size" => self.consumer_group_size_max = integer(1, i32::MAX as i64)? as usize,
            "group.consumer.assignors" => {
                let expected = || format!("a comma-separated list of {}", ASSIGNORS.join(", "));
                let GroupValue::Text(text) = value else { return Err(expected()) };
                let names: Vec<String> = text.split(',').map(|name| name.trim().to_string()).collect();
                if names.is_empty() || names.iter().any(|name| !ASSIGNORS.contains(&name.as_str())) {
                    return Err(expected());
                }
                self.consumer_assignors = names;
            }
            "group.share.enable" => match value {
                GroupValue::Boolean(flag) => self.share_enable = flag,
                _ => return Err("true or false".into()),
            },
            "group.share.session.timeout.ms" => self.share_session_timeout_ms = milliseconds(1)?,
            "group.share.min.session.timeout.ms" => self.share_session_timeout_ms_min = milliseconds(1)?,
            "group.share.max.session.timeout.ms" => self.share_session_timeout_ms_max = milliseconds(1)?,
            "group.share.heartbeat.interval.ms" => self.share_heartbeat_interval_ms = milliseconds(1)?,
            "group.share.min.heartbeat.interval.ms" => self.share_heartbeat_interval_ms_min = milliseconds(1)?,
            "group.share.max.heartbeat.interval.ms" => self.share_heartbeat_interval_ms_max = milliseconds(1)?,
            "group.share.max.size" => self.share_group_size_max = integer(1, 1000)? as usize,
            "group.share.assignors" => match value {
                GroupValue::Text(text) if text.trim() == super::share::ASSIGNOR_NAME => {}
                _ => return Err(format!("\"{}\" (the only share group assignor)", super::share::ASSIGNOR_NAME)),
            },
            "group.share.record.lock.duration.ms" => self.share_record_lock_duration_ms = ranged(1000, 3_600_000)?,
            "group.share.min.record.lock.duration.ms" => self.share_record_lock_duration_ms_min = ranged(1000, 30_000)?,
            "group.share.max.record.lock.duration.ms" => {
                self.share_record_lock_duration_ms_max = ranged(30_000, 3_600_000)?
            }
            "group.share.delivery.count.limit" => self.share_delivery_count_limit = ranged(2, 10)?,
            "group.share.min.delivery.count.limit" => self.share_delivery_count_limit_min = ranged(2, 5)?,
            "group.share.max.delivery.count.limit" => self.share_delivery_count_limit_max = ranged(5, 25)?,
            "group.share.partition.max.record.locks" => self.share_partition_max_record_locks = ranged(100, 10_000)?,
            "group.share.max.share.sessions" => self.share_sessions_max = ranged(1, i32::MAX as i64)?,
            _ => return Err(format!("one of the [groups] keys ({})", GROUP_KEYS.join(", "))),
        }
        Ok(())
    }

    /// What consumer-protocol groups need of these settings.
    pub fn consumer_group_config(&self) -> super::consumer::ConsumerGroupConfig {
        let assignors = super::consumer::ConsumerGroupConfig::parse_assignors(&self.consumer_assignors.join(","))
            .expect("assignor names are checked when they are set");
        super::consumer::ConsumerGroupConfig {
            session_timeout_ms: self.consumer_session_timeout_ms,
            heartbeat_interval_ms: self.consumer_heartbeat_interval_ms,
            max_size: self.consumer_group_size_max.min(u32::MAX as usize) as u32,
            assignors,
        }
    }

    /// The checks that need several keys: each minimum within its maximum,
    /// each default within its bounds, heartbeats shorter than sessions.
    pub fn validate(&self) -> Result<(), String> {
        let ordered = [
            ("group.min.session.timeout.ms", self.session_timeout_ms_min, self.session_timeout_ms_max),
            (
                "group.consumer.min.session.timeout.ms",
                self.consumer_session_timeout_ms_min,
                self.consumer_session_timeout_ms,
            ),
            (
                "group.consumer.session.timeout.ms",
                self.consumer_session_timeout_ms,
                self.consumer_session_timeout_ms_max,
            ),
            (
                "group.consumer.min.heartbeat.interval.ms",
                self.consumer_heartbeat_interval_ms_min,
                self.consumer_heartbeat_interval_ms,
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.consumer_heartbeat_interval_ms,
                self.consumer_heartbeat_interval_ms_max,
            ),
        ];
        let share = [
            ("group.share.min.session.timeout.ms", self.share_session_timeout_ms_min, self.share_session_timeout_ms),
            ("group.share.session.timeout.ms", self.share_session_timeout_ms, self.share_session_timeout_ms_max),
            (
                "group.share.min.heartbeat.interval.ms",
                self.share_heartbeat_interval_ms_min,
                self.share_heartbeat_interval_ms,
            ),
            (
                "group.share.heartbeat.interval.ms",
                self.share_heartbeat_interval_ms,
                self.share_heartbeat_interval_ms_max,
            ),
            (
                "group.share.min.record.lock.duration.ms",
                self.share_record_lock_duration_ms_min,
                self.share_record_lock_duration_ms,
            ),
            (
                "group.share.record.lock.duration.ms",
                self.share_record_lock_duration_ms,
                self.share_record_lock_duration_ms_max,
            ),
            (
                "group.share.min.delivery.count.limit",
                self.share_delivery_count_limit_min,
                self.share_delivery_count_limit,
            ),
            ("group.share.delivery.count.limit", self.share_delivery_count_limit, self.share_delivery_count_limit_max),
            ("group.share.max.size", self.share_group_size_max as i32, self.share_sessions_max),
        ];
        for (key, low, high) in ordered.into_iter().chain(share) {
            if low > high {
                return Err(format!("{key} ({low}) is above its upper bound ({high})"));
            }
        }
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms {
            return Err(format!(
                "group.consumer.heartbeat.interval.ms ({}) must be below group.consumer.session.timeout.ms ({})",
                self.consumer_heartbeat_interval_ms, self.consumer_session_timeout_ms
            ));
        }
        if self.share_heartbeat_interval_ms >= self.share_session_timeout_ms {
            return Err(format!(
                "group.share.heartbeat.interval.ms ({}) must be below group.share.session.timeout.ms ({})",
                self.share_heartbeat_interval_ms, self.share_session_timeout_ms
            ));
        }
        Ok(())
    }

    /// What one share group's heartbeats need: its session timeout and
    /// heartbeat interval (its GROUP configs over these settings) and the
    /// size limit.
    pub fn share_limits(&self, configs: &std::collections::BTreeMap<String, String>) -> super::share::ShareLimits {
        let settings = super::share_config::settings(self, configs);
        super::share::ShareLimits {
            session_timeout_ms: settings.session_timeout_ms,
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            max_size: self.share_group_size_max.min(u32::MAX as usize) as u32,
        }
    }
}
