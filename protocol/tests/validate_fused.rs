//! The fused CRC-and-walk validation (`RecordBatch::validate`) against the
//! two-pass reference (`RecordBatch::validate_two_pass`): on random valid
//! batches and on randomly damaged ones, with and without a recomputed CRC
//! (so that the record walk's own checks are reached), at random alignments,
//! both give the same summary or the same error, field for field.

use bytes::Bytes;
use proptest::prelude::*;
use protocol::compression::Codec;
use protocol::record_batch::header::{self, CRC_POS, LAST_OFFSET_DELTA_POS, LENGTH_POS, RECORDS_COUNT_POS};
use protocol::record_batch::{RecordBatch, RecordBatchBuilder, HEADER_BYTES};

const LIMIT: usize = 4 << 20;

/// One record's shape; contents come from a seeded generator so that large
/// values do not slow shrinking down.
#[derive(Debug, Clone)]
struct RecordShape {
    key_len: Option<usize>,
    value_len: Option<usize>,
    headers_count: usize,
}

fn record_shape() -> impl Strategy<Value = RecordShape> {
    (
        proptest::option::weighted(0.9, 0usize..24),
        proptest::option::weighted(0.95, prop_oneof![0usize..64, 0usize..4096, 8000usize..20_000]),
        prop_oneof![3 => Just(0usize), 1 => 1usize..4],
    )
        .prop_map(|(key_len, value_len, headers_count)| RecordShape { key_len, value_len, headers_count })
}

/// How a test damages a batch after building it.
#[derive(Debug, Clone)]
enum Damage {
    None,
    /// XOR one byte after the CRC field (fraction of the way in, mask).
    Flip {
        at: f64,
        mask: u8,
        fix_crc: bool,
    },
    /// Remove bytes from the records, then fix the length (and the CRC).
    Cut {
        at: f64,
        bytes: usize,
        fix_crc: bool,
    },
    /// Declare a different record count or last offset delta (CRC fixed).
    Count {
        records_count: i32,
    },
    LastDelta {
        last_offset_delta: i32,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        4 => (0.0f64..1.0, 1u8..=255, any::<bool>()).prop_map(|(at, mask, fix_crc)| Damage::Flip { at, mask, fix_crc }),
        2 => (0.0f64..1.0, 1usize..40, any::<bool>()).prop_map(|(at, bytes, fix_crc)| Damage::Cut { at, bytes, fix_crc }),
        1 => (0i32..200).prop_map(|records_count| Damage::Count { records_count }),
        1 => (0i32..200).prop_map(|last_offset_delta| Damage::LastDelta { last_offset_delta }),
    ]
}

fn fill(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

fn build(codec: Codec, shapes: &[RecordShape], seed: u64) -> Vec<u8> {
    let mut seed = seed | 1;
    let mut builder = RecordBatchBuilder::new(codec).producer(7, 1, 0);
    for (i, shape) in shapes.iter().enumerate() {
        let key = shape.key_len.map(|len| fill(&mut seed, len));
        let value = shape.value_len.map(|len| fill(&mut seed, len));
        let header_parts: Vec<(Vec<u8>, Vec<u8>)> =
            (0..shape.headers_count).map(|h| (format!("h{h}").into_bytes(), fill(&mut seed, h * 3))).collect();
        let headers: Vec<(&[u8], Option<&[u8]>)> =
            header_parts.iter().map(|(k, v)| (k.as_slice(), (!v.is_empty()).then_some(v.as_slice()))).collect();
        builder.push(1_700_000_000_000 + (i as i64 * 7919) % 1000, key.as_deref(), value.as_deref(), &headers);
    }
    builder.build().expect("builds").to_vec()
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[header::CRC_START_POS..]);
    bytes[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

fn apply(damage: &Damage, bytes: &mut Vec<u8>) {
    let records_len = bytes.len() - HEADER_BYTES;
    match *damage {
        Damage::None => {}
        Damage::Flip { at, mask, fix_crc: fix } => {
            let span = bytes.len() - header::CRC_START_POS;
            bytes[header::CRC_START_POS + (at * span as f64) as usize % span] ^= mask;
            if fix {
                fix_crc(bytes);
            }
        }
        Damage::Cut { at, bytes: cut, fix_crc: fix } => {
            let start = HEADER_BYTES + (at * records_len as f64) as usize % records_len.max(1);
            let stop = (start + cut).min(bytes.len());
            bytes.drain(start..stop);
            let length = (bytes.len() - header::LOG_OVERHEAD_BYTES) as i32;
            bytes[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&length.to_be_bytes());
            if fix {
                fix_crc(bytes);
            }
        }
        Damage::Count { records_count } => {
            bytes[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&records_count.to_be_bytes());
            fix_crc(bytes);
        }
        Damage::LastDelta { last_offset_delta } => {
            bytes[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
            fix_crc(bytes);
        }
    }
}

/// Both paths on the same bytes, placed `skip` bytes into an allocation so
/// that the CRC range starts at every alignment.
fn compare(bytes: &[u8], skip: usize) -> Result<(), TestCaseError> {
    let mut placed = vec![0u8; skip];
    placed.extend_from_slice(bytes);
    let Ok(batch) = RecordBatch::new(Bytes::from(placed).slice(skip..), 0) else {
        return Ok(()); // header damage: neither path is reached
    };
    let fused = format!("{:?}", batch.validate(LIMIT));
    let two_pass = format!("{:?}", batch.validate_two_pass(LIMIT));
    prop_assert_eq!(fused, two_pass);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fused_and_two_pass_agree_on_valid_and_damaged_batches(
        shapes in proptest::collection::vec(record_shape(), 1..80),
        seed in any::<u64>(),
        damage in damage(),
        skip in 0usize..16,
    ) {
        // Proves the fused path keeps the exact semantics: same summary for
        // valid batches, same error (variant and fields) for damaged ones,
        // across batches that span many of its 12 KiB blocks.
        let mut bytes = build(Codec::None, &shapes, seed);
        apply(&damage, &mut bytes);
        compare(&bytes, skip)?;
    }

    #[test]
    fn compressed_batches_agree_too(
        shapes in proptest::collection::vec(record_shape(), 1..20),
        seed in any::<u64>(),
        damage in damage(),
        codec in prop_oneof![Just(Codec::Gzip), Just(Codec::Snappy), Just(Codec::Lz4), Just(Codec::Zstd)],
    ) {
        // Proves that compressed batches (which keep the two-pass path)
        // validate as before, damaged or not.
        let mut bytes = build(codec, &shapes, seed);
        apply(&damage, &mut bytes);
        compare(&bytes, 0)?;
    }
}

#[test]
fn a_bad_record_deep_in_a_large_batch_is_found_by_the_trailing_walk() {
    // Proves the walk that trails the CRC blocks reaches the last records:
    // damage the final record of a 1 MiB batch, keep the CRC valid.
    let shapes = vec![RecordShape { key_len: Some(8), value_len: Some(1024), headers_count: 0 }; 1000];
    let mut bytes = build(Codec::None, &shapes, 1);
    let last = bytes.len() - 1;
    bytes.truncate(last);
    let length = (bytes.len() - header::LOG_OVERHEAD_BYTES) as i32;
    bytes[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&length.to_be_bytes());
    fix_crc(&mut bytes);
    let batch = RecordBatch::new(Bytes::from(bytes), 0).unwrap();
    let fused = batch.validate(LIMIT).unwrap_err();
    assert!(
        matches!(fused, protocol::BatchError::BadRecord { record_index: 999, .. }),
        "the last record is the bad one: {fused:?}"
    );
    assert_eq!(format!("{fused:?}"), format!("{:?}", batch.validate_two_pass(LIMIT).unwrap_err()));
}

#[test]
fn a_crc_mismatch_wins_over_a_bad_record() {
    // Proves the fused path reports the CRC first, as the two-pass path does,
    // even though its walk has already seen the bad record.
    let shapes = vec![RecordShape { key_len: Some(8), value_len: Some(1024), headers_count: 0 }; 100];
    let mut bytes = build(Codec::None, &shapes, 2);
    bytes[HEADER_BYTES] = 0x01; // first record's length: -1
    let batch = RecordBatch::new(Bytes::from(bytes), 0).unwrap();
    assert!(matches!(batch.validate(LIMIT), Err(protocol::BatchError::CrcMismatch { .. })));
    assert!(matches!(batch.validate_two_pass(LIMIT), Err(protocol::BatchError::CrcMismatch { .. })));
}
