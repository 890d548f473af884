//! Placement of new partitions on this broker's shards: an even spread, so
//! that every core owns about as many partitions as every other.

use super::image::{MetadataImage, PartitionMeta};

/// Places partitions `first_partition..first_partition + count` on
/// `shards` shards: each goes to the shard holding the fewest partitions of
/// all topics (those placed before it in this call included), ties going to
/// the lowest shard index. Leader epochs start at 0. Partitions the image
/// places on shards at or above `shards` (from a run with more cores) are
/// not counted.
pub fn place_partitions(image: &MetadataImage, shards: u32, first_partition: i32, count: i32) -> Vec<PartitionMeta> {
    assert!(shards > 0, "placement needs at least one shard");
    let mut partitions_by_shard = vec![0u64; shards as usize];
    for topic in image.topics.values() {
        for partition in &topic.partitions {
            if let Some(load) = partitions_by_shard.get_mut(partition.shard as usize) {
                *load += 1;
            }
        }
    }
    (0..count.max(0))
        .map(|i| {
            let (shard, load) = partitions_by_shard
                .iter_mut()
                .enumerate()
                .min_by_key(|(index, load)| (**load, *index))
                .expect("at least one shard");
            *load += 1;
            PartitionMeta { partition: first_partition + i, shard: shard as u32, leader_epoch: 0 }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::metadata::MetadataRecord;

    fn shards_of(partitions: &[PartitionMeta]) -> Vec<u32> {
        partitions.iter().map(|p| p.shard).collect()
    }

    // Proves that partitions of a first topic go round-robin over the shards,
    // numbered from `first_partition`, with leader epoch 0.
    #[test]
    fn spreads_evenly_on_an_empty_broker() {
        let image = MetadataImage::default();
        let placed = place_partitions(&image, 4, 0, 6);
        assert_eq!(shards_of(&placed), vec![0, 1, 2, 3, 0, 1]);
        assert_eq!(placed.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        assert!(placed.iter().all(|p| p.leader_epoch == 0));
        assert_eq!(place_partitions(&image, 4, 3, 2).iter().map(|p| p.partition).collect::<Vec<_>>(), vec![3, 4]);
        assert!(place_partitions(&image, 4, 0, 0).is_empty());
    }

    // Proves that existing topics count: new partitions fill the least
    // loaded shards first, and partitions on shards that no longer exist are
    // ignored.
    #[test]
    fn considers_existing_topics() {
        let mut image = MetadataImage::default();
        let first = place_partitions(&image, 4, 0, 6); // shards 0,1,2,3,0,1
        let mut existing = first.clone();
        existing.push(PartitionMeta { partition: 6, shard: 9, leader_epoch: 0 });
        image.apply(&MetadataRecord::TopicCreated {
            name: "first".into(),
            topic_id: Uuid::new_v4(),
            partitions: existing,
            configs: BTreeMap::new(),
        });
        let second = place_partitions(&image, 4, 0, 6);
        assert_eq!(shards_of(&second), vec![2, 3, 0, 1, 2, 3]);

        let mut total = [0; 4];
        for p in first.iter().chain(&second) {
            total[p.shard as usize] += 1;
        }
        assert_eq!(total, [3, 3, 3, 3]);
    }
}
