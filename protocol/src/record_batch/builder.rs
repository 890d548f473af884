//! Building v2 batches: what a producer sends (our benchmark client, tests)
//! and the control batches (transaction markers) the broker writes itself.

use bytes::{BufMut, Bytes, BytesMut};

use super::attributes;
use super::header::{self, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use crate::compression::{self, Codec, CompressionError};
use crate::varint::{put_varint, put_varlong, varint_len};

/// Accumulates records and turns them into one v2 batch.
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    codec: Codec,
    attributes_extra: i16,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    records_count: i32,
    records: Vec<u8>,
}

impl RecordBatchBuilder {
    /// An empty batch with no producer id (non-idempotent), CreateTime.
    pub fn new(codec: Codec) -> RecordBatchBuilder {
        RecordBatchBuilder {
            codec,
            attributes_extra: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            base_timestamp: None,
            max_timestamp: -1,
            records_count: 0,
            records: Vec::new(),
        }
    }

    /// Idempotent or transactional producer fields.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.set_attribute(attributes::TRANSACTIONAL, transactional);
        self
    }

    fn set_attribute(&mut self, bit: i16, on: bool) {
        if on {
            self.attributes_extra |= bit;
        } else {
            self.attributes_extra &= !bit;
        }
    }

    pub fn records_count(&self) -> i32 {
        self.records_count
    }

    /// Bytes of the records so far, before compression.
    pub fn uncompressed_bytes(&self) -> usize {
        self.records.len()
    }

    /// Appends a record; its offset delta is its index in the batch.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) {
        let base_timestamp = *self.base_timestamp.get_or_insert(timestamp_ms);
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let mut body = Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // record attributes: unused, always 0
        put_varlong(&mut body, timestamp_ms - base_timestamp);
        put_varint(&mut body, self.records_count);
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varint(&mut body, headers.len() as i32);
        for (header_key, header_value) in headers {
            put_bytes(&mut body, Some(header_key));
            put_bytes(&mut body, *header_value);
        }
        self.records.reserve(varint_len(body.len() as i32) + body.len());
        put_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(&body);
        self.records_count += 1;
    }

    /// Finishes the batch (base offset 0, as a producer sends it).
    pub fn build(self) -> Result<Bytes, CompressionError> {
        let records = match self.codec {
            Codec::None => Bytes::from(self.records),
            codec => compression::compress(codec, &self.records)?,
        };
        let attributes = self.codec.id() | self.attributes_extra;
        let base_timestamp = self.base_timestamp.unwrap_or(-1);
        Ok(assemble(
            &BatchFields {
                partition_leader_epoch: self.partition_leader_epoch,
                attributes,
                last_offset_delta: (self.records_count - 1).max(0),
                base_timestamp,
                max_timestamp: self.max_timestamp,
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                base_sequence: self.base_sequence,
                records_count: self.records_count,
            },
            &records,
        ))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i32);
            out.extend_from_slice(bytes);
        }
    }
}

struct BatchFields {
    partition_leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records_count: i32,
}

fn assemble(fields: &BatchFields, records: &[u8]) -> Bytes {
    let size = HEADER_BYTES + records.len();
    let mut out = BytesMut::with_capacity(size);
    out.put_i64(0); // base offset: assigned by the broker
    out.put_i32((size - LOG_OVERHEAD_BYTES) as i32);
    out.put_i32(fields.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // CRC, filled below
    out.put_i16(fields.attributes);
    out.put_i32(fields.last_offset_delta);
    out.put_i64(fields.base_timestamp);
    out.put_i64(fields.max_timestamp);
    out.put_i64(fields.producer_id);
    out.put_i16(fields.producer_epoch);
    out.put_i32(fields.base_sequence);
    out.put_i32(fields.records_count);
    debug_assert_eq!(out.len(), HEADER_BYTES);
    out.put_slice(records);
    let crc = crc32c::crc32c(&out[header::CRC_START_POS..]);
    out[header::CRC_POS..header::CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// The two kinds of transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort = 0,
    Commit = 1,
}

/// A transaction marker: the control record's key and value, as Kafka's
/// `ControlRecordType` and `EndTransactionMarker` define them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMarker {
    pub control_type: ControlType,
    pub coordinator_epoch: i32,
}

impl ControlMarker {
    /// Reads a marker back from a control record's key and value; `None`
    /// for other control types or a damaged record.
    pub fn parse(key: &[u8], value: &[u8]) -> Option<ControlMarker> {
        if key.len() < 4 || value.len() < 6 || key[..2] != [0, 0] {
            return None;
        }
        let control_type = match i16::from_be_bytes([key[2], key[3]]) {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            _ => return None,
        };
        let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
        Some(ControlMarker { control_type, coordinator_epoch })
    }
}

/// Builds the one-record control batch that ends a transaction of
/// `producer_id`/`producer_epoch` in one partition.
pub fn control_batch(marker: ControlMarker, producer_id: i64, producer_epoch: i16, timestamp_ms: i64) -> Bytes {
    let mut key = [0u8; 4]; // version 0, then the type
    key[2..].copy_from_slice(&(marker.control_type as i16).to_be_bytes());
    let mut value = [0u8; 6]; // version 0, then the coordinator epoch
    value[2..].copy_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut builder =
        RecordBatchBuilder::new(Codec::None).producer(producer_id, producer_epoch, -1).transactional(true);
    builder.set_attribute(attributes::CONTROL, true);
    builder.push(timestamp_ms, Some(&key), Some(&value), &[]);
    builder.build().expect("an uncompressed batch cannot fail to build")
}
