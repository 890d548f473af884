//! Share sessions (KIP-932, Kafka's `ShareSessionCache`/`ShareSession`):
//! the partitions one share member fetches, keyed by (group id, member
//! id), and the epoch its next ShareFetch or ShareAcknowledge must carry.
//!
//! The cache of a group lives on the group's coordinator shard
//! (`group::coordinator_shard`), which every ShareFetch and
//! ShareAcknowledge consults first to validate the member; the session
//! update happens in that same synchronous step, so two requests of one
//! member are ordered by their arrival on that shard. Pure: no I/O, no
//! clock.
//!
//! Rules (Kafka's `SharePartitionManager.newContext` and
//! `acknowledgeSessionUpdate`):
//! - ShareFetch epoch 0 opens a session with the request's partitions,
//!   replacing one the member had (its acquired records stay acquired
//!   until their locks lapse, as in Kafka); SHARE_SESSION_LIMIT_REACHED
//!   when the cache is full. Acknowledgements in an epoch-0 request are
//!   INVALID_REQUEST.
//! - Epoch -1 closes the session (SHARE_SESSION_NOT_FOUND when there is
//!   none); the caller applies the request's acknowledgements and then
//!   releases the member's acquired records.
//! - Any other epoch must equal the session's next epoch
//!   (INVALID_SHARE_SESSION_EPOCH; SHARE_SESSION_NOT_FOUND without a
//!   session); ShareFetch then adds its partitions and drops the forgotten
//!   ones. The next epoch is the current + 1, wrapping from i32::MAX to 1.
//! - ShareAcknowledge never opens a session: epoch 0 is
//!   INVALID_SHARE_SESSION_EPOCH.
//!
//! Invariant: at most `sessions_max` sessions; a session's partitions are
//! bounded by what the request may name (the frame size).

use std::collections::{BTreeSet, HashMap};

use protocol::ErrorCode;

use crate::shard::PartitionKey;

/// The epoch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch that closes a session.
pub const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch` (Kafka's `ShareRequestMetadata.nextEpoch`).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareSession {
    /// The epoch the member's next request must carry.
    pub next_epoch: i32,
    pub partitions: BTreeSet<PartitionKey>,
}

/// What a ShareFetch may do after its session step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchContext {
    /// The session's partitions: what this request acquires from (none
    /// when the session closes).
    pub partitions: Vec<PartitionKey>,
    /// Epoch 0: every partition of the session is answered; otherwise
    /// only those named, or with records or errors.
    pub full: bool,
    /// Epoch -1: acknowledge, then release the member's records.
    pub closing: bool,
}

/// The share sessions of the groups one shard coordinates.
#[derive(Debug)]
pub struct ShareSessionCache {
    sessions: HashMap<(String, String), ShareSession>,
    sessions_max: usize,
}

impl ShareSessionCache {
    pub fn new(sessions_max: usize) -> ShareSessionCache {
        assert!(sessions_max > 0, "sessions_max {sessions_max}");
        ShareSessionCache { sessions: HashMap::new(), sessions_max }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, group_id: &str, member_id: &str) -> Option<&ShareSession> {
        self.sessions.get(&(group_id.to_owned(), member_id.to_owned()))
    }

    /// A ShareFetch's session step; `named` are the request's partitions,
    /// `forgotten` its ForgottenTopicsData, `acknowledges` whether any
    /// partition carries acknowledgement batches.
    pub fn fetch(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        named: &[PartitionKey],
        forgotten: &[PartitionKey],
        acknowledges: bool,
    ) -> Result<FetchContext, ErrorCode> {
        let key = (group_id.to_owned(), member_id.to_owned());
        match epoch {
            INITIAL_EPOCH => {
                if acknowledges {
                    return Err(ErrorCode::InvalidRequest);
                }
                let replaced = self.sessions.remove(&key).is_some();
                if !replaced && self.sessions.len() >= self.sessions_max {
                    return Err(ErrorCode::ShareSessionLimitReached);
                }
                let partitions: BTreeSet<PartitionKey> = named.iter().copied().collect();
                let context =
                    FetchContext { partitions: partitions.iter().copied().collect(), full: true, closing: false };
                self.sessions.insert(key, ShareSession { next_epoch: next_epoch(INITIAL_EPOCH), partitions });
                Ok(context)
            }
            FINAL_EPOCH => {
                self.sessions.remove(&key).ok_or(ErrorCode::ShareSessionNotFound)?;
                Ok(FetchContext { partitions: Vec::new(), full: false, closing: true })
            }
            _ => {
                let session = self.sessions.get_mut(&key).ok_or(ErrorCode::ShareSessionNotFound)?;
                if session.next_epoch != epoch {
                    return Err(ErrorCode::InvalidShareSessionEpoch);
                }
                session.partitions.extend(named.iter().copied());
                for partition in forgotten {
                    session.partitions.remove(partition);
                }
                session.next_epoch = next_epoch(epoch);
                Ok(FetchContext {
                    partitions: session.partitions.iter().copied().collect(),
                    full: false,
                    closing: false,
                })
            }
        }
    }

    /// A ShareAcknowledge's session step; `Ok(true)` when it closes the
    /// session (epoch -1).
    pub fn acknowledge(&mut self, group_id: &str, member_id: &str, epoch: i32) -> Result<bool, ErrorCode> {
        let key = (group_id.to_owned(), member_id.to_owned());
        match epoch {
            INITIAL_EPOCH => Err(ErrorCode::InvalidShareSessionEpoch),
            FINAL_EPOCH => {
                self.sessions.remove(&key).ok_or(ErrorCode::ShareSessionNotFound)?;
                Ok(true)
            }
            _ => {
                let session = self.sessions.get_mut(&key).ok_or(ErrorCode::ShareSessionNotFound)?;
                if session.next_epoch != epoch {
                    return Err(ErrorCode::InvalidShareSessionEpoch);
                }
                session.next_epoch = next_epoch(epoch);
                Ok(false)
            }
        }
    }

    /// Drops the member's session (it left or was evicted); whether it had one.
    pub fn remove(&mut self, group_id: &str, member_id: &str) -> bool {
        self.sessions.remove(&(group_id.to_owned(), member_id.to_owned())).is_some()
    }

    /// Drops every session of a group (it was deleted).
    pub fn remove_group(&mut self, group_id: &str) {
        self.sessions.retain(|(group, _), _| group != group_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn p(index: i32) -> PartitionKey {
        (Uuid::from_u128(1), index)
    }

    /// Epoch 0 opens, each later epoch must be the next one, -1 closes;
    /// partitions are added and forgotten incrementally.
    #[test]
    fn epochs_and_incremental_partitions() {
        let mut cache = ShareSessionCache::new(10);
        let opened = cache.fetch("g", "m", 0, &[p(0)], &[], false).unwrap();
        assert_eq!(opened, FetchContext { partitions: vec![p(0)], full: true, closing: false });
        assert_eq!(cache.fetch("g", "m", 2, &[], &[], false), Err(ErrorCode::InvalidShareSessionEpoch));
        let added = cache.fetch("g", "m", 1, &[p(1)], &[], true).unwrap();
        assert_eq!(added.partitions, vec![p(0), p(1)]);
        let forgot = cache.fetch("g", "m", 2, &[], &[p(0)], false).unwrap();
        assert_eq!(forgot.partitions, vec![p(1)]);
        assert_eq!(cache.acknowledge("g", "m", 3), Ok(false));
        assert_eq!(cache.fetch("g", "m", 3, &[], &[], false), Err(ErrorCode::InvalidShareSessionEpoch));
        assert!(cache.fetch("g", "m", -1, &[], &[], true).unwrap().closing);
        assert_eq!(cache.fetch("g", "m", 5, &[], &[], false), Err(ErrorCode::ShareSessionNotFound));
        assert_eq!(cache.fetch("g", "m", -1, &[], &[], false), Err(ErrorCode::ShareSessionNotFound));
        assert!(cache.is_empty());
    }

    /// Acknowledgements cannot open a session; ShareAcknowledge never
    /// opens one; the cache is bounded, replacing a session is not growth.
    #[test]
    fn refusals_and_limit() {
        let mut cache = ShareSessionCache::new(1);
        assert_eq!(cache.fetch("g", "m", 0, &[p(0)], &[], true), Err(ErrorCode::InvalidRequest));
        assert_eq!(cache.acknowledge("g", "m", 0), Err(ErrorCode::InvalidShareSessionEpoch));
        assert_eq!(cache.acknowledge("g", "m", 1), Err(ErrorCode::ShareSessionNotFound));
        cache.fetch("g", "m", 0, &[p(0)], &[], false).unwrap();
        assert_eq!(cache.fetch("g", "other", 0, &[p(0)], &[], false), Err(ErrorCode::ShareSessionLimitReached));
        cache.fetch("g", "m", 1, &[], &[], false).unwrap();
        let reopened = cache.fetch("g", "m", 0, &[p(1)], &[], false).unwrap();
        assert_eq!(reopened.partitions, vec![p(1)]);
        assert_eq!(cache.get("g", "m").unwrap().next_epoch, 1);
        assert!(cache.remove("g", "m"));
        assert!(!cache.remove("g", "m"));
    }

    /// Epochs wrap from i32::MAX to 1, never to 0 or -1.
    #[test]
    fn epoch_wraps_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }
}
