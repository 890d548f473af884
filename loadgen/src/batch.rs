//! Building v2 record batches on the producer's hot path without allocating
//! per record, and choosing partitions the way Kafka's Java client does.
//!
//! The protocol crate's `RecordBatchBuilder` allocates a small vector per
//! record, which is fine for tests but not for a client that must never be
//! the bottleneck; [`BatchBuilder`] writes each record straight into one
//! reused `BytesMut` (header placeholder first, patched with the counts,
//! timestamps, producer fields and CRC32C when the batch is finished).
//! After a finished batch's `Bytes` is dropped, `BytesMut::reserve`
//! reclaims the same memory for the next batch.
//!
//! Every record's value starts with its intended send time (u64 big-endian,
//! nanoseconds since the Unix epoch, see `clock`), so a consumer can
//! compute end-to-end latency; the rest of the value is a fixed payload.

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use protocol::compression::{self, Codec};
use protocol::record_batch::header::{
    ATTRIBUTES_POS, BASE_OFFSET_POS, BASE_SEQUENCE_POS, BASE_TIMESTAMP_POS, CRC_POS, CRC_START_POS,
    LAST_OFFSET_DELTA_POS, LEADER_EPOCH_POS, LENGTH_POS, MAGIC_POS, MAX_TIMESTAMP_POS, PRODUCER_EPOCH_POS,
    PRODUCER_ID_POS, RECORDS_COUNT_POS,
};
use protocol::record_batch::{attributes, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};

/// Bytes of the send-time stamp at the start of every value.
pub const STAMP_BYTES: usize = 8;

/// Producer fields of a batch: -1s for a plain producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerFields {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The batch belongs to a transaction (the attributes' bit).
    pub transactional: bool,
}

impl ProducerFields {
    pub const NONE: ProducerFields =
        ProducerFields { producer_id: -1, producer_epoch: -1, base_sequence: -1, transactional: false };
}

/// One partition's open batch.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    records_count: i32,
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl BatchBuilder {
    pub fn new(capacity_bytes: usize) -> BatchBuilder {
        BatchBuilder {
            buf: BytesMut::with_capacity(capacity_bytes.max(HEADER_BYTES)),
            records_count: 0,
            base_timestamp_ms: -1,
            max_timestamp_ms: -1,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records_count == 0
    }

    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    /// Bytes of the batch so far (header included, before compression).
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record whose value is `stamp_ns` followed by `payload`.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, stamp_ns: u64, payload: &[u8]) {
        if self.records_count == 0 {
            self.buf.clear();
            self.buf.put_bytes(0, HEADER_BYTES);
            self.base_timestamp_ms = timestamp_ms;
        }
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let timestamp_delta = timestamp_ms - self.base_timestamp_ms;
        let offset_delta = self.records_count;
        let key_len = key.map_or(-1, |k| k.len() as i32);
        let value_len = (STAMP_BYTES + payload.len()) as i32;
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value_len as usize
            + 1;
        let buf = &mut self.buf;
        put_varint(buf, body_len as i32);
        buf.put_u8(0); // record attributes: unused
        put_varlong(buf, timestamp_delta);
        put_varint(buf, offset_delta);
        put_varint(buf, key_len);
        if let Some(key) = key {
            buf.put_slice(key);
        }
        put_varint(buf, value_len);
        buf.put_u64(stamp_ns);
        buf.put_slice(payload);
        put_varint(buf, 0); // no headers
        self.records_count += 1;
    }

    /// Finishes the batch as a producer sends it (base offset 0) and leaves
    /// the builder empty, its memory reusable once the returned bytes drop.
    pub fn finish(&mut self, codec: Codec, producer: ProducerFields) -> anyhow::Result<Bytes> {
        assert!(self.records_count > 0, "finishing an empty batch");
        if codec != Codec::None {
            let compressed = compression::compress(codec, &self.buf[HEADER_BYTES..])
                .with_context(|| format!("compressing a batch with {}", codec.name()))?;
            self.buf.truncate(HEADER_BYTES);
            self.buf.put_slice(&compressed);
        }
        let size = self.buf.len();
        let header = &mut self.buf[..HEADER_BYTES];
        header[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&0i64.to_be_bytes());
        header[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&((size - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        header[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
        header[MAGIC_POS] = MAGIC_V2 as u8;
        let transactional = if producer.transactional { attributes::TRANSACTIONAL } else { 0 };
        header[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&(codec.id() | transactional).to_be_bytes());
        let last_offset_delta = self.records_count - 1;
        header[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
        header[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8].copy_from_slice(&self.base_timestamp_ms.to_be_bytes());
        header[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&self.max_timestamp_ms.to_be_bytes());
        header[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&producer.producer_id.to_be_bytes());
        header[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&producer.producer_epoch.to_be_bytes());
        header[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&producer.base_sequence.to_be_bytes());
        header[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&self.records_count.to_be_bytes());
        let crc = crc32c::crc32c(&self.buf[CRC_START_POS..]);
        self.buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        self.records_count = 0;
        self.base_timestamp_ms = -1;
        self.max_timestamp_ms = -1;
        Ok(self.buf.split().freeze())
    }
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn put_unsigned(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

pub fn put_varint(buf: &mut BytesMut, value: i32) {
    put_unsigned(buf, u64::from(zigzag32(value)));
}

pub fn put_varlong(buf: &mut BytesMut, value: i64) {
    put_unsigned(buf, zigzag64(value));
}

pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

/// Kafka's `Utils.murmur2`, which the Java client's default partitioner
/// hashes keys with: the same key lands on the same partition as with Java.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    (murmur2(key) & 0x7fff_ffff) as usize % partitions
}

/// How record keys are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyMode {
    /// Null keys; partitions are filled one batch at a time (Kafka's sticky partitioner).
    None,
    /// 8 random bytes per record, partitioned by murmur2.
    Random,
    /// The record's sequence number (8 bytes, big-endian), partitioned by murmur2.
    Sequential,
}

/// Chooses each record's key and partition without allocating.
#[derive(Debug)]
pub struct Partitioner {
    mode: KeyMode,
    partitions: usize,
    sticky: usize,
    next_key: u64,
    rng: fastrand::Rng,
    key: [u8; 8],
}

impl Partitioner {
    /// `seed` makes each producer's sequence of keys and partitions distinct.
    pub fn new(mode: KeyMode, partitions: usize, seed: u64) -> Partitioner {
        assert!(partitions > 0, "a topic has at least one partition");
        let mut rng = fastrand::Rng::with_seed(seed);
        let sticky = rng.usize(..partitions);
        Partitioner { mode, partitions, sticky, next_key: 0, rng, key: [0; 8] }
    }

    /// The next record's partition and key.
    pub fn next(&mut self) -> (usize, Option<&[u8]>) {
        match self.mode {
            KeyMode::None => (self.sticky, None),
            KeyMode::Random => {
                self.key = self.rng.u64(..).to_be_bytes();
                (partition_for_key(&self.key, self.partitions), Some(&self.key))
            }
            KeyMode::Sequential => {
                self.key = self.next_key.to_be_bytes();
                self.next_key += 1;
                (partition_for_key(&self.key, self.partitions), Some(&self.key))
            }
        }
    }

    /// A batch of `partition` was closed: keyless records move on to the
    /// next partition, as the sticky partitioner does.
    pub fn batch_closed(&mut self, partition: usize) {
        if self.mode == KeyMode::None && partition == self.sticky {
            self.sticky = (self.sticky + 1) % self.partitions;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::record_batch::batches;

    fn build(codec: Codec, records: usize, producer: ProducerFields) -> Bytes {
        let mut builder = BatchBuilder::new(1024);
        for i in 0..records {
            let key = (i as u64).to_be_bytes();
            let key = if i % 2 == 0 { Some(&key[..]) } else { None };
            builder.push(1_000 + i as i64, key, 7_000 + i as u64, b"payload-payload-payload");
        }
        builder.finish(codec, producer).unwrap()
    }

    #[test]
    fn batches_validate_and_round_trip_with_every_codec() {
        // Proves the hand-written encoder makes batches the protocol crate
        // accepts (CRC, lengths, deltas) and that keys, stamps, payloads and
        // producer fields come back as written, compressed or not.
        for (codec, transactional) in Codec::ALL.into_iter().zip([false, true].into_iter().cycle()) {
            let producer = ProducerFields { producer_id: 42, producer_epoch: 3, base_sequence: 100, transactional };
            let bytes = build(codec, 50, producer);
            let batch = batches(bytes, usize::MAX).next().unwrap().unwrap();
            batch.validate(1 << 20).unwrap_or_else(|err| panic!("{codec:?}: {err}"));
            assert_eq!(batch.codec().unwrap(), codec);
            assert_eq!((batch.records_count(), batch.last_offset_delta()), (50, 49));
            assert_eq!((batch.base_timestamp(), batch.max_timestamp()), (1_000, 1_049));
            assert_eq!((batch.producer_id(), batch.producer_epoch(), batch.base_sequence()), (42, 3, 100));
            assert_eq!(batch.is_transactional(), transactional, "{codec:?}");
            for (i, record) in batch.records(1 << 20).unwrap().enumerate() {
                let record = record.unwrap();
                let value = record.value.unwrap();
                assert_eq!(u64::from_be_bytes(value[..8].try_into().unwrap()), 7_000 + i as u64);
                assert_eq!(&value[8..], b"payload-payload-payload");
                assert_eq!(record.key.is_some(), i % 2 == 0, "{codec:?} record {i}");
                assert_eq!(record.offset_delta, i as i32);
            }
        }
    }

    #[test]
    fn builder_is_reusable_and_reclaims_its_memory() {
        // Proves a finished builder starts a fresh batch and, once earlier
        // batches are dropped, keeps writing into its first allocation
        // instead of allocating per batch.
        let capacity = 64 * 1024;
        let mut builder = BatchBuilder::new(capacity);
        let mut first_ptr = None;
        for round in 0..100 {
            for i in 0..50 {
                builder.push(i, None, 0, &[1; 100]);
            }
            let batch = builder.finish(Codec::None, ProducerFields::NONE).unwrap();
            let base = *first_ptr.get_or_insert(batch.as_ptr() as usize);
            let at = batch.as_ptr() as usize;
            assert!(at >= base && at + batch.len() <= base + capacity, "round {round} allocated anew");
            let batch = batches(batch, usize::MAX).next().unwrap().unwrap();
            batch.validate(1 << 20).unwrap();
            assert_eq!(batch.records_count(), 50);
        }
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        // Proves the precomputed record length agrees with the bytes the
        // varint writers produce, at every width boundary.
        for value in [0i64, 1, -1, 63, -64, 64, 8191, 8192, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf.len(), varlong_len(value), "varlong {value}");
            if let Ok(value) = i32::try_from(value) {
                let mut buf = BytesMut::new();
                put_varint(&mut buf, value);
                assert_eq!(buf.len(), varint_len(value), "varint {value}");
            }
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Proves keys hash as in Kafka's UtilsTest, so keyed records land on
        // the partitions the Java client would pick.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn partitioner_spreads_keys_and_sticks_without_them() {
        // Proves keyless records stay on one partition until its batch
        // closes, and keyed records reach every partition.
        let mut sticky = Partitioner::new(KeyMode::None, 4, 1);
        let (first, key) = sticky.next();
        assert!(key.is_none());
        assert_eq!(sticky.next().0, first);
        sticky.batch_closed(first);
        assert_eq!(sticky.next().0, (first + 1) % 4);
        for mode in [KeyMode::Random, KeyMode::Sequential] {
            let mut keyed = Partitioner::new(mode, 4, 1);
            let mut seen = [false; 4];
            for _ in 0..200 {
                seen[keyed.next().0] = true;
            }
            assert_eq!(seen, [true; 4], "{mode:?}");
        }
    }
}
