//! Hand-written flatbuffers tables, as `flatc --rust` would generate them
//! (no `flatc` is installed): the durable records of the metadata log
//! (`metadata::schema`) and of the coordinators' internal logs
//! (`group::schema`, `txn::schema`) are declared with these macros, next to
//! the schema text in their docs.
//!
//! Soundness: flatbuffers' accessors are `unsafe` because they trust the
//! buffer. A table declared here is meant to be reached only through
//! [`verified_root`], which runs flatbuffers' verifier over the whole buffer
//! first; each table's verifier visits every field its accessors read, with
//! the same type, and a union's verifier checks the variant its type key
//! selects, so an accessor never reads outside the buffer or misreads a
//! field. Modules invoking the macros allow `unsafe_code` for that reason.

use flatbuffers::{Follow, InvalidFlatbuffer, Verifiable, VerifierOptions};

/// A string field.
pub type Str<'a> = flatbuffers::ForwardsUOffset<&'a str>;
/// A `[ubyte]` field.
pub type Bytes<'a> = flatbuffers::ForwardsUOffset<flatbuffers::Vector<'a, u8>>;
/// A vector of tables.
pub type Tables<'a, T> = flatbuffers::ForwardsUOffset<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<T>>>;
/// A vector of scalars.
pub type Scalars<'a, T> = flatbuffers::ForwardsUOffset<flatbuffers::Vector<'a, T>>;

/// Defines a table type: its slot constants, a verifier visiting every field
/// and one accessor per field, all from one list so they cannot disagree. A
/// slot number is the field's position in the schema (`4 + 2 * index`).
macro_rules! flatbuffer_table {
    ($(#[$doc:meta])* $name:ident { $($field:ident / $slot_name:ident : $ty:ty = $slot:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(crate) struct $name<'a> {
            table: ::flatbuffers::Table<'a>,
        }

        impl<'a> ::flatbuffers::Follow<'a> for $name<'a> {
            type Inner = $name<'a>;

            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // Safety: the caller guarantees a table at `loc`; the
                // verifier checked its vtable before any caller got here.
                $name { table: unsafe { ::flatbuffers::Table::new(buf, loc) } }
            }
        }

        impl<'a> ::flatbuffers::Verifiable for $name<'a> {
            fn run_verifier(
                verifier: &mut ::flatbuffers::Verifier,
                pos: usize,
            ) -> Result<(), ::flatbuffers::InvalidFlatbuffer> {
                verifier.visit_table(pos)?
                    $(.visit_field::<$ty>(stringify!($field), Self::$slot_name, false)?)*
                    .finish();
                Ok(())
            }
        }

        #[allow(dead_code)]
        impl<'a> $name<'a> {
            $(pub(crate) const $slot_name: ::flatbuffers::VOffsetT = $slot;)*

            $(
                pub(crate) fn $field(&self) -> Option<<$ty as ::flatbuffers::Follow<'a>>::Inner> {
                    // Safety: `run_verifier` above checked this slot as `$ty`.
                    unsafe { self.table.get::<$ty>(Self::$slot_name, None) }
                }
            )*
        }
    };
}
pub(crate) use flatbuffer_table;

/// Defines a table holding one union field (`table $entry { record: Union; }`,
/// two slots: the type key at 4, the value at 6) and the enum its accessor
/// decodes to: one variant per listed `KEY => Table`, plus `Missing` (type
/// NONE or no value) and `Unknown(key)` (a type this broker does not know,
/// which the verifier leaves alone and the decoder reports by name).
macro_rules! flatbuffer_union {
    ($(#[$doc:meta])* $entry:ident -> $decoded:ident { $($key:path => $variant:ident,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub(crate) struct $entry<'a> {
            table: ::flatbuffers::Table<'a>,
        }

        /// The decoded union of one entry.
        pub(crate) enum $decoded<'a> {
            $($variant($variant<'a>),)*
            Missing,
            Unknown(u8),
        }

        impl<'a> ::flatbuffers::Follow<'a> for $entry<'a> {
            type Inner = $entry<'a>;

            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // Safety: as for the tables of `flatbuffer_table!`.
                $entry { table: unsafe { ::flatbuffers::Table::new(buf, loc) } }
            }
        }

        impl ::flatbuffers::Verifiable for $entry<'_> {
            fn run_verifier(
                verifier: &mut ::flatbuffers::Verifier,
                pos: usize,
            ) -> Result<(), ::flatbuffers::InvalidFlatbuffer> {
                verifier
                    .visit_table(pos)?
                    .visit_union::<u8, _>("record_type", Self::VT_RECORD_TYPE, "record", Self::VT_RECORD, false, |key, v, pos| {
                        match key {
                            $($key => v.verify_union_variant::<::flatbuffers::ForwardsUOffset<$variant>>(stringify!($variant), pos),)*
                            // Unknown types are reported by the decoder; the
                            // accessor never follows their value.
                            _ => Ok(()),
                        }
                    })?
                    .finish();
                Ok(())
            }
        }

        impl<'a> $entry<'a> {
            pub(crate) const VT_RECORD_TYPE: ::flatbuffers::VOffsetT = 4;
            pub(crate) const VT_RECORD: ::flatbuffers::VOffsetT = 6;

            pub(crate) fn record(&self) -> $decoded<'a> {
                // Safety: the verifier checked this slot as a u8.
                let key = unsafe { self.table.get::<u8>(Self::VT_RECORD_TYPE, Some(0)) }.unwrap_or(0);
                match key {
                    0 => $decoded::Missing,
                    $($key => self.variant().map_or($decoded::Missing, $decoded::$variant),)*
                    unknown => $decoded::Unknown(unknown),
                }
            }

            /// The union's value as `T`; called only from the arm of
            /// `record` whose type key selects `T`, the type the verifier
            /// checked.
            fn variant<T: ::flatbuffers::Follow<'a, Inner = T> + 'a>(&self) -> Option<T> {
                // Safety: see above.
                unsafe { self.table.get::<::flatbuffers::ForwardsUOffset<T>>(Self::VT_RECORD, None) }
            }
        }
    };
}
pub(crate) use flatbuffer_union;

/// Verifies `payload` as a `T` and returns its root.
pub(crate) fn verified_root<'a, T>(payload: &'a [u8]) -> Result<T, InvalidFlatbuffer>
where
    T: Follow<'a, Inner = T> + Verifiable + 'a,
{
    let options = VerifierOptions {
        // Every table takes at least 4 bytes, so this bound never refuses a
        // well-formed payload, however many entries one record holds.
        max_tables: payload.len() / 4 + 1,
        ..VerifierOptions::default()
    };
    flatbuffers::root_with_opts::<T>(&options, payload)
}
