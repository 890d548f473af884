//! One shard: a glommio executor pinned to a core, owning the partitions
//! placed on it and a copy of the current cluster metadata snapshot.
//!
//! Shards share nothing. Work for another shard travels as a [`Job`] over
//! glommio's channel mesh (cross-executor, lock-free queues) and its result
//! comes back over a oneshot channel: Redpanda's `invoke_on`. A job runs on
//! the target shard as a task of its own, so a slow job (a fetch long-poll)
//! never holds up the jobs behind it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use glommio::channels::channel_mesh::{Receivers, Senders};
use uuid::Uuid;

use crate::config::Config;
use crate::controller::Controller;
use crate::event::Event;
use crate::group::GroupCoordinator;
use crate::handlers::share_session::ShareSessionCache;
use crate::metadata::MetadataImage;
use crate::partition::Partition;
use crate::share::SharePartitions;
use crate::txn::TxnCoordinator;

/// Work sent to another shard: a closure run there with that shard.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> LocalBoxFuture<'static, ()> + Send>;

/// The shard that holds the controller role (the one metadata writer).
pub const CONTROLLER_SHARD: usize = 0;

/// Capacity of each shard-to-shard queue; a full queue makes the sender
/// wait (backpressure), it never grows.
pub const JOB_QUEUE_CAPACITY: usize = 1024;

/// A partition's key within a shard: topic id and partition index.
pub type PartitionKey = (Uuid, i32);

/// The other shard stopped (the broker is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("shard {shard} is not running")]
pub struct ShardGone {
    pub shard: usize,
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<Config>,
    pub resources: Rc<engine::ShardResources>,
    metadata: RefCell<Arc<MetadataImage>>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition>>>,
    senders: Senders<Job>,
    /// The controller role (metadata writer); only on shard 0.
    pub controller: Option<Controller>,
    /// Set once shutdown starts: listeners stop accepting, connections stop
    /// reading new requests.
    pub stopping: Event,
    /// Open connections on this shard, bounded by `connections_per_shard_max`.
    pub connections: Cell<usize>,
    /// The consumer groups coordinated by this shard (`group::coordinator_shard`).
    pub groups: GroupCoordinator,
    /// The transactional ids coordinated by this shard (`txn::coordinator_shard`).
    pub txn: TxnCoordinator,
    /// The share-partitions of the partitions this shard owns (KIP-932).
    pub share: SharePartitions,
    /// The share sessions (ShareFetch/ShareAcknowledge) of the share groups
    /// this shard coordinates, bounded by its part of
    /// `group.share.max.share.sessions`.
    pub share_sessions: RefCell<ShareSessionCache>,
}

impl Shard {
    pub fn new(
        config: Arc<Config>,
        resources: Rc<engine::ShardResources>,
        metadata: Arc<MetadataImage>,
        senders: Senders<Job>,
        controller: Option<Controller>,
    ) -> Shard {
        let groups = GroupCoordinator::new(config.groups.clone());
        let txn = TxnCoordinator::new(config.transactions.clone());
        let shards = senders.nr_consumers().max(1);
        let share_sessions_max = (config.groups.share_sessions_max.max(1) as usize).div_ceil(shards);
        Shard {
            id: senders.peer_id(),
            count: senders.nr_consumers(),
            config,
            resources,
            metadata: RefCell::new(metadata),
            partitions: RefCell::new(HashMap::new()),
            senders,
            controller,
            stopping: Event::default(),
            connections: Cell::new(0),
            groups,
            txn,
            share: SharePartitions::default(),
            share_sessions: RefCell::new(ShareSessionCache::new(share_sessions_max)),
        }
    }

    /// The controller; only on [`CONTROLLER_SHARD`], where work for it is
    /// sent with `invoke_on(CONTROLLER_SHARD, ..)`.
    pub fn controller(&self) -> &Controller {
        self.controller.as_ref().expect("the controller lives on CONTROLLER_SHARD")
    }

    /// The current metadata snapshot. Cheap: an `Arc` clone.
    pub fn metadata(&self) -> Arc<MetadataImage> {
        self.metadata.borrow().clone()
    }

    pub fn set_metadata(&self, image: Arc<MetadataImage>) {
        *self.metadata.borrow_mut() = image;
    }

    /// The shard that owns a partition, from the placement in the metadata;
    /// a placement recorded with more shards than run now wraps around.
    pub fn owner_of(&self, placed_shard: u32) -> usize {
        placed_shard as usize % self.count
    }

    pub fn partition(&self, key: &PartitionKey) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(key).cloned()
    }

    pub fn insert_partition(&self, partition: Rc<Partition>) {
        let key = (partition.topic_id, partition.index);
        self.partitions.borrow_mut().insert(key, partition);
    }

    pub fn remove_partition(&self, key: &PartitionKey) -> Option<Rc<Partition>> {
        self.partitions.borrow_mut().remove(key)
    }

    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Where a partition's files live: `<data_dir>/<topic>-<partition>`, as in Kafka.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Runs `work` on shard `target` and returns its result. On this shard
    /// it runs inline; otherwise it is queued to the target over the mesh.
    pub async fn invoke_on<R, F, Fut>(self: &Rc<Self>, target: usize, work: F) -> Result<R, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        assert!(target < self.count, "shard {target} out of {}", self.count);
        if target == self.id {
            return Ok(work(self.clone()).await);
        }
        let (reply, result) = futures::channel::oneshot::channel();
        let job: Job = Box::new(move |shard: Rc<Shard>| {
            Box::pin(async move {
                // The requester may have gone (its connection closed): the
                // result is dropped then, which is fine.
                let _ = reply.send(work(shard).await);
            })
        });
        if self.senders.send_to(target, job).await.is_err() {
            return Err(ShardGone { shard: target });
        }
        result.await.map_err(|_| ShardGone { shard: target })
    }

    /// Runs `work` on every shard, concurrently, and gathers the results in
    /// shard order.
    pub async fn invoke_on_all<R, F, Fut>(self: &Rc<Self>, work: F) -> Result<Vec<R>, ShardGone>
    where
        R: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let calls = (0..self.count).map(|target| self.invoke_on(target, work.clone()));
        futures::future::join_all(calls).await.into_iter().collect()
    }
}

/// Serves jobs sent by other shards until they all hang up. Each job runs
/// as its own task.
pub async fn serve_jobs(shard: Rc<Shard>, mut receivers: Receivers<Job>) {
    let streams = receivers.streams();
    let mut serving = Vec::with_capacity(streams.len());
    for (peer, receiver) in streams {
        let shard = shard.clone();
        serving.push(glommio::spawn_local(async move {
            while let Some(job) = receiver.recv().await {
                glommio::spawn_local(job(shard.clone())).detach();
            }
            tracing::debug!(shard = shard.id, peer, "peer closed its job queue");
        }));
    }
    futures::future::join_all(serving).await;
}

/// Closes this shard's outgoing job queues, so that peers' `serve_jobs` end.
pub fn close_job_queues(shard: &Shard) {
    shard.senders.close();
}
