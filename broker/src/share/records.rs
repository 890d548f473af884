//! The records of a share-state log and their flatbuffers encoding: one
//! append is one `RecordBatch` flatbuffer (schema in docs/share-partitions.md).
//!
//! A `ShareSnapshot` states a share-partition whole (Kafka's ShareSnapshot:
//! start offset, state epoch, the persisted state of every in-flight
//! range); a `ShareDelta` states what one change changed (Kafka's
//! ShareUpdate) and is replayed over the snapshot before it; `ShareDeleted`
//! removes the share-partition. Encoding never fails; decoding runs
//! flatbuffers' verifier and then refuses anything no writer writes: an
//! unknown format version or record type, a missing field, a range
//! backwards or out of order, the Acquired state (never persisted), a
//! negative offset or epoch. The caller adds the file and offset to the error.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, TableFinishedWIPOffset, Vector, WIPOffset};

use super::schema::{self, record_type, RecordRef};
use super::state::{RecordState, StateRange};

/// The version every payload carries; a payload of another is refused.
pub const FORMAT_VERSION: u8 = 1;

/// One change to the share-partitions of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareRecord {
    /// The whole state of a group's share-partition: written when it is
    /// initialized, when its start offset is altered (a new state epoch)
    /// and by compaction.
    Snapshot(SharePartitionRecord),
    /// The ranges one change set, and the start offset after it; replayed
    /// over the state as it stood.
    Delta(SharePartitionRecord),
    /// The group's share-partition removed (its offsets deleted, the group deleted).
    Deleted { group: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePartitionRecord {
    pub group: String,
    pub state_epoch: i32,
    pub start_offset: i64,
    pub ranges: Vec<StateRange>,
}

impl ShareRecord {
    pub fn group(&self) -> &str {
        match self {
            ShareRecord::Snapshot(record) | ShareRecord::Delta(record) => &record.group,
            ShareRecord::Deleted { group } => group,
        }
    }
}

type Table = WIPOffset<TableFinishedWIPOffset>;

/// Encodes `records` as one `RecordBatch` flatbuffer.
pub fn encode_batch(records: &[ShareRecord]) -> Vec<u8> {
    let mut builder = FlatBufferBuilder::with_capacity(128);
    let entries: Vec<Table> = records.iter().map(|record| encode_entry(&mut builder, record)).collect();
    let entries = builder.create_vector(&entries);
    let batch = builder.start_table();
    builder.push_slot_always::<u8>(schema::RecordBatch::VT_VERSION, FORMAT_VERSION);
    builder.push_slot_always(schema::RecordBatch::VT_RECORDS, entries);
    let batch = builder.end_table(batch);
    builder.finish_minimal(batch);
    builder.finished_data().to_vec()
}

fn encode_entry(builder: &mut FlatBufferBuilder, record: &ShareRecord) -> Table {
    let (kind, value) = match record {
        ShareRecord::Snapshot(state) => (record_type::SHARE_SNAPSHOT, encode_state(builder, state)),
        ShareRecord::Delta(state) => (record_type::SHARE_DELTA, encode_state(builder, state)),
        ShareRecord::Deleted { group } => {
            let group = builder.create_string(group);
            let table = builder.start_table();
            builder.push_slot_always(schema::ShareDeleted::VT_GROUP, group);
            (record_type::SHARE_DELETED, builder.end_table(table))
        }
    };
    let entry = builder.start_table();
    builder.push_slot::<u8>(schema::RecordEntry::VT_RECORD_TYPE, kind, 0);
    builder.push_slot_always(schema::RecordEntry::VT_RECORD, value);
    builder.end_table(entry)
}

/// `ShareSnapshot` and `ShareDelta` have the same fields in the same slots.
fn encode_state(builder: &mut FlatBufferBuilder, state: &SharePartitionRecord) -> Table {
    use schema::{ShareSnapshot as S, StateRange as R};
    let ranges: Vec<Table> = state
        .ranges
        .iter()
        .map(|range| {
            let table = builder.start_table();
            builder.push_slot_always::<i64>(R::VT_FIRST_OFFSET, range.first_offset);
            builder.push_slot_always::<i64>(R::VT_LAST_OFFSET, range.last_offset);
            builder.push_slot_always::<u8>(R::VT_STATE, range.state as u8);
            builder.push_slot_always::<u16>(R::VT_DELIVERY_COUNT, range.delivery_count);
            builder.end_table(table)
        })
        .collect();
    let ranges = builder.create_vector(&ranges);
    let group = builder.create_string(&state.group);
    let table = builder.start_table();
    builder.push_slot_always(S::VT_GROUP, group);
    builder.push_slot_always::<i32>(S::VT_STATE_EPOCH, state.state_epoch);
    builder.push_slot_always::<i64>(S::VT_START_OFFSET, state.start_offset);
    builder.push_slot_always(S::VT_RANGES, ranges);
    builder.end_table(table)
}

/// Decodes a payload written by [`encode_batch`]; the error says what is
/// wrong (the caller adds the file and offset).
pub fn decode_batch(payload: &[u8]) -> Result<Vec<ShareRecord>, String> {
    let batch = schema::verified_batch(payload).map_err(|e| format!("invalid flatbuffer: {e}"))?;
    match batch.version() {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(format!("format version {other} is unknown to this broker (expected {FORMAT_VERSION})"))
        }
        None => return Err("RecordBatch without a format version".into()),
    }
    let entries = batch.records().ok_or("RecordBatch without records")?;
    entries.iter().map(|entry| decode_record(entry.record())).collect()
}

fn required<T>(value: Option<T>, what: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{what} is missing"))
}

fn decode_record(record: RecordRef<'_>) -> Result<ShareRecord, String> {
    match record {
        RecordRef::ShareSnapshot(t) => {
            let state = decode_state(t.group(), t.state_epoch(), t.start_offset(), t.ranges(), "ShareSnapshot")?;
            if let Some(below) = state.ranges.first().filter(|r| r.first_offset < state.start_offset) {
                return Err(format!(
                    "ShareSnapshot range at {} lies below its start offset {}",
                    below.first_offset, state.start_offset
                ));
            }
            Ok(ShareRecord::Snapshot(state))
        }
        RecordRef::ShareDelta(t) => Ok(ShareRecord::Delta(decode_state(
            t.group(),
            t.state_epoch(),
            t.start_offset(),
            t.ranges(),
            "ShareDelta",
        )?)),
        RecordRef::ShareDeleted(t) => Ok(ShareRecord::Deleted { group: decode_group(t.group(), "ShareDeleted")? }),
        RecordRef::Missing => Err("RecordEntry without a record".into()),
        RecordRef::Unknown(kind) => {
            Err(format!("record type {kind} is unknown to this broker (written by a newer version?)"))
        }
    }
}

fn decode_group(group: Option<&str>, table: &str) -> Result<String, String> {
    let group = required(group, &format!("{table}.group"))?;
    if group.is_empty() {
        return Err(format!("{table}.group is empty"));
    }
    Ok(group.to_owned())
}

fn decode_state(
    group: Option<&str>,
    state_epoch: Option<i32>,
    start_offset: Option<i64>,
    ranges: Option<Vector<'_, ForwardsUOffset<schema::StateRange<'_>>>>,
    table: &str,
) -> Result<SharePartitionRecord, String> {
    let group = decode_group(group, table)?;
    let state_epoch = required(state_epoch, &format!("{table}.state_epoch"))?;
    let start_offset = required(start_offset, &format!("{table}.start_offset"))?;
    if state_epoch < 0 || start_offset < 0 {
        return Err(format!("{table} of group {group}: state epoch {state_epoch}, start offset {start_offset}"));
    }
    let mut decoded: Vec<StateRange> = Vec::new();
    for range in required(ranges, &format!("{table}.ranges"))? {
        let first_offset = required(range.first_offset(), "StateRange.first_offset")?;
        let last_offset = required(range.last_offset(), "StateRange.last_offset")?;
        let value = required(range.state(), "StateRange.state")?;
        let delivery_count = required(range.delivery_count(), "StateRange.delivery_count")?;
        let state = RecordState::from_value(value)
            .filter(|state| *state != RecordState::Acquired)
            .ok_or_else(|| format!("StateRange state {value} is never persisted"))?;
        if first_offset < 0 || last_offset < first_offset {
            return Err(format!("StateRange {first_offset}..={last_offset} is backwards"));
        }
        if let Some(previous) = decoded.last().filter(|previous| previous.last_offset >= first_offset) {
            return Err(format!(
                "StateRange {first_offset}..={last_offset} overlaps or precedes {}..={}",
                previous.first_offset, previous.last_offset
            ));
        }
        decoded.push(StateRange { first_offset, last_offset, state, delivery_count });
    }
    Ok(SharePartitionRecord { group, state_epoch, start_offset, ranges: decoded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> Vec<StateRange> {
        vec![
            StateRange { first_offset: 10, last_offset: 14, state: RecordState::Available, delivery_count: 3 },
            StateRange { first_offset: 15, last_offset: 15, state: RecordState::Acknowledged, delivery_count: 1 },
            StateRange { first_offset: 16, last_offset: 99, state: RecordState::Archived, delivery_count: u16::MAX },
        ]
    }

    fn every_record_type() -> Vec<ShareRecord> {
        vec![
            ShareRecord::Snapshot(SharePartitionRecord {
                group: "g".into(),
                state_epoch: 2,
                start_offset: 10,
                ranges: ranges(),
            }),
            ShareRecord::Snapshot(SharePartitionRecord {
                group: "empty".into(),
                state_epoch: 0,
                start_offset: 0,
                ranges: vec![],
            }),
            ShareRecord::Delta(SharePartitionRecord {
                group: "g".into(),
                state_epoch: 2,
                start_offset: 16,
                ranges: ranges(),
            }),
            ShareRecord::Deleted { group: "g".into() },
        ]
    }

    #[test]
    fn batch_round_trip() {
        // Proves every record type survives encode/decode unchanged.
        let records = every_record_type();
        assert_eq!(decode_batch(&encode_batch(&records)).unwrap(), records);
    }

    fn state(start_offset: i64, ranges: Vec<StateRange>) -> ShareRecord {
        ShareRecord::Delta(SharePartitionRecord { group: "g".into(), state_epoch: 0, start_offset, ranges })
    }

    fn range(first_offset: i64, last_offset: i64, state: RecordState) -> StateRange {
        StateRange { first_offset, last_offset, state, delivery_count: 1 }
    }

    #[test]
    fn what_no_writer_writes_is_refused_by_name() {
        // Proves decoding refuses, with a reason, the Acquired state, backwards
        // and overlapping ranges, negative offsets, empty groups, snapshot
        // ranges below the start, an unknown version and an unknown record type.
        let refused = [
            (state(0, vec![range(0, 1, RecordState::Acquired)]), "never persisted"),
            (state(0, vec![range(5, 4, RecordState::Archived)]), "backwards"),
            (state(0, vec![range(0, 5, RecordState::Archived), range(5, 6, RecordState::Archived)]), "overlaps"),
            (state(-1, vec![]), "start offset -1"),
            (ShareRecord::Deleted { group: String::new() }, "empty"),
            (
                ShareRecord::Snapshot(SharePartitionRecord {
                    group: "g".into(),
                    state_epoch: 0,
                    start_offset: 10,
                    ranges: vec![range(9, 9, RecordState::Available)],
                }),
                "below its start offset",
            ),
        ];
        for (record, reason) in refused {
            let err = decode_batch(&encode_batch(std::slice::from_ref(&record))).unwrap_err();
            assert!(err.contains(reason), "{record:?}: {err}");
        }
        let mut payload = encode_batch(&every_record_type());
        // The version is the root table's first field: find it by encoding
        // an empty batch and comparing.
        let position = version_position(&payload);
        payload[position] = FORMAT_VERSION + 1;
        assert!(decode_batch(&payload).unwrap_err().contains("format version 2"));
        let err = decode_batch(&with_record_type(77)).unwrap_err();
        assert!(err.contains("record type 77 is unknown"), "{err}");
    }

    /// A batch of one `ShareDeleted` table under union type `kind`.
    fn with_record_type(kind: u8) -> Vec<u8> {
        let mut builder = FlatBufferBuilder::new();
        let group = builder.create_string("g");
        let table = builder.start_table();
        builder.push_slot_always(schema::ShareDeleted::VT_GROUP, group);
        let value = builder.end_table(table);
        let entry = builder.start_table();
        builder.push_slot::<u8>(schema::RecordEntry::VT_RECORD_TYPE, kind, 0);
        builder.push_slot_always(schema::RecordEntry::VT_RECORD, value);
        let entry = builder.end_table(entry);
        let entries = builder.create_vector(&[entry]);
        let batch = builder.start_table();
        builder.push_slot_always::<u8>(schema::RecordBatch::VT_VERSION, FORMAT_VERSION);
        builder.push_slot_always(schema::RecordBatch::VT_RECORDS, entries);
        let batch = builder.end_table(batch);
        builder.finish_minimal(batch);
        builder.finished_data().to_vec()
    }

    /// The byte offset of the version field in `payload`.
    fn version_position(payload: &[u8]) -> usize {
        let root = u32::from_le_bytes(payload[0..4].try_into().unwrap()) as usize;
        let vtable =
            (root as i64 - i64::from(i32::from_le_bytes(payload[root..root + 4].try_into().unwrap()))) as usize;
        let field = u16::from_le_bytes(payload[vtable + 4..vtable + 6].try_into().unwrap()) as usize;
        root + field
    }

    #[test]
    fn damaged_payloads_are_errors_never_panics() {
        // Proves truncated, bit-flipped and foreign payloads decode to an error
        // (or, rarely, to records), and never panic.
        assert!(decode_batch(&[]).is_err());
        assert!(decode_batch(&[0xff; 64]).is_err());
        let payload = encode_batch(&every_record_type());
        for cut in 0..payload.len() {
            let _ = decode_batch(&payload[..cut]);
        }
        for flip in 0..payload.len() {
            let mut damaged = payload.clone();
            damaged[flip] ^= 0x5a;
            let _ = decode_batch(&damaged);
        }
    }

    /// A format-1 payload as this broker first wrote it: a snapshot, a delta
    /// and a delete. Any format change must keep decoding it (or bump
    /// [`FORMAT_VERSION`] and keep a reader for version 1).
    const FORMAT_1_FIXTURE: &str = "0400000064ffffff08000000000000010300000094000000300000000c00000008000a0009000400080000000c000000000306000800040006000000040000000100000067000000a8ffffff14000000000000020c00180014001000080004000c0000001c0000000d000000000000000100000004000000010000006700000001000000040000009cffffff020000020c000000000000000a0000000000000008000c000b0004000800000014000000000000010c001c0018001400080004000c000000200000000a00000000000000000000000100000004000000010000006700000001000000100000000c00180010000800070004000c000000020000000c000000000000000a00000000000000";

    #[test]
    fn a_format_1_payload_still_decodes() {
        // Proves backward compatibility with the first written format
        // (docs/storage.md: a format change adds a fixture).
        let bytes: Vec<u8> = (0..FORMAT_1_FIXTURE.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&FORMAT_1_FIXTURE[at..at + 2], 16).unwrap())
            .collect();
        let range = |state| StateRange { first_offset: 10, last_offset: 12, state, delivery_count: 2 };
        let state =
            |start_offset, ranges| SharePartitionRecord { group: "g".into(), state_epoch: 1, start_offset, ranges };
        assert_eq!(
            decode_batch(&bytes).unwrap(),
            vec![
                ShareRecord::Snapshot(state(10, vec![range(RecordState::Available)])),
                ShareRecord::Delta(state(13, vec![range(RecordState::Acknowledged)])),
                ShareRecord::Deleted { group: "g".into() },
            ]
        );
    }
}
