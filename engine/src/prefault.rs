//! Touching a shard's budgeted memory once, at startup, before clients
//! come: the first time a process writes to a page the kernel maps and
//! zeroes it, and a broker that grows into its tail cache under load pays
//! for that on the request path. Measured on the 2-core VM of
//! docs/benchmarks.md: at 50 MiB/s a fresh broker spent over half of its
//! CPU in the kernel's page zeroing for the first 5 s, until its tail
//! cache (256 MiB) was full, and produce p99 stayed near 10 ms (3.5 ms
//! afterwards). Prefaulting moves that cost to startup.
//!
//! The memory goes through the global allocator, so that it is the
//! allocator's own pages that are warm; the broker also tells its allocator
//! (mimalloc) never to hand free pages back to the kernel. mimalloc purges
//! pages that stayed free past its purge delay when it next runs; an idle
//! broker kept its prefaulted memory for 15 s without the setting too, so
//! the setting is for a broker whose load starts, and whose cache fills,
//! long after startup.

/// Size of each allocation the prefault makes: the order of the request
/// buffers and write chunks the budgets hold later.
pub const PREFAULT_BLOCK_BYTES: usize = 1 << 20;

const PAGE_BYTES: usize = 4096;

/// Allocates `bytes` (rounded up to whole blocks) through the global
/// allocator, writes to every page of it, and frees it all again. Every
/// block is held until the last one is touched, so the allocator ends up
/// owning that much warm memory. Returns the bytes touched.
pub fn prefault(bytes: usize) -> usize {
    let blocks = bytes.div_ceil(PREFAULT_BLOCK_BYTES);
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(blocks);
    for _ in 0..blocks {
        let mut block: Vec<u8> = Vec::with_capacity(PREFAULT_BLOCK_BYTES);
        for page in block.spare_capacity_mut().chunks_mut(PAGE_BYTES) {
            page[0].write(0);
        }
        held.push(std::hint::black_box(block));
    }
    blocks * PREFAULT_BLOCK_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefault_rounds_up_to_whole_blocks() {
        // Proves a budget is touched in whole blocks and a zero budget
        // touches nothing (the broker's test proves the memory stays
        // resident: broker/tests/startup.rs).
        assert_eq!(prefault(0), 0);
        assert_eq!(prefault(1), PREFAULT_BLOCK_BYTES);
        assert_eq!(prefault(3 * PREFAULT_BLOCK_BYTES + 1), 4 * PREFAULT_BLOCK_BYTES);
    }
}
