//! Record batch v2: what the builder writes the view reads back, and each
//! kind of damage a client or a disk can do gets its own error (and the
//! Kafka error code the broker will answer with).

use bytes::{Bytes, BytesMut};
use protocol::compression::Codec;
use protocol::record_batch::header::{self, CRC_POS, LAST_OFFSET_DELTA_POS, LENGTH_POS, MAGIC_POS, RECORDS_COUNT_POS};
use protocol::record_batch::{
    batches, control_batch, set_log_append_time, ControlMarker, ControlType, RecordBatch, RecordBatchBuilder,
    TimestampType, HEADER_BYTES,
};
use protocol::{BatchError, ErrorCode};

const LIMIT: usize = 1 << 20;

fn three_records(codec: Codec) -> Bytes {
    let mut builder = RecordBatchBuilder::new(codec).producer(42, 3, 100);
    builder.push(1_000, Some(b"k0"), Some(b"v0"), &[]);
    builder.push(1_005, None, Some(b"v1"), &[(b"h", Some(b"x")), (b"empty", None)]);
    builder.push(990, Some(b"k2"), None, &[]);
    builder.build().unwrap()
}

/// Recomputes the CRC after a test edits the bytes it covers, so that the
/// check under test is the one that fires, not the CRC.
fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[header::CRC_START_POS..]);
    bytes[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn built_batches_read_back_field_for_field_with_every_codec() {
    // Proves builder and view agree on the header, the records (keys,
    // values, nulls, headers, deltas) and the codec bits, for all codecs.
    for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = RecordBatch::new(three_records(codec), 0).unwrap();
        let summary = batch.validate(LIMIT).unwrap();
        assert_eq!(batch.codec().unwrap(), codec);
        assert_eq!((batch.producer_id(), batch.producer_epoch(), batch.base_sequence()), (42, 3, 100));
        assert_eq!((batch.records_count(), batch.last_offset_delta()), (3, 2));
        assert_eq!((batch.base_timestamp(), batch.max_timestamp()), (1_000, 1_005));
        assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
        assert!(!batch.is_transactional() && !batch.is_control());
        assert!(summary.offset_deltas_consecutive);
        assert_eq!(summary.max_record_timestamp, 1_005);
        let records: Vec<_> = batch.records(LIMIT).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[2].value, None);
        assert_eq!(records[2].timestamp_delta, -10);
        assert_eq!(records.iter().map(|r| r.offset_delta).collect::<Vec<_>>(), [0, 1, 2]);
        let headers: Vec<_> = records[1].headers().collect();
        assert_eq!(headers.len(), 2);
        assert_eq!((&headers[0].key[..], headers[0].value.as_deref()), (&b"h"[..], Some(&b"x"[..])));
        assert_eq!((&headers[1].key[..], headers[1].value.as_deref()), (&b"empty"[..], None));
    }
}

#[test]
fn uncompressed_records_are_slices_of_the_batch() {
    // Proves the view is zero-copy: keys and values point into the batch.
    let bytes = three_records(Codec::None);
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    let batch = RecordBatch::new(bytes.clone(), 0).unwrap();
    for record in batch.records(LIMIT).unwrap() {
        let record = record.unwrap();
        for part in [record.key, record.value].into_iter().flatten() {
            assert!(range.contains(&(part.as_ptr() as usize)), "a record part was copied");
        }
    }
}

#[test]
fn crc_mismatch_is_reported_with_both_values() {
    let mut bytes = three_records(Codec::None).to_vec();
    *bytes.last_mut().unwrap() ^= 0x40;
    let err = RecordBatch::new(Bytes::from(bytes), 0).unwrap().validate(LIMIT).unwrap_err();
    assert!(matches!(err, BatchError::CrcMismatch { position: 0, stored, computed } if stored != computed));
    assert_eq!(err.error_code(), ErrorCode::CorruptMessage);
}

#[test]
fn truncated_batches_and_lying_lengths_are_refused() {
    // Proves a batch cut short, and a length field pointing past the bytes,
    // are errors before anything is read past the end.
    let bytes = three_records(Codec::None);
    assert!(matches!(
        RecordBatch::new(bytes.slice(..bytes.len() - 1), 0),
        Err(BatchError::BadLength { available, .. }) if available == bytes.len() - 1
    ));
    assert!(matches!(RecordBatch::new(bytes.slice(..30), 0), Err(BatchError::BadLength { available: 30, .. })));
    assert!(matches!(RecordBatch::new(bytes.slice(..5), 0), Err(BatchError::TruncatedHeader { len: 5, .. })));
    let mut lying = bytes.to_vec();
    lying[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(RecordBatch::new(Bytes::from(lying), 0), Err(BatchError::BadLength { length: i32::MAX, .. })));
    let mut extra = bytes.to_vec();
    extra.extend_from_slice(b"xyz");
    assert!(matches!(RecordBatch::new(Bytes::from(extra), 0), Err(BatchError::TrailingBytes { trailing: 3, .. })));
}

#[test]
fn lying_record_count_and_last_offset_delta_are_caught() {
    // Proves the declared count and last offset delta are checked against
    // the records actually present, in both directions.
    for declared in [2i32, 4, 1000] {
        let mut bytes = three_records(Codec::None).to_vec();
        bytes[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&declared.to_be_bytes());
        fix_crc(&mut bytes);
        let batch = RecordBatch::new(Bytes::from(bytes), 0).unwrap();
        assert!(
            matches!(batch.validate(LIMIT), Err(BatchError::RecordCountMismatch { declared: d, found: 3, .. }) if d == declared)
        );
        // The iterator never yields more than the bytes hold.
        assert!(batch.records(LIMIT).unwrap().filter(Result::is_ok).count() <= 3);
    }
    let mut bytes = three_records(Codec::None).to_vec();
    bytes[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut bytes);
    let err = RecordBatch::new(Bytes::from(bytes), 0).unwrap().validate(LIMIT).unwrap_err();
    assert!(matches!(err, BatchError::LastOffsetDeltaMismatch { declared: 5, found: 2, .. }));
    assert_eq!(err.error_code(), ErrorCode::InvalidRecord);
}

#[test]
fn bad_varints_and_record_lengths_name_the_record() {
    // Proves damage inside the records is located (record index and byte).
    // The first record's length varint is the first byte after the header.
    let mut bytes = three_records(Codec::None).to_vec();
    bytes[HEADER_BYTES..HEADER_BYTES + 5].copy_from_slice(&[0xff; 5]);
    fix_crc(&mut bytes);
    let err = RecordBatch::new(Bytes::from(bytes), 0).unwrap().validate(LIMIT).unwrap_err();
    assert!(matches!(err, BatchError::BadRecord { record_index: 0, record_position: 0, .. }), "{err}");

    // A record length (zigzag varint 0xfe 0x7f = 8191) that runs past the
    // batch, replacing the first record's one-byte length.
    let mut bytes = three_records(Codec::None).to_vec();
    bytes[HEADER_BYTES] = 0xfe;
    bytes.insert(HEADER_BYTES + 1, 0x7f);
    let length = (bytes.len() - header::LOG_OVERHEAD_BYTES) as i32;
    bytes[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&length.to_be_bytes());
    fix_crc(&mut bytes);
    let err = RecordBatch::new(Bytes::from(bytes), 0).unwrap().validate(LIMIT).unwrap_err();
    assert!(matches!(err, BatchError::BadRecord { record_index: 0, reason: "record length runs past the batch", .. }));
}

#[test]
fn message_format_v0_and_v1_are_refused_with_invalid_record() {
    for magic in [0u8, 1] {
        let mut bytes = three_records(Codec::None).to_vec();
        bytes[MAGIC_POS] = magic;
        let err = RecordBatch::new(Bytes::from(bytes), 0).unwrap_err();
        assert!(matches!(err, BatchError::UnsupportedMagic { magic: m, .. } if m == magic as i8));
        assert_eq!(err.error_code(), ErrorCode::InvalidRecord);
    }
}

#[test]
fn unknown_codec_ids_are_refused() {
    let mut bytes = three_records(Codec::None).to_vec();
    bytes[header::ATTRIBUTES_POS + 1] |= 0x07;
    fix_crc(&mut bytes);
    let batch = RecordBatch::new(Bytes::from(bytes), 0).unwrap();
    assert!(matches!(batch.validate(LIMIT), Err(BatchError::UnknownCodec { codec: 7, .. })));
}

#[test]
fn patching_offsets_keeps_the_crc_and_log_append_time_recomputes_it() {
    // Proves the two in-place rewrites the broker does leave a valid batch.
    let mut bytes = BytesMut::from(&three_records(Codec::None)[..]);
    header::patch_offset_and_epoch(&mut bytes, 1_000_000, 7);
    set_log_append_time(&mut bytes, 1_777_000_000_000);
    let batch = RecordBatch::new(bytes.freeze(), 0).unwrap();
    batch.validate(LIMIT).unwrap();
    assert_eq!((batch.base_offset(), batch.last_offset(), batch.partition_leader_epoch()), (1_000_000, 1_000_002, 7));
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.max_timestamp(), 1_777_000_000_000);
    assert_eq!(batch.codec().unwrap(), Codec::None, "the codec bits survive");
}

#[test]
fn control_batches_carry_the_transaction_marker() {
    // Proves a marker batch is transactional + control, one record, and its
    // key/value read back as the marker (Kafka's ControlRecordType layout).
    for control_type in [ControlType::Commit, ControlType::Abort] {
        let marker = ControlMarker { control_type, coordinator_epoch: 12 };
        let batch = RecordBatch::new(control_batch(marker, 77, 2, 5_000), 0).unwrap();
        batch.validate(LIMIT).unwrap();
        assert!(batch.is_control() && batch.is_transactional());
        assert_eq!((batch.producer_id(), batch.producer_epoch(), batch.records_count()), (77, 2, 1));
        let record = batch.records(LIMIT).unwrap().next().unwrap().unwrap();
        let key = record.key.unwrap();
        assert_eq!(&key[..2], &[0, 0], "control record key version 0");
        assert_eq!(ControlMarker::parse(&key, &record.value.unwrap()), Some(marker));
    }
}

#[test]
fn record_sets_split_into_batches_zero_copy_and_stop_at_damage() {
    // Proves a Produce record set with several batches is split in place,
    // positions are reported, and an oversized batch is refused up front.
    let a = three_records(Codec::None);
    let b = three_records(Codec::Lz4);
    let mut set = BytesMut::new();
    set.extend_from_slice(&a);
    set.extend_from_slice(&b);
    let set = set.freeze();
    let split: Vec<_> = batches(set.clone(), LIMIT).collect::<Result<_, _>>().unwrap();
    assert_eq!(split.len(), 2);
    assert_eq!((split[0].position(), split[1].position()), (0, a.len()));
    assert_eq!(split[1].bytes().as_ptr(), set[a.len()..].as_ptr(), "no copy");
    let too_small_limit = a.len() - 1;
    let first = batches(set.clone(), too_small_limit).next().unwrap();
    assert!(matches!(first, Err(BatchError::TooLarge { .. })));
    let cut = batches(set.slice(..a.len() + 20), LIMIT).collect::<Vec<_>>();
    assert_eq!(cut.len(), 2);
    assert!(cut[1].is_err());
}
