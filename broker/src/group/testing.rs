//! A one-shard broker core for unit tests of the group coordinator: a real
//! [`Shard`] in its own glommio executor, with its group log in a data
//! directory the test keeps, loaded by [`GroupCoordinator::start`] as at a
//! broker start and closed as at a clean shutdown. No network: tests call
//! the coordinator's functions directly. Running it again on the same
//! directory is a restart.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::MeshBuilder;
use uuid::Uuid;

use super::GroupCoordinator;
use crate::config::Config;
use crate::metadata::image::{MetadataImage, PartitionMeta, TopicMeta};
use crate::shard::{self, Job, Shard};

/// Runs `test` on a one-shard broker core whose data directory is
/// `data_dir` and whose metadata holds `topics` (name, partitions), and
/// returns what it returns once the group log is closed again.
pub(crate) fn with_shard<T, F, Fut>(data_dir: &Path, topics: &[(&str, i32)], test: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    engine::memlock::ensure_memlock(4 << 20).unwrap();
    let data_dir: PathBuf = data_dir.to_path_buf();
    let topics: Vec<(String, i32)> = topics.iter().map(|(name, count)| (name.to_string(), *count)).collect();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let (senders, receivers) = MeshBuilder::<Job, _>::full(1, 16).join().await.expect("a mesh of one");
            let mut config = Config::from_toml_str("", Path::new("test.toml")).expect("default config");
            config.data_dir = data_dir;
            config.shards = 1;
            let resources = engine::ShardResources::new(engine::ShardLimits::default()).expect("shard resources");
            let shard = Rc::new(Shard::new(Arc::new(config), resources, Arc::new(image(&topics)), senders, None));
            let jobs = glommio::spawn_local(shard::serve_jobs(shard.clone(), receivers));
            GroupCoordinator::start(&shard).await.expect("the group coordinator starts");
            let result = test(shard.clone()).await;
            shard.groups.close().await;
            shard::close_job_queues(&shard);
            jobs.await;
            result
        })
        .expect("an executor")
        .join()
        .expect("the test's executor ran")
}

fn image(topics: &[(String, i32)]) -> MetadataImage {
    let mut image = MetadataImage::default();
    for (name, count) in topics {
        let topic_id = Uuid::new_v4();
        let partitions = (0..*count).map(|partition| PartitionMeta { partition, shard: 0, leader_epoch: 0 }).collect();
        let meta = TopicMeta { name: name.clone(), topic_id, partitions, configs: Default::default() };
        image.topics.insert(name.clone(), Arc::new(meta));
        image.topic_names_by_id.insert(topic_id, name.clone());
    }
    image
}
