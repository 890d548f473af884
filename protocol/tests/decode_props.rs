//! Property tests: arbitrary bytes into every decoder never panic, and our
//! own decoders (frames, record batches, compression) never allocate more
//! than the input justifies. Builder → view round trips for arbitrary records.
//!
//! This binary runs on mimalloc, as the broker does: `kafka-protocol` 0.18
//! pre-sizes arrays from the count on the wire, which under mimalloc's
//! MAP_NORESERVE mappings only reserves address space (see
//! `lying_array_counts_do_not_take_memory`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use protocol::api::ApiKey;
use protocol::compression::Codec;
use protocol::frame::FrameDecoder;
use protocol::record_batch::{batches, RecordBatch, RecordBatchBuilder};
use protocol::{decode_request, DecodeError};

/// Counts the bytes each thread asks for, so a test can measure what one
/// call allocates while other tests run on other threads.
struct CountingAllocator;

thread_local! {
    static REQUESTED_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = REQUESTED_BYTES.try_with(|count| count.set(count.get().saturating_add(bytes)));
}

#[allow(unsafe_code)]
// Safety: forwards every call unchanged to mimalloc; only counts sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes requested by this thread while `f` ran.
fn requested_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = REQUESTED_BYTES.with(Cell::get);
    let value = f();
    (value, REQUESTED_BYTES.with(Cell::get) - before)
}

/// Every (api key, version) pair the codecs know.
fn api_versions() -> Vec<(ApiKey, i16)> {
    ApiKey::iter()
        .flat_map(|key| {
            let range = key.valid_versions();
            (range.min..=range.max).map(move |version| (key, version))
        })
        .collect()
}

fn request_frame(api_key: ApiKey, version: i16, client_id: Option<&[u8]>, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i16(api_key as i16);
    frame.put_i16(version);
    frame.put_i32(1);
    match client_id {
        None => frame.put_i16(-1),
        Some(id) => {
            frame.put_i16(id.len() as i16);
            frame.put_slice(id);
        }
    }
    if protocol::header::request_header_version(api_key, version) >= 2 {
        frame.put_u8(0);
    }
    frame.put_slice(body);
    frame.freeze()
}

/// A record to push: key, value, timestamp.
type TestRecord = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

fn a_batch(records: &[TestRecord], codec: Codec) -> Bytes {
    let mut builder = RecordBatchBuilder::new(codec);
    for (key, value, timestamp) in records {
        builder.push(*timestamp, key.as_deref(), value.as_deref(), &[(b"h", value.as_deref())]);
    }
    builder.build().unwrap()
}

fn codecs() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::None), Just(Codec::Gzip), Just(Codec::Snappy), Just(Codec::Lz4), Just(Codec::Zstd)]
}

fn records() -> impl Strategy<Value = Vec<TestRecord>> {
    prop::collection::vec(
        (
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
            0i64..1 << 45,
        ),
        1..20,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_panic_a_request_decoder(
        index in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let pairs = api_versions();
        let (api_key, version) = pairs[index.index(pairs.len())];
        if let Err(DecodeError::Malformed { reason, .. }) = decode_request(request_frame(api_key, version, Some(b"props"), &body)) {
            prop_assert_ne!(reason, "decoder panicked");
        }
    }

    #[test]
    fn arbitrary_frames_never_panic_the_decoder(frame in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Err(DecodeError::Malformed { reason, .. }) = decode_request(Bytes::from(frame)) {
            prop_assert_ne!(reason, "decoder panicked");
        }
    }

    #[test]
    fn arbitrary_record_sets_validate_without_panicking_or_allocating(
        set in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        // Uncompressed or garbage: validation is zero-copy, so the only
        // allocations allowed are small error values; a compressed batch may
        // inflate into at most the given limit.
        let limit = 64 * 1024;
        let len = set.len();
        let set = Bytes::from(set);
        let ((), requested) = requested_by(|| {
            for batch in batches(set, 1 << 20) {
                let Ok(batch) = batch else { break };
                let _ = batch.validate(limit);
                if let Ok(records) = batch.records(limit) {
                    for record in records.take(10_000) {
                        let Ok(record) = record else { break };
                        let _ = record.headers().count();
                    }
                }
            }
        });
        prop_assert!(requested <= 2 * limit + len + 4096, "{} bytes requested for a {}-byte set", requested, len);
    }

    #[test]
    fn damaged_batches_are_errors_not_panics(
        recs in records(),
        codec in codecs(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = a_batch(&recs, codec).to_vec();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Ok(batch) = RecordBatch::new(Bytes::from(bytes), 0) {
            let _ = batch.validate(1 << 20);
            if let Ok(records) = batch.records(1 << 20) {
                let _ = records.count();
            }
        }
    }

    #[test]
    fn built_batches_read_back_what_was_pushed(recs in records(), codec in codecs()) {
        let batch = RecordBatch::new(a_batch(&recs, codec), 0).unwrap();
        let summary = batch.validate(1 << 22).unwrap();
        prop_assert_eq!(summary.records_count, recs.len());
        prop_assert!(summary.offset_deltas_consecutive);
        prop_assert_eq!(batch.max_timestamp(), recs.iter().map(|r| r.2).max().unwrap());
        for (record, (key, value, timestamp)) in batch.records(1 << 22).unwrap().zip(&recs) {
            let record = record.unwrap();
            prop_assert_eq!(record.key.as_deref(), key.as_deref());
            prop_assert_eq!(record.value.as_deref(), value.as_deref());
            prop_assert_eq!(batch.base_timestamp() + record.timestamp_delta, *timestamp);
            let header = record.headers().next().unwrap();
            prop_assert_eq!(header.value.as_deref(), value.as_deref());
        }
    }

    #[test]
    fn frames_survive_any_split_of_the_stream(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..100), 1..10),
        cuts in prop::collection::vec(1usize..50, 1..50),
    ) {
        let mut stream = Vec::new();
        for body in &bodies {
            stream.extend_from_slice(&(body.len() as i32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= stream.len() {
                break;
            }
            let end = (at + cut).min(stream.len());
            buf.extend_from_slice(&stream[at..end]);
            at = end;
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                out.push(frame.to_vec());
            }
        }
        prop_assert_eq!(out, bodies);
    }
}

#[test]
fn lying_array_counts_do_not_take_memory() {
    // A Metadata v0 request whose topic array claims i32::MAX entries but
    // holds none. kafka-protocol 0.18 reserves count × entry size up front
    // (upstream PRs #152/#161/#200 propose a bound); under mimalloc that is
    // address space only, so decoding fails cleanly and resident memory does
    // not grow. With glibc's malloc the same request aborts the process.
    let frame = request_frame(ApiKey::Metadata, 0, None, &i32::MAX.to_be_bytes());
    let resident_before = resident_bytes();
    for _ in 0..10 {
        assert!(matches!(decode_request(frame.clone()), Err(DecodeError::Malformed { .. })));
    }
    let grown = resident_bytes().saturating_sub(resident_before);
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}
