//! CRC32C and the record walk in one pass, for uncompressed batches.
//!
//! Validating a batch costs a CRC32C over attributes..end (the `crc32`
//! instruction: one 8-byte word per cycle on one port, latency 3, so three
//! independent streams keep it busy) plus a walk over every record, a chain
//! of dependent varint reads that uses other ports but waits on loads. Done
//! one after the other the walk adds about a quarter to the CRC's time; here
//! the walk advances one record between groups of CRC words, so that the
//! out-of-order core runs the walk's chain in the CRC's shadow.
//!
//! The CRC range is hashed in blocks of three [`STREAM_BYTES`] streams that
//! are combined with a table-driven shift, as the `crc32c` crate does. The
//! walk trails one block behind the CRC: the records it reads were pulled into
//! cache by the previous block (a walk that ran ahead of the CRC waited on
//! L3 in its chain and was slower than two passes). The tail after the last
//! whole block is hashed before the walk finishes, for the same reason.
//! What is valid is decided by the same [`RecordWalk`] as the two-pass path
//! uses, so the two cannot disagree; only the order in which the bytes are
//! looked at changes, and the caller reports a CRC mismatch before any
//! record error, as the two-pass path does.
//!
//! `unsafe` is here only for SSE4.2: calling the `sse4.2` functions after
//! runtime detection, and the `crc32` intrinsic inside them (safe there since
//! Rust 1.87, but the workspace's MSRV is 1.85). Without SSE4.2 (or off
//! x86_64) [`crc_and_walk`] falls back to the `crc32c` crate, then the walk.
#![allow(unsafe_code)]

use super::records::RecordWalk;

/// Bytes per CRC stream in one block (a block is three streams). The walk
/// trails one block, so smaller blocks let more of a batch's walk overlap
/// the CRC: with 4 KiB (12 KiB blocks) 16 KiB batches validate at 84-85% of
/// raw crc32c, 64 KiB at 92-101%, 1 MiB at 90-98%; with 8 KiB, 79-80%,
/// 86-88%, 98-101%. Two table shifts per block keep the combine cheap.
const STREAM_BYTES: usize = 4096;
/// Bytes of one block: three streams, hashed side by side.
const BLOCK_BYTES: usize = 3 * STREAM_BYTES;
/// Bytes each stream hashes between two chances for the walk to step (one
/// record at most). Measured with 1 KiB records and 8 KiB streams: 64 and
/// 128 made the walk step in a burst at the start of each block (90-93%,
/// 94-98% of raw crc32c), 512 let it fall behind (88-95%), 256 spreads the
/// steps over the block (96-105%). Pacing the walk at 3 * GROUP_BYTES of
/// records per group (any record size) was slower, 85-91%: its branch
/// pattern mispredicts.
const GROUP_BYTES: usize = 256;

const _: () = assert!(STREAM_BYTES % GROUP_BYTES == 0);
const _: () = assert!(GROUP_BYTES % 8 == 0);

/// CRC32C (Castagnoli) polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// Multiplies two polynomials modulo [`POLY`], bit-reflected (bit 31 is x^0).
const fn multiply_mod_poly(a: u32, mut b: u32) -> u32 {
    let mut product = 0u32;
    let mut bit = 0;
    while bit < 32 {
        if a & (1 << (31 - bit)) != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit += 1;
    }
    product
}

/// x^(8 * bytes) modulo [`POLY`]: what appending `bytes` zero bytes
/// multiplies a CRC register by.
const fn x_pow_bytes(bytes: usize) -> u32 {
    let mut result = 1u32 << 31; // x^0
    let mut square = 1u32 << 30; // x^1
    let mut exponent = bytes * 8;
    while exponent != 0 {
        if exponent & 1 != 0 {
            result = multiply_mod_poly(result, square);
        }
        square = multiply_mod_poly(square, square);
        exponent >>= 1;
    }
    result
}

/// `table[k][b]`: the register `b << 8k` after [`STREAM_BYTES`] zero bytes.
/// The shift is linear, so a register shifts as the XOR of its four bytes.
const fn shift_table() -> [[u32; 256]; 4] {
    let factor = x_pow_bytes(STREAM_BYTES);
    let mut table = [[0u32; 256]; 4];
    let mut lane = 0;
    while lane < 4 {
        let mut byte = 0;
        while byte < 256 {
            table[lane][byte] = multiply_mod_poly(factor, (byte as u32) << (8 * lane));
            byte += 1;
        }
        lane += 1;
    }
    table
}

static SHIFT_TABLE: [[u32; 256]; 4] = shift_table();

/// The CRC register after [`STREAM_BYTES`] more zero bytes.
#[inline(always)]
fn shift_stream(register: u32) -> u32 {
    let [b0, b1, b2, b3] = register.to_le_bytes();
    SHIFT_TABLE[0][b0 as usize]
        ^ SHIFT_TABLE[1][b1 as usize]
        ^ SHIFT_TABLE[2][b2 as usize]
        ^ SHIFT_TABLE[3][b3 as usize]
}

/// True when this CPU runs the fused path (x86_64 with SSE4.2). `std` caches
/// the detection, so asking per batch costs a load.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sse4.2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CRC32C of `data`, with this module's three-stream blocks where the CPU
/// has SSE4.2; equals `crc32c::crc32c(data)` (tests prove it).
pub(super) fn crc32c(data: &[u8]) -> u32 {
    let mut walk = RecordWalk::new(0);
    crc_and_walk(data, &[], usize::MAX, &mut walk)
}

/// CRC32C of `crc_range`, walking every record of `records` on the way.
/// `records` must be the part of `crc_range` that starts at
/// `records_offset`, so that the walk can trail the CRC; on return the walk
/// has covered all of `records` (or stopped at its first error).
pub(super) fn crc_and_walk(crc_range: &[u8], records: &[u8], records_offset: usize, walk: &mut RecordWalk) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // Safety: `sse42::crc_and_walk` needs SSE4.2, detected just above.
        return unsafe { sse42::crc_and_walk(crc_range, records, records_offset, walk) };
    }
    let crc = crc32c::crc32c(crc_range);
    walk.step_until(records, records.len());
    crc
}

#[cfg(target_arch = "x86_64")]
mod sse42 {
    use std::arch::x86_64::_mm_crc32_u64;

    use super::{shift_stream, RecordWalk, BLOCK_BYTES, GROUP_BYTES, STREAM_BYTES};

    /// See [`super::crc_and_walk`].
    ///
    /// # Safety
    /// The CPU must have SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn crc_and_walk(
        crc_range: &[u8],
        records: &[u8],
        records_offset: usize,
        walk: &mut RecordWalk,
    ) -> u32 {
        // Hash up to the first 8-byte boundary with the crate, so that no
        // word load of the blocks splits a cache line.
        let head_bytes = crc_range.as_ptr().align_offset(8).min(crc_range.len());
        let (head, aligned) = crc_range.split_at(head_bytes);
        let mut crc = crc32c::crc32c(head);
        let blocks = aligned.chunks_exact(BLOCK_BYTES);
        let tail = blocks.remainder();
        let mut block_start = head_bytes;
        for block in blocks {
            // The walk trails one block: the records that start before this
            // block were read into cache by the previous one.
            let walk_limit = block_start.saturating_sub(records_offset).min(records.len());
            // Safety: SSE4.2 is this function's own precondition.
            crc = !unsafe { crc_block(!crc, block, records, walk_limit, walk) };
            block_start += BLOCK_BYTES;
        }
        // The tail first: it pulls the last records into cache for the walk
        // (walking cold bytes first made 16 KiB batches slower than two passes).
        let crc = crc32c::crc32c_append(crc, tail);
        walk.step_until(records, records.len());
        crc
    }

    /// Hashes one block of [`BLOCK_BYTES`] (CRC register in and out, not
    /// inverted), stepping the walk once per group while it is short of
    /// `walk_limit`.
    ///
    /// # Safety
    /// The CPU must have SSE4.2.
    #[inline]
    #[target_feature(enable = "sse4.2")]
    unsafe fn crc_block(register: u32, block: &[u8], records: &[u8], walk_limit: usize, walk: &mut RecordWalk) -> u32 {
        assert_eq!(block.len(), BLOCK_BYTES, "a block is three whole streams");
        let (a, rest) = block.split_at(STREAM_BYTES);
        let (b, c) = rest.split_at(STREAM_BYTES);
        let mut crc_a = u64::from(register);
        let mut crc_b = 0u64;
        let mut crc_c = 0u64;
        let groups = a.chunks_exact(GROUP_BYTES).zip(b.chunks_exact(GROUP_BYTES)).zip(c.chunks_exact(GROUP_BYTES));
        for ((group_a, group_b), group_c) in groups {
            let words = group_a.chunks_exact(8).zip(group_b.chunks_exact(8)).zip(group_c.chunks_exact(8));
            for ((word_a, word_b), word_c) in words {
                // Safety: SSE4.2 is this function's own precondition. (The
                // block is needed before Rust 1.87, which made the intrinsic
                // safe to call inside an SSE4.2 function.)
                #[allow(unused_unsafe)]
                unsafe {
                    crc_a = _mm_crc32_u64(crc_a, le_u64(word_a));
                    crc_b = _mm_crc32_u64(crc_b, le_u64(word_b));
                    crc_c = _mm_crc32_u64(crc_c, le_u64(word_c));
                }
            }
            if walk.at < walk_limit {
                walk.step(records);
            }
        }
        let register = shift_stream(crc_a as u32) ^ crc_b as u32;
        shift_stream(register) ^ crc_c as u32
    }

    #[inline(always)]
    fn le_u64(word: &[u8]) -> u64 {
        u64::from_le_bytes(word.try_into().expect("chunks_exact(8) gives 8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shift_table_matches_appending_zero_bytes() {
        // Proves the combine's table: shifting a CRC register equals hashing
        // STREAM_BYTES zero bytes after it.
        for register in [0u32, 1, 0x8000_0000, 0xdead_beef, u32::MAX] {
            let zeros = vec![0u8; STREAM_BYTES];
            let by_hashing = !crc32c::crc32c_append(!register, &zeros);
            assert_eq!(shift_stream(register), by_hashing, "register {register:#x}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn crc_equals_the_crate_for_any_length_and_alignment(
            len in prop_oneof![0usize..64, 0usize..4 * BLOCK_BYTES],
            skip in 0usize..16,
            seed in any::<u64>(),
        ) {
            // Proves our three-stream blocks, head, tail and combine hash
            // exactly as the `crc32c` crate, tiny and empty inputs included.
            let mut state = seed | 1;
            let bytes: Vec<u8> = (0..len + skip)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let data = &bytes[skip..];
            prop_assert_eq!(super::crc32c(data), crc32c::crc32c(data), "len {} skip {}", len, skip);
        }
    }
}
