//! The transaction coordinators' settings: the `[transactions]` table of
//! stele.toml, under Kafka's broker-level names and with Kafka's defaults.
//! This is the one place those spellings live; `crate::config` reads the
//! table through [`TxnConfig::set`].

/// Every key of `[transactions]` (docs/configuration.md and stele.toml
/// mention each; a test checks).
pub const TRANSACTION_KEYS: &[&str] = &[
    "transaction.max.timeout.ms",
    "transactional.id.expiration.ms",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
    "transaction.remove.expired.transaction.cleanup.interval.ms",
    "transaction.state.log.segment.bytes",
    "transaction.partition.verification.enable",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// Largest transaction timeout a producer may ask for in
    /// InitProducerId (`transaction.max.timeout.ms`;
    /// INVALID_TRANSACTION_TIMEOUT above it).
    pub transaction_timeout_ms_max: i32,
    /// A transactional id idle this long in Empty, CompleteCommit or
    /// CompleteAbort is removed (`transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: i64,
    /// How often transactions older than their timeout are aborted, and
    /// markers that could not be written are retried
    /// (`transaction.abort.timed.out.transaction.cleanup.interval.ms`).
    pub abort_timed_out_interval_ms: u64,
    /// How often expired transactional ids are looked for
    /// (`transaction.remove.expired.transaction.cleanup.interval.ms`).
    pub remove_expired_interval_ms: u64,
    /// Segment size of each shard's transaction log, and how much it grows
    /// before it is compacted (`transaction.state.log.segment.bytes`).
    pub log_segment_bytes: u64,
    /// Whether a partition asks the coordinator that a transactional batch's
    /// partition is in the producer's transaction before it starts one
    /// there (KIP-890 part 1, `transaction.partition.verification.enable`).
    /// Off, a hanging transaction is possible, as in Kafka.
    pub partition_verification: bool,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            transaction_timeout_ms_max: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            abort_timed_out_interval_ms: 10_000,
            remove_expired_interval_ms: 3_600_000,
            log_segment_bytes: 100 << 20,
            partition_verification: true,
        }
    }
}

impl TxnConfig {
    /// Sets `key` to `value` (sizes already converted to bytes, booleans to
    /// 0 or 1); the error says what was expected.
    pub fn set(&mut self, key: &str, value: i64) -> Result<(), String> {
        let integer = |low: i64, high: i64| {
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(format!("an integer between {low} and {high}"))
            }
        };
        match key {
            "transaction.max.timeout.ms" => self.transaction_timeout_ms_max = integer(1, i32::MAX as i64)? as i32,
            "transactional.id.expiration.ms" => self.transactional_id_expiration_ms = integer(1, i32::MAX as i64)?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.abort_timed_out_interval_ms = integer(1, i32::MAX as i64)? as u64
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                self.remove_expired_interval_ms = integer(1, i32::MAX as i64)? as u64
            }
            "transaction.state.log.segment.bytes" => {
                self.log_segment_bytes = integer(engine::config::SEGMENT_BYTES_MIN as i64, i32::MAX as i64)? as u64
            }
            "transaction.partition.verification.enable" => {
                self.partition_verification = integer(0, 1).map_err(|_| "true or false".to_string())? == 1
            }
            _ => return Err(format!("one of the [transactions] keys ({})", TRANSACTION_KEYS.join(", "))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_settable_and_bounded() {
        // Proves each listed key reaches its field, values out of range are
        // refused with the expected range, and unknown keys are refused.
        let mut config = TxnConfig::default();
        let (boolean, integers): (Vec<&str>, Vec<&str>) =
            TRANSACTION_KEYS.iter().partition(|key| key.ends_with(".enable"));
        assert_eq!(boolean, ["transaction.partition.verification.enable"]);
        config.set(boolean[0], 0).unwrap();
        assert_eq!(config.set(boolean[0], 2).unwrap_err(), "true or false");
        for key in integers {
            config.set(key, 1 << 20).unwrap();
            assert!(config.set(key, 0).unwrap_err().contains("an integer between"), "{key}");
            assert!(config.set(key, i64::MAX).is_err(), "{key}");
        }
        assert_eq!(
            config,
            TxnConfig {
                transaction_timeout_ms_max: 1 << 20,
                transactional_id_expiration_ms: 1 << 20,
                abort_timed_out_interval_ms: 1 << 20,
                remove_expired_interval_ms: 1 << 20,
                log_segment_bytes: 1 << 20,
                partition_verification: false,
            }
        );
        assert!(config.set("transaction.timeout.ms", 1).unwrap_err().contains("transaction.max.timeout.ms"));
    }
}
