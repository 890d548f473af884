//! A committer: one connection to `--group`'s coordinator sending
//! OffsetCommit requests as simple commits (generation -1, empty member
//! id: what a client that assigns partitions itself sends, and what a
//! group without members accepts), up to `--in-flight` pipelined. A second
//! task reads the answers in order (the connection matches them by
//! correlation id), checks every partition's error code (any non-zero code
//! fails the run, naming it) and records each request's latency, from just
//! before it was written to its answer.
//!
//! Committer i commits `--commit-partitions` partitions starting at the
//! (i × commit-partitions)-th of the topic, wrapping around, so committers
//! share no partition while committers × commit-partitions ≤ partitions.
//! Its n-th request (n = 1, 2, ...) commits offset n for each of them:
//! offsets grow per partition, and since a coordinator applies one
//! connection's commits in order, a partition of one committer ends at the
//! offset of that committer's last commit answered.
//!
//! The request is built once and only its offsets change, so the hot path
//! allocates nothing per commit beyond the decoded answer.

use std::rc::Rc;
use std::sync::Arc;

use anyhow::{bail, Context};
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::sync::{Semaphore, StaticPermit};
use protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetCommitResponse, RequestKind, ResponseKind, TopicName,
};
use protocol::StrBytes;

use crate::cli::Cli;
use crate::clock;
use crate::cluster::{self, error_name, Cluster, PartitionInfo};
use crate::connection::{Connection, ResponseReader};
use crate::stats::{Recorder, Stats};

/// The generation and member id of a simple commit (Kafka's
/// `OffsetCommitRequest.DEFAULT_GENERATION_ID` and `DEFAULT_MEMBER_ID`).
const SIMPLE_COMMIT_GENERATION: i32 = -1;
/// No leader epoch known, and the broker's default retention (v2-v4).
const LEADER_EPOCH_UNKNOWN: i32 = -1;
const RETENTION_DEFAULT_MS: i64 = -1;

/// What the answering task needs to know about a request in flight.
struct InFlight {
    correlation_id: i32,
    sent_ns: u64,
    offset: i64,
    _permit: StaticPermit,
}

/// Runs committer `index` until `--records` requests are answered or the
/// run says stop.
pub async fn run(cli: Arc<Cli>, cluster: Arc<Cluster>, stats: Arc<Stats>, index: usize) -> anyhow::Result<()> {
    let partitions = committer_partitions(index, cli.commit_partitions, &cluster.partitions)?;
    let coordinator = {
        let mut bootstrap = Connection::connect(&cli.bootstrap, &cli.client_id).await?;
        cluster::find_coordinator(&mut bootstrap, cluster::KEY_TYPE_GROUP, &cli.group).await?
    };
    let connection = Connection::connect(&coordinator, &cli.client_id)
        .await
        .with_context(|| format!("connecting to the coordinator of group {}", cli.group))?;
    let version = connection.versions.get(ApiKey::OffsetCommit)?;
    let (mut writer, reader) = connection.split();
    let permits = Rc::new(Semaphore::new(cli.in_flight as u64));
    let (in_flight, answers) = local_channel::new_bounded(cli.in_flight);
    let topic = TopicName(StrBytes::from_string(cluster.topic.clone()));
    let check = Check { group: cli.group.clone(), topic: cluster.topic.clone(), partitions: partitions.clone() };
    let answering = glommio::spawn_local(answer(reader, answers, stats.clone(), version, check));
    let requests_max = cli.records.map(|total| share(total, cli.committers, index));
    let mut body = RequestKind::OffsetCommit(commit_request(&cli.group, &topic, &partitions, 0));
    stats.start();
    let mut sent: u64 = 0;
    let sending = async {
        while !stats.should_stop_producing() && requests_max.is_none_or(|max| sent < max) {
            let permit = permits.acquire_static_permit(1).await.map_err(|err| anyhow::anyhow!("{err}"))?;
            if stats.should_stop_producing() {
                break;
            }
            sent += 1;
            let offset = sent as i64;
            if let RequestKind::OffsetCommit(request) = &mut body {
                set_offsets(request, offset);
            }
            let sent_ns = clock::now_ns();
            let correlation_id = writer.send(ApiKey::OffsetCommit, version, &body).await?;
            let request = InFlight { correlation_id, sent_ns, offset, _permit: permit };
            if in_flight.send(request).await.is_err() {
                break; // the answering task stopped and said why
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(in_flight); // the answering task ends after the last answer
    let last_offset = answering.await;
    if let Some(offset) = last_offset {
        stats.report_last_committed(&partitions.iter().map(|&p| (p, offset)).collect());
    }
    sending
}

/// This committer's share of `total` requests.
fn share(total: u64, committers: usize, index: usize) -> u64 {
    let committers = committers as u64;
    total / committers + u64::from((index as u64) < total % committers)
}

/// The partition indexes committer `index` commits: `count` of them,
/// starting at the `index × count`-th partition, wrapping around.
pub fn committer_partitions(index: usize, count: usize, partitions: &[PartitionInfo]) -> anyhow::Result<Vec<i32>> {
    if count > partitions.len() {
        bail!("--commit-partitions {count} is more than the topic's {} partitions", partitions.len());
    }
    Ok((0..count).map(|j| partitions[(index * count + j) % partitions.len()].index).collect())
}

/// A simple commit of `offset` for each of `partitions` of `topic`.
pub fn commit_request(group: &str, topic: &TopicName, partitions: &[i32], offset: i64) -> OffsetCommitRequest {
    let mut committed = OffsetCommitRequestTopic::default();
    committed.name = topic.clone();
    committed.partitions = partitions
        .iter()
        .map(|&index| {
            let mut partition = OffsetCommitRequestPartition::default();
            partition.partition_index = index;
            partition.committed_offset = offset;
            partition.committed_leader_epoch = LEADER_EPOCH_UNKNOWN;
            // Kafka's clients send "" when the application gives none.
            partition.committed_metadata = Some(StrBytes::from_static_str(""));
            partition
        })
        .collect();
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_owned()));
    request.generation_id_or_member_epoch = SIMPLE_COMMIT_GENERATION;
    request.member_id = StrBytes::from_static_str("");
    request.group_instance_id = None;
    request.retention_time_ms = RETENTION_DEFAULT_MS;
    request.topics = vec![committed];
    request
}

fn set_offsets(request: &mut OffsetCommitRequest, offset: i64) {
    for partition in request.topics.iter_mut().flat_map(|topic| topic.partitions.iter_mut()) {
        partition.committed_offset = offset;
    }
}

/// What every answer must say: each partition sent, once, without error.
#[derive(Debug, Clone)]
pub struct Check {
    pub group: String,
    pub topic: String,
    pub partitions: Vec<i32>,
}

impl Check {
    /// The number of partition offsets committed, or what was wrong: the
    /// first partition with a non-zero error code (named), a partition not
    /// answered, or one answered that was not sent.
    pub fn response(&self, response: &OffsetCommitResponse) -> anyhow::Result<u64> {
        let mut answered = 0;
        for topic in &response.topics {
            let name = topic.name.0.as_str();
            for partition in &topic.partitions {
                let index = partition.partition_index;
                if name != self.topic || !self.partitions.contains(&index) {
                    bail!("OffsetCommit for group {} answered {name}-{index}, which was not sent", self.group);
                }
                if partition.error_code != 0 {
                    bail!(
                        "OffsetCommit for group {} failed for {name}-{index} with {}",
                        self.group,
                        error_name(partition.error_code)
                    );
                }
                answered += 1;
            }
        }
        if answered != self.partitions.len() {
            bail!(
                "OffsetCommit for group {} answered {answered} partitions of the {} sent ({} {:?})",
                self.group,
                self.partitions.len(),
                self.topic,
                self.partitions
            );
        }
        Ok(answered as u64)
    }
}

/// Reads a committer's answers in order until its sender closes the
/// channel; returns the offset of the last commit answered without error.
/// After a failure (which stops the run) it keeps taking requests off the
/// channel without reading, so that their permits free the sender.
async fn answer(
    mut reader: ResponseReader,
    requests: LocalReceiver<InFlight>,
    stats: Arc<Stats>,
    version: i16,
    check: Check,
) -> Option<i64> {
    let mut recorder = Recorder::new();
    let mut last_offset = None;
    let mut failed = false;
    while let Some(request) = requests.recv().await {
        if failed {
            continue;
        }
        match answer_one(&mut reader, &request, &stats, version, &check, &mut recorder).await {
            Ok(()) => last_offset = Some(request.offset),
            Err(err) => {
                stats.fail(format!("committer: {err:#}"));
                failed = true;
            }
        }
    }
    recorder.merge(&stats, clock::now_ns());
    last_offset
}

async fn answer_one(
    reader: &mut ResponseReader,
    request: &InFlight,
    stats: &Stats,
    version: i16,
    check: &Check,
    recorder: &mut Recorder,
) -> anyhow::Result<()> {
    let answer = reader.read(ApiKey::OffsetCommit, version, request.correlation_id).await?;
    let ResponseKind::OffsetCommit(response) = answer else { bail!("OffsetCommit answered with another API") };
    let offsets = check.response(&response)?;
    let now = clock::now_ns();
    let measured = stats.is_measured(now);
    recorder.commit(now.saturating_sub(request.sent_ns), measured);
    stats.committed.add(1, offsets);
    if measured {
        stats.committed_measured.add(1, offsets);
    }
    recorder.maybe_merge(stats, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    use protocol::messages::RequestHeader;

    use super::*;

    fn partitions(count: i32) -> Vec<PartitionInfo> {
        (0..count).map(|index| PartitionInfo { index, leader: 1, leader_epoch: 0 }).collect()
    }

    fn response(topic: &str, codes: &[(i32, i16)]) -> OffsetCommitResponse {
        let mut answer = OffsetCommitResponseTopic::default();
        answer.name = TopicName(StrBytes::from_string(topic.to_owned()));
        answer.partitions = codes
            .iter()
            .map(|&(index, code)| {
                let mut partition = OffsetCommitResponsePartition::default();
                partition.partition_index = index;
                partition.error_code = code;
                partition
            })
            .collect();
        let mut response = OffsetCommitResponse::default();
        response.topics = vec![answer];
        response
    }

    fn check(partitions: &[i32]) -> Check {
        Check { group: "g".into(), topic: "t".into(), partitions: partitions.to_vec() }
    }

    #[test]
    fn committers_take_consecutive_partitions_and_wrap() {
        // Proves committers get disjoint runs of partitions while they fit
        // in the topic, wrap around when they do not, and that a commit
        // wider than the topic is refused.
        let topic = partitions(6);
        assert_eq!(committer_partitions(0, 2, &topic).unwrap(), vec![0, 1]);
        assert_eq!(committer_partitions(2, 2, &topic).unwrap(), vec![4, 5]);
        assert_eq!(committer_partitions(3, 2, &topic).unwrap(), vec![0, 1], "wraps past the last partition");
        assert_eq!(committer_partitions(1, 4, &topic).unwrap(), vec![4, 5, 0, 1]);
        let err = committer_partitions(0, 7, &topic).unwrap_err().to_string();
        assert!(err.contains("--commit-partitions 7") && err.contains("6 partitions"), "{err}");
    }

    #[test]
    fn requests_are_shared_out_to_the_last_one() {
        // Proves --records is split over committers without losing or
        // adding a request.
        let shares: Vec<u64> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!((0..4).map(|i| share(2, 4, i)).sum::<u64>(), 2);
    }

    #[test]
    fn a_commit_request_is_a_simple_commit_of_one_offset_per_partition() {
        // Proves the request carries generation -1 and an empty member id
        // (a simple commit), the group, every partition at the offset
        // given, and that moving the offsets keeps everything else; and
        // that it encodes at every version loadgen may choose.
        let topic = TopicName(StrBytes::from_static_str("t"));
        let mut request = commit_request("g", &topic, &[3, 5], 7);
        assert_eq!(request.group_id.0.as_str(), "g");
        assert_eq!(request.generation_id_or_member_epoch, -1);
        assert_eq!(request.member_id.as_str(), "");
        assert_eq!(request.group_instance_id, None);
        assert_eq!(request.topics.len(), 1);
        assert_eq!(request.topics[0].name.0.as_str(), "t");
        let offsets = |request: &OffsetCommitRequest| -> Vec<(i32, i64)> {
            request.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect()
        };
        assert_eq!(offsets(&request), vec![(3, 7), (5, 7)]);
        assert!(request.topics[0].partitions.iter().all(|p| p.committed_leader_epoch == -1));
        set_offsets(&mut request, 8);
        assert_eq!(offsets(&request), vec![(3, 8), (5, 8)]);
        for version in 2..=8 {
            let mut header = RequestHeader::default();
            header.request_api_key = ApiKey::OffsetCommit as i16;
            header.request_api_version = version;
            let mut out = bytes::BytesMut::new();
            let body = RequestKind::OffsetCommit(request.clone());
            protocol::encode_request(&mut out, &header, &body).unwrap_or_else(|err| panic!("v{version}: {err}"));
        }
    }

    #[test]
    fn answers_without_errors_count_their_partitions() {
        // Proves a full answer with every code 0 counts each partition.
        assert_eq!(check(&[0, 1, 2]).response(&response("t", &[(0, 0), (1, 0), (2, 0)])).unwrap(), 3);
    }

    #[test]
    fn any_error_code_fails_and_is_named() {
        // Proves one non-zero code among zeros fails the answer, naming
        // the partition and the code by Kafka's name and number.
        let err = check(&[0, 1]).response(&response("t", &[(0, 0), (1, 3)])).unwrap_err().to_string();
        assert!(err.contains("t-1"), "{err}");
        assert!(err.contains("UnknownTopicOrPartition (3)"), "{err}");
        let err = check(&[0]).response(&response("t", &[(0, 25)])).unwrap_err().to_string();
        assert!(err.contains("UnknownMemberId (25)"), "{err}");
        let err = check(&[0]).response(&response("t", &[(0, 9999)])).unwrap_err().to_string();
        assert!(err.contains("(9999)"), "an unknown code is still shown by number: {err}");
    }

    #[test]
    fn missing_or_unexpected_partitions_fail() {
        // Proves an answer that leaves out a partition sent, or answers
        // one (or a topic) that was not sent, is refused.
        let err = check(&[0, 1]).response(&response("t", &[(0, 0)])).unwrap_err().to_string();
        assert!(err.contains("answered 1 partitions of the 2 sent"), "{err}");
        let err = check(&[0]).response(&response("t", &[(0, 0), (4, 0)])).unwrap_err().to_string();
        assert!(err.contains("t-4, which was not sent"), "{err}");
        let err = check(&[0]).response(&response("u", &[(0, 0)])).unwrap_err().to_string();
        assert!(err.contains("u-0, which was not sent"), "{err}");
    }
}
