//! The records inside a v2 batch (after decompression, if any).
//!
//! Layout of one record, all integers zigzag varints (`varlong` for the
//! timestamp delta):
//! ```text
//! length | attributes i8 | timestamp_delta | offset_delta | key_length | key
//!        | value_length | value | headers_count | (key_length key value_length value)*
//! ```
//! A length of -1 is a null key or value; header keys may not be null.
//! Parsing proves that every length stays inside the record and that the
//! record's fields end exactly where its `length` says; the resulting
//! [`Record`] hands out zero-copy slices of the records buffer.

use std::ops::Range;

use bytes::Bytes;

use super::RecordsSummary;
use crate::error::BatchError;
use crate::varint::{read_varint, read_varlong};

/// One record, its key, value and headers borrowed from the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    headers_count: usize,
    headers: Bytes,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Record {
    pub fn headers_count(&self) -> usize {
        self.headers_count
    }

    /// The headers, in order. Their framing was checked when the record was
    /// parsed, so iterating cannot fail.
    pub fn headers(&self) -> RecordHeaders {
        RecordHeaders { bytes: self.headers.clone(), at: 0, left: self.headers_count }
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct RecordHeaders {
    bytes: Bytes,
    at: usize,
    left: usize,
}

impl Iterator for RecordHeaders {
    type Item = RecordHeader;

    fn next(&mut self) -> Option<RecordHeader> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let layout = parse_header_fields(&self.bytes, &mut self.at).ok()?;
        Some(RecordHeader {
            key: self.bytes.slice(layout.key),
            value: layout.value.map(|range| self.bytes.slice(range)),
        })
    }
}

/// Where the parts of one record lie in the records buffer.
struct RecordLayout {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers_count: usize,
    headers: Range<usize>,
}

#[inline]
/// Reads a varint length: -1 is null, other negatives are errors, and the
/// bytes it announces must lie before `end`.
fn read_length(bytes: &[u8], at: &mut usize, end: usize) -> Result<Option<Range<usize>>, &'static str> {
    let length = read_varint(&bytes[..end], at).map_err(|e| e.reason())?;
    if length == -1 {
        return Ok(None);
    }
    if length < 0 {
        return Err("negative length other than -1");
    }
    let start = *at;
    let stop = start.checked_add(length as usize).filter(|&stop| stop <= end).ok_or("length runs past the record")?;
    *at = stop;
    Ok(Some(start..stop))
}

/// Where a header's key and value lie.
struct HeaderLayout {
    key: Range<usize>,
    value: Option<Range<usize>>,
}

fn parse_header_fields(bytes: &[u8], at: &mut usize) -> Result<HeaderLayout, &'static str> {
    let end = bytes.len();
    let key = read_length(bytes, at, end)?.ok_or("header key is null")?;
    let value = read_length(bytes, at, end)?;
    Ok(HeaderLayout { key, value })
}

/// Parses the record starting at `*at`, advancing `*at` past it.
#[inline]
fn parse_record(data: &[u8], at: &mut usize) -> Result<RecordLayout, &'static str> {
    let length = read_varint(data, at).map_err(|e| e.reason())?;
    if length < 0 {
        return Err("negative record length");
    }
    let end =
        at.checked_add(length as usize).filter(|&end| end <= data.len()).ok_or("record length runs past the batch")?;
    let body = &data[..end];
    let attributes = *body.get(*at).ok_or("record ends before its attributes")? as i8;
    *at += 1;
    let timestamp_delta = read_varlong(body, at).map_err(|e| e.reason())?;
    let offset_delta = read_varint(body, at).map_err(|e| e.reason())?;
    let key = read_length(body, at, end)?;
    let value = read_length(body, at, end)?;
    let headers_count = read_varint(body, at).map_err(|e| e.reason())?;
    if headers_count < 0 {
        return Err("negative header count");
    }
    let headers_start = *at;
    // Each header takes at least two bytes, so a count larger than that
    // cannot be honest; checking first keeps the loop bounded by the bytes.
    if headers_count as usize > (end - headers_start) / 2 {
        return Err("header count larger than the record");
    }
    let mut header_at = headers_start;
    for _ in 0..headers_count {
        parse_header_fields(body, &mut header_at)?;
    }
    if header_at != end {
        return Err("record fields end before its length says");
    }
    *at = end;
    Ok(RecordLayout {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers_count: headers_count as usize,
        headers: headers_start..end,
    })
}

/// Walks every record of an uncompressed records buffer: framing, offset
/// delta order, and what the header must agree with.
pub(super) fn summarize(data: &[u8], base_timestamp: i64, position: usize) -> Result<RecordsSummary, BatchError> {
    let mut walk = RecordWalk::new(position);
    walk.step_until(data, data.len());
    walk.finish(base_timestamp)
}

/// The record walk of [`summarize`] as a resumable state machine, so that
/// [`super::fused`] can advance it a record at a time between CRC blocks.
/// Both paths drive this one type, so they cannot disagree on what is valid.
///
/// Invariant: once `error` is set, `at` is `usize::MAX` and no step reads
/// any more bytes; the first error is the one reported.
#[derive(Debug)]
pub(super) struct RecordWalk {
    /// Where the next record starts in the records buffer.
    pub(super) at: usize,
    position: usize,
    count: usize,
    previous_delta: i32,
    consecutive: bool,
    max_timestamp_delta: i64,
    error: Option<BatchError>,
}

impl RecordWalk {
    pub(super) fn new(position: usize) -> RecordWalk {
        RecordWalk {
            at: 0,
            position,
            count: 0,
            previous_delta: -1,
            consecutive: true,
            max_timestamp_delta: i64::MIN,
            error: None,
        }
    }

    /// Walks the records that start before `limit` (at most `data.len()`).
    #[inline]
    pub(super) fn step_until(&mut self, data: &[u8], limit: usize) {
        debug_assert!(limit <= data.len(), "limit {limit} past the records ({} bytes)", data.len());
        while self.at < limit {
            self.step(data);
        }
    }

    /// Walks one record starting at `self.at`, which must be inside `data`.
    #[inline]
    pub(super) fn step(&mut self, data: &[u8]) {
        let record_position = self.at;
        let layout = match parse_record(data, &mut self.at) {
            Ok(layout) => layout,
            Err(reason) => {
                let record_index = self.count;
                return self.fail(BatchError::BadRecord {
                    position: self.position,
                    record_index,
                    record_position,
                    reason,
                });
            }
        };
        if layout.offset_delta <= self.previous_delta {
            return self.fail(BatchError::OffsetDeltaOrder {
                position: self.position,
                record_index: self.count,
                offset_delta: layout.offset_delta,
                previous: self.previous_delta,
            });
        }
        self.consecutive &= i64::from(layout.offset_delta) == self.count as i64;
        self.previous_delta = layout.offset_delta;
        self.max_timestamp_delta = self.max_timestamp_delta.max(layout.timestamp_delta);
        self.count += 1;
    }

    #[cold]
    fn fail(&mut self, error: BatchError) {
        self.error = Some(error);
        self.at = usize::MAX;
    }

    /// What the walk found, or its first error. The caller must have walked
    /// the whole buffer (`step_until(data, data.len())`).
    pub(super) fn finish(self, base_timestamp: i64) -> Result<RecordsSummary, BatchError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let count = self.count;
        Ok(RecordsSummary {
            records_count: count,
            last_offset_delta: self.previous_delta.max(0),
            offset_deltas_consecutive: self.consecutive,
            max_record_timestamp: base_timestamp.saturating_add(if count == 0 { 0 } else { self.max_timestamp_delta }),
        })
    }
}

/// Iterator over the records of a batch. Yields at most the declared count
/// (a lying count cannot make it run past the bytes) and stops after an error.
#[derive(Debug, Clone)]
pub struct Records {
    data: Bytes,
    at: usize,
    index: usize,
    declared: usize,
    position: usize,
    failed: bool,
}

impl Records {
    pub(super) fn new(data: Bytes, declared: i32, position: usize) -> Records {
        Records { data, at: 0, index: 0, declared: declared.max(0) as usize, position, failed: false }
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.declared {
            return None;
        }
        if self.at >= self.data.len() {
            self.failed = true;
            return Some(Err(BatchError::RecordCountMismatch {
                position: self.position,
                declared: self.declared as i32,
                found: self.index,
            }));
        }
        let record_position = self.at;
        match parse_record(&self.data, &mut self.at) {
            Ok(layout) => {
                self.index += 1;
                let slice = |range: Range<usize>| self.data.slice(range);
                Some(Ok(Record {
                    attributes: layout.attributes,
                    timestamp_delta: layout.timestamp_delta,
                    offset_delta: layout.offset_delta,
                    key: layout.key.map(slice),
                    value: layout.value.map(slice),
                    headers_count: layout.headers_count,
                    headers: self.data.slice(layout.headers),
                }))
            }
            Err(reason) => {
                self.failed = true;
                Some(Err(BatchError::BadRecord {
                    position: self.position,
                    record_index: self.index,
                    record_position,
                    reason,
                }))
            }
        }
    }
}
