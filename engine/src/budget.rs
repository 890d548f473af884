//! Per-shard resources shared by every log on the shard: the write-buffer
//! budget (appends wait when it is spent), the tail-cache budget (evictable,
//! so it never blocks), and the slots that bound writes in flight.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::config::ShardLimits;
use crate::error::Result;
use crate::notify::Notify;

/// A counted budget of bytes that tasks wait on. Waiting is first come,
/// first served only loosely (all waiters re-check on each release), which
/// is enough here: appends of one shard are short and similar. Charges are
/// the real sizes of the DMA buffers allocated, so `in_use` is the memory
/// held; it may pass the capacity by at most one write chunk (the buffer
/// an append allocates after finding room). Each log's carried partial
/// block (4 KiB) is outside the budget.
pub(crate) struct Budget {
    capacity: usize,
    in_use: Cell<usize>,
    released: Notify,
}

impl Budget {
    fn new(capacity: usize) -> Self {
        Budget { capacity, in_use: Cell::new(0), released: Notify::default() }
    }

    /// Whether `bytes` more would fit now. A request larger than the whole
    /// budget fits only an empty budget.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.in_use.get() + bytes.min(self.capacity) <= self.capacity
    }

    /// Waits until [`Budget::has_room`] holds for `bytes`. It takes nothing:
    /// the caller charges what it allocates, without awaiting in between.
    pub(crate) async fn wait_for_room(&self, bytes: usize) {
        self.released.wait_for(|| self.has_room(bytes).then_some(())).await
    }

    /// Takes `bytes` without waiting, even past the capacity. Appends call
    /// it after [`Budget::wait_for_room`], without awaiting in between.
    pub(crate) fn acquire_now(&self, bytes: usize) -> usize {
        self.in_use.set(self.in_use.get() + bytes);
        bytes
    }

    pub(crate) fn release(&self, bytes: usize) {
        let in_use = self.in_use.get();
        assert!(bytes <= in_use, "released {bytes} bytes but only {in_use} in use");
        self.in_use.set(in_use - bytes);
        self.released.notify_all();
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.get()
    }
}

/// A log's tail cache, as the shard sees it: something that can give back
/// memory by dropping batches that are already on disk, oldest first.
pub(crate) trait TailCache {
    /// Evicts written batches from the front until at least `wanted` bytes
    /// are freed or none is left; returns the bytes freed.
    fn evict_written(&self, wanted: usize) -> usize;
}

/// Resources of one shard. Create one per executor and hand a clone of the
/// `Rc` to every log opened on that shard.
pub struct ShardResources {
    pub(crate) limits: ShardLimits,
    pub(crate) write_buffer: Budget,
    /// Bytes of batches held by all tail caches, written or not.
    pub(crate) tail_cache_bytes: Cell<usize>,
    pub(crate) write_slots: glommio::sync::Semaphore,
    /// Every log's tail cache, visited in turn when the shard is over its
    /// tail-cache budget, so an idle log's cache is evicted as readily as
    /// a busy one's.
    tail_caches: RefCell<Vec<Weak<dyn TailCache>>>,
    next_to_evict: Cell<usize>,
}

impl ShardResources {
    pub fn new(limits: ShardLimits) -> Result<Rc<Self>> {
        limits.validate()?;
        Ok(Rc::new(ShardResources {
            write_buffer: Budget::new(limits.write_buffer_bytes_max),
            tail_cache_bytes: Cell::new(0),
            write_slots: glommio::sync::Semaphore::new(limits.writes_in_flight_max as u64),
            tail_caches: RefCell::new(Vec::new()),
            next_to_evict: Cell::new(0),
            limits,
        }))
    }

    pub fn limits(&self) -> &ShardLimits {
        &self.limits
    }

    pub(crate) fn register_tail_cache(&self, cache: Weak<dyn TailCache>) {
        self.tail_caches.borrow_mut().push(cache);
    }

    /// Evicts written batches, log by log in turn, until the shard's tail
    /// caches fit their budget or nothing written is left to evict. Batches
    /// not yet written cannot go (they are the only copy a reader can use),
    /// so the total can stay above the budget by at most the data waiting
    /// in write buffers. Callers must not hold a log's state borrowed.
    pub(crate) fn shrink_tail_caches(&self) {
        let max = self.limits.tail_cache_bytes_max;
        if self.tail_cache_bytes.get() <= max {
            return;
        }
        let mut caches = self.tail_caches.borrow_mut();
        let mut visited = 0;
        while self.tail_cache_bytes.get() > max && visited < caches.len() {
            let at = self.next_to_evict.get() % caches.len();
            match caches[at].upgrade() {
                Some(cache) => {
                    cache.evict_written(self.tail_cache_bytes.get() - max);
                    self.next_to_evict.set(at + 1);
                    visited += 1;
                }
                None => {
                    caches.swap_remove(at);
                }
            }
        }
    }

    /// Bytes of DMA write buffers in use right now.
    pub fn write_buffer_bytes(&self) -> usize {
        self.write_buffer.in_use()
    }

    /// Bytes of batches held in tail caches right now.
    pub fn tail_cache_bytes(&self) -> usize {
        self.tail_cache_bytes.get()
    }
}
