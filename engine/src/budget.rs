//! Per-shard resources shared by every log on the shard: the write-buffer
//! budget (appends wait when it is spent), the tail-cache budget (evictable,
//! so it never blocks), the slots that bound writes in flight, and the pool
//! of full-size write buffers that appends refill instead of allocating.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use glommio::io::DmaBuffer;

use crate::config::ShardLimits;
use crate::error::Result;
use crate::notify::Notify;

/// Write chunks' worth of bytes that appends may copy in one scheduler
/// pass before [`ShardResources::pace_copy`] makes them wait for the reactor.
/// Measured on one partition (docs/benchmarks.md): 1 chunk cost CPU (up to
/// 98% of the core for 64 KiB batches), 2 and 4 gave the same throughput, 8
/// let the disk idle a little more; 4 keeps a pass near 1 ms.
const COPY_CHUNKS_PER_PASS_MAX: usize = 4;

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
    /// Written buffers of `write_chunk_bytes_max`, kept for the next chunk
    /// an append opens. Allocating and freeing a 1 MiB buffer per write made
    /// the allocator hand out freshly mapped pages, and the kernel zeroing
    /// them on first touch took a quarter of the shard's CPU at 1.3 GB/s.
    /// Pooled and charged buffers together stay within the write-buffer
    /// bound (budget plus one chunk): a buffer moves from charged to pooled
    /// when its write completes, and a new allocation first drops pooled
    /// buffers that would take the total past the bound.
    chunk_pool: RefCell<Vec<DmaBuffer>>,
    /// Bytes appends copied into write buffers since the last reactor pass
    /// began, as far as [`ShardResources::pace_copy`] can tell.
    pass_copied_bytes: Cell<usize>,
    /// Counts reactor passes seen by tasks that waited in `pace_copy`.
    pass_id: Cell<u64>,
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
            chunk_pool: RefCell::new(Vec::new()),
            pass_copied_bytes: Cell::new(0),
            pass_id: Cell::new(0),
            limits,
        }))
    }

    pub fn limits(&self) -> &ShardLimits {
        &self.limits
    }

    /// Touches as much memory as this shard's budgets let it hold (tail
    /// cache and write buffers), once, so that filling them later does not
    /// fault pages in on the request path (see [`crate::prefault`]).
    /// Returns the bytes touched.
    pub fn prefault_memory(&self) -> usize {
        crate::prefault::prefault(self.limits.tail_cache_bytes_max + self.limits.write_buffer_bytes_max)
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

    /// Waits, if appends already copied [`COPY_CHUNKS_PER_PASS_MAX`] chunks'
    /// worth in this scheduler pass, until glommio's reactor has run. glommio hands the
    /// I/O that tasks queue to the kernel only between scheduler passes, and
    /// a pass lasts until no task is runnable: when a batch of writes
    /// completed and freed the budget, every waiting append used to copy in
    /// the same pass (32 MiB, 8 ms here) while the writes it made possible
    /// sat unsubmitted and the disk idled, so copying and writing took
    /// turns instead of overlapping. Called before staging; the caller adds
    /// what it copied with [`ShardResources::note_copied`].
    pub(crate) async fn pace_copy(&self) {
        while self.pass_copied_bytes.get() >= self.copy_bytes_per_pass_max() {
            let seen = self.pass_id.get();
            // A timer fires only in the reactor, after it submitted what
            // the previous pass queued. (A zero timer would resolve at once.)
            glommio::timer::sleep(std::time::Duration::from_micros(10)).await;
            if self.pass_id.get() == seen {
                // The first waiter back opens the new pass's allowance.
                self.pass_id.set(seen + 1);
                self.pass_copied_bytes.set(0);
            }
        }
    }

    pub(crate) fn copy_allowed(&self) -> bool {
        self.pass_copied_bytes.get() < self.copy_bytes_per_pass_max()
    }

    pub(crate) fn note_copied(&self, bytes: usize) {
        self.pass_copied_bytes.set(self.pass_copied_bytes.get() + bytes);
    }

    fn copy_bytes_per_pass_max(&self) -> usize {
        COPY_CHUNKS_PER_PASS_MAX * self.limits.write_chunk_bytes_max
    }

    /// A write buffer of `capacity` bytes: a pooled one when `capacity` is
    /// the chunk size and the pool has one (its old contents are
    /// overwritten or never written: writes stop at the filled, zero-padded
    /// length), else a new allocation.
    pub(crate) fn take_write_buffer(&self, capacity: usize) -> DmaBuffer {
        let mut pool = self.chunk_pool.borrow_mut();
        if capacity == self.limits.write_chunk_bytes_max {
            if let Some(buf) = pool.pop() {
                debug_assert_eq!(buf.len(), capacity, "pooled buffers are whole chunks");
                return buf;
            }
        }
        // A new allocation (a smaller chunk of a quiet log, or an empty
        // pool): pooled buffers go first where they would take the total
        // past the bound.
        while !pool.is_empty() && self.dma_bytes_held(pool.len()) + capacity > self.dma_bytes_bound() {
            pool.pop();
        }
        glommio::allocate_dma_buffer(capacity)
    }

    /// Write buffers charged to the budget plus `pooled` pooled ones.
    fn dma_bytes_held(&self, pooled: usize) -> usize {
        self.write_buffer.in_use() + pooled * self.limits.write_chunk_bytes_max
    }

    /// What write buffers may hold in all (docs/storage.md): the budget
    /// plus the one chunk an append may allocate past it.
    fn dma_bytes_bound(&self) -> usize {
        self.limits.write_buffer_bytes_max + self.limits.write_chunk_bytes_max
    }

    /// Keeps a written buffer for [`ShardResources::take_write_buffer`] if
    /// it is a whole chunk and keeping it stays within the bound; call it
    /// before releasing the buffer's charge (which it counts as moved to
    /// the pool), so that the append the release wakes finds it.
    pub(crate) fn recycle_write_buffer(&self, buf: DmaBuffer) {
        let chunk = self.limits.write_chunk_bytes_max;
        let mut pool = self.chunk_pool.borrow_mut();
        // Still charged: pooling it moves bytes, it adds none.
        if buf.len() == chunk && self.dma_bytes_held(pool.len()) <= self.dma_bytes_bound() {
            pool.push(buf);
        }
    }

    /// Bytes of written buffers kept for reuse (not charged to the budget).
    pub fn pooled_write_buffer_bytes(&self) -> usize {
        self.chunk_pool.borrow().len() * self.limits.write_chunk_bytes_max
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
