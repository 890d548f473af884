//! Flatbuffers tables of the metadata log, written by hand as `flatc --rust`
//! would generate them from the schema in `docs/metadata.md` (no `flatc` is
//! installed). Keep the two in step: a slot number here is the field's
//! position in the schema (`slot = 4 + 2 * field index`).
//!
//! Soundness: flatbuffers' accessors are `unsafe` because they trust the
//! buffer. Every table here is reached only through [`verified_batch`], which
//! runs flatbuffers' verifier over the whole buffer first; each table's
//! verifier visits every field its accessors read, with the same type, so an
//! accessor never reads outside the buffer or misreads a field. This file is
//! the only place in the metadata module with `unsafe`.
#![allow(unsafe_code)]

use flatbuffers::{
    Follow, ForwardsUOffset, InvalidFlatbuffer, Table, VOffsetT, Vector, Verifiable, Verifier, VerifierOptions,
};

/// Defines a table type: its slot constants, a verifier visiting every field
/// and one accessor per field, all from one list so they cannot disagree.
macro_rules! table {
    ($(#[$doc:meta])* $name:ident { $($field:ident / $slot_name:ident : $ty:ty = $slot:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(super) struct $name<'a> {
            table: Table<'a>,
        }

        impl<'a> Follow<'a> for $name<'a> {
            type Inner = $name<'a>;

            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // Safety: the caller guarantees a table at `loc`; the
                // verifier checked its vtable before any caller got here.
                $name { table: unsafe { Table::new(buf, loc) } }
            }
        }

        impl<'a> Verifiable for $name<'a> {
            fn run_verifier(verifier: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
                verifier.visit_table(pos)?
                    $(.visit_field::<$ty>(stringify!($field), Self::$slot_name, false)?)*
                    .finish();
                Ok(())
            }
        }

        #[allow(dead_code)]
        impl<'a> $name<'a> {
            $(pub(super) const $slot_name: VOffsetT = $slot;)*

            $(
                pub(super) fn $field(&self) -> Option<<$ty as Follow<'a>>::Inner> {
                    // Safety: `run_verifier` above checked this slot as `$ty`.
                    unsafe { self.table.get::<$ty>(Self::$slot_name, None) }
                }
            )*
        }
    };
}

pub(super) type Str<'a> = ForwardsUOffset<&'a str>;
pub(super) type Bytes<'a> = ForwardsUOffset<Vector<'a, u8>>;
pub(super) type Tables<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;

table!(PartitionEntry {
    partition / VT_PARTITION: i32 = 4,
    shard / VT_SHARD: u32 = 6,
    leader_epoch / VT_LEADER_EPOCH: i32 = 8,
});

table!(ConfigEntry {
    key / VT_KEY: Str<'a> = 4,
    value / VT_VALUE: Str<'a> = 6,
});

table!(ClusterCreated {
    cluster_id / VT_CLUSTER_ID: Str<'a> = 4,
});

table!(TopicCreated {
    name / VT_NAME: Str<'a> = 4,
    topic_id / VT_TOPIC_ID: Bytes<'a> = 6,
    partitions / VT_PARTITIONS: Tables<'a, PartitionEntry<'a>> = 8,
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 10,
});

table!(PartitionsCreated {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
    partitions / VT_PARTITIONS: Tables<'a, PartitionEntry<'a>> = 6,
});

table!(TopicDeleted {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
});

table!(TopicConfigsSet {
    topic_id / VT_TOPIC_ID: Bytes<'a> = 4,
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 6,
});

table!(BrokerConfigsSet {
    configs / VT_CONFIGS: Tables<'a, ConfigEntry<'a>> = 4,
});

table!(ProducerIdsAllocated {
    next_producer_id / VT_NEXT_PRODUCER_ID: i64 = 4,
});

table!(
    /// The root of every frame's payload.
    RecordBatch {
        records / VT_RECORDS: Tables<'a, RecordEntry<'a>> = 4,
    }
);

/// Values of the `Record` union's type field. 0 is flatbuffers' NONE.
pub(super) mod record_type {
    pub(in super::super) const CLUSTER_CREATED: u8 = 1;
    pub(in super::super) const TOPIC_CREATED: u8 = 2;
    pub(in super::super) const PARTITIONS_CREATED: u8 = 3;
    pub(in super::super) const TOPIC_DELETED: u8 = 4;
    pub(in super::super) const TOPIC_CONFIGS_SET: u8 = 5;
    pub(in super::super) const BROKER_CONFIGS_SET: u8 = 6;
    pub(in super::super) const PRODUCER_IDS_ALLOCATED: u8 = 7;
}

/// `table RecordEntry { record: Record; }`: a union field is two slots, its
/// type (u8) and its value (an offset to the variant's table).
#[derive(Clone, Copy)]
pub(super) struct RecordEntry<'a> {
    table: Table<'a>,
}

/// The decoded union: one variant per record type, plus what a newer
/// broker may have written.
pub(super) enum RecordRef<'a> {
    ClusterCreated(ClusterCreated<'a>),
    TopicCreated(TopicCreated<'a>),
    PartitionsCreated(PartitionsCreated<'a>),
    TopicDeleted(TopicDeleted<'a>),
    TopicConfigsSet(TopicConfigsSet<'a>),
    BrokerConfigsSet(BrokerConfigsSet<'a>),
    ProducerIdsAllocated(ProducerIdsAllocated<'a>),
    /// Type NONE, or a value missing.
    Missing,
    /// A type this broker does not know.
    Unknown(u8),
}

impl<'a> Follow<'a> for RecordEntry<'a> {
    type Inner = RecordEntry<'a>;

    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        // Safety: as for the tables above.
        RecordEntry { table: unsafe { Table::new(buf, loc) } }
    }
}

impl Verifiable for RecordEntry<'_> {
    fn run_verifier(verifier: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        use record_type::*;
        verifier
            .visit_table(pos)?
            .visit_union::<u8, _>(
                "record_type",
                Self::VT_RECORD_TYPE,
                "record",
                Self::VT_RECORD,
                false,
                |key, v, pos| {
                    match key {
                        CLUSTER_CREATED => {
                            v.verify_union_variant::<ForwardsUOffset<ClusterCreated>>("ClusterCreated", pos)
                        }
                        TOPIC_CREATED => v.verify_union_variant::<ForwardsUOffset<TopicCreated>>("TopicCreated", pos),
                        PARTITIONS_CREATED => {
                            v.verify_union_variant::<ForwardsUOffset<PartitionsCreated>>("PartitionsCreated", pos)
                        }
                        TOPIC_DELETED => v.verify_union_variant::<ForwardsUOffset<TopicDeleted>>("TopicDeleted", pos),
                        TOPIC_CONFIGS_SET => {
                            v.verify_union_variant::<ForwardsUOffset<TopicConfigsSet>>("TopicConfigsSet", pos)
                        }
                        BROKER_CONFIGS_SET => {
                            v.verify_union_variant::<ForwardsUOffset<BrokerConfigsSet>>("BrokerConfigsSet", pos)
                        }
                        PRODUCER_IDS_ALLOCATED => {
                            v.verify_union_variant::<ForwardsUOffset<ProducerIdsAllocated>>("ProducerIdsAllocated", pos)
                        }
                        // Unknown types are reported by the decoder, which can
                        // name them; the accessor never follows their value.
                        _ => Ok(()),
                    }
                },
            )?
            .finish();
        Ok(())
    }
}

impl<'a> RecordEntry<'a> {
    pub(super) const VT_RECORD_TYPE: VOffsetT = 4;
    pub(super) const VT_RECORD: VOffsetT = 6;

    pub(super) fn record(&self) -> RecordRef<'a> {
        use record_type::*;
        // Safety: the verifier checked this slot as a u8.
        let key = unsafe { self.table.get::<u8>(Self::VT_RECORD_TYPE, Some(0)) }.unwrap_or(0);
        match key {
            0 => RecordRef::Missing,
            CLUSTER_CREATED => self.variant().map_or(RecordRef::Missing, RecordRef::ClusterCreated),
            TOPIC_CREATED => self.variant().map_or(RecordRef::Missing, RecordRef::TopicCreated),
            PARTITIONS_CREATED => self.variant().map_or(RecordRef::Missing, RecordRef::PartitionsCreated),
            TOPIC_DELETED => self.variant().map_or(RecordRef::Missing, RecordRef::TopicDeleted),
            TOPIC_CONFIGS_SET => self.variant().map_or(RecordRef::Missing, RecordRef::TopicConfigsSet),
            BROKER_CONFIGS_SET => self.variant().map_or(RecordRef::Missing, RecordRef::BrokerConfigsSet),
            PRODUCER_IDS_ALLOCATED => self.variant().map_or(RecordRef::Missing, RecordRef::ProducerIdsAllocated),
            unknown => RecordRef::Unknown(unknown),
        }
    }

    /// The union's value as `T`. Called only from the arm of [`Self::record`]
    /// whose type key selects `T`, which is the type the verifier checked.
    fn variant<T: Follow<'a, Inner = T> + 'a>(&self) -> Option<T> {
        // Safety: see above.
        unsafe { self.table.get::<ForwardsUOffset<T>>(Self::VT_RECORD, None) }
    }
}

/// Verifies `payload` as a `RecordBatch` and returns its root.
pub(super) fn verified_batch(payload: &[u8]) -> Result<RecordBatch<'_>, InvalidFlatbuffer> {
    let options = VerifierOptions {
        // Every table takes at least 4 bytes, so this bound never refuses a
        // well-formed payload, however many partitions one record holds.
        max_tables: payload.len() / 4 + 1,
        ..VerifierOptions::default()
    };
    flatbuffers::root_with_opts::<RecordBatch>(&options, payload)
}
