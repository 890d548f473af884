//! Integration and property tests for `protocol::compression`: round trips, decompression bombs,
//! arbitrary and mutated input, snappy's two framings, and byte strings written by other
//! implementations (Python's gzip, python-snappy, python-lz4 and python-zstandard) so that we know
//! we interoperate with more than ourselves.

use std::io::Write;

use proptest::prelude::*;
use protocol::compression::{compress, decompress, Codec, CompressionError};

const MIB: usize = 1 << 20;

/// Deterministic bytes that do not compress: xorshift output.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 1 MiB that looks like a real batch: text records with random keys and an incompressible tail.
fn mixed_mib() -> Vec<u8> {
    let mut data = Vec::with_capacity(MIB);
    let keys = noise(MIB, 7);
    let mut i = 0;
    while data.len() < 3 * MIB / 4 {
        data.extend_from_slice(format!("key={:02x}{:02x} value=order {i} shipped\n", keys[i], keys[i + 1]).as_bytes());
        i += 2;
    }
    let tail = MIB - data.len();
    data.extend_from_slice(&noise(tail, 99));
    data
}

/// 10 MiB of the same few records over and over.
fn compressible_10_mib() -> Vec<u8> {
    b"{\"event\":\"page_view\",\"user\":1234,\"path\":\"/index.html\"}\n"
        .iter()
        .copied()
        .cycle()
        .take(10 * MIB)
        .collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd-length hex fixture");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex fixture")).collect()
}

fn is_too_large(result: &Result<bytes::Bytes, CompressionError>) -> bool {
    matches!(result, Err(CompressionError::TooLarge { .. }))
}

fn is_corrupt(result: &Result<bytes::Bytes, CompressionError>) -> bool {
    matches!(result, Err(CompressionError::Corrupt { .. }))
}

#[test]
fn every_codec_round_trips_empty_tiny_mixed_and_compressible_inputs() {
    // Each codec gives back exactly what it was given, with the limit set to exactly the input's
    // length, from nothing up to 10 MiB; compressible data must actually shrink.
    let inputs: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("one byte", vec![0x5a]),
        ("1 MiB mixed", mixed_mib()),
        ("10 MiB compressible", compressible_10_mib()),
    ];
    for codec in Codec::ALL {
        for (label, input) in &inputs {
            let packed = compress(codec, input).unwrap_or_else(|e| panic!("{codec} {label}: {e}"));
            let unpacked = decompress(codec, &packed, input.len()).unwrap_or_else(|e| panic!("{codec} {label}: {e}"));
            assert!(unpacked == input[..], "{codec} {label}: output differs");
            if codec != Codec::None && input.len() == 10 * MIB {
                assert!(packed.len() < input.len() / 20, "{codec} only shrank 10 MiB to {}", packed.len());
            }
        }
    }
}

#[test]
fn a_64_mib_bomb_is_too_large_under_a_1_mib_limit_for_every_codec() {
    // 64 MiB of zeros compresses to a few kilobytes; with a 1 MiB limit every codec must stop
    // with TooLarge naming the codec and the limit, not allocate 64 MiB.
    let zeros = vec![0u8; 64 * MIB];
    for codec in Codec::ALL {
        let bomb = compress(codec, &zeros).unwrap();
        match decompress(codec, &bomb, MIB) {
            Err(CompressionError::TooLarge { codec: got, output_bytes_max }) => {
                assert_eq!((got, output_bytes_max), (codec, MIB));
                let message = decompress(codec, &bomb, MIB).unwrap_err().to_string();
                assert!(message.contains(codec.name()) && message.contains(&MIB.to_string()), "{message}");
            }
            other => panic!("{codec}: {:?}", other.map(|b| b.len())),
        }
    }
}

/// A valid compressed sample for each codec, to mutate.
fn samples() -> Vec<(Codec, Vec<u8>)> {
    let plain: Vec<u8> = (0..3000u32).flat_map(|i| format!("k{} v{}|", i % 13, i % 101).into_bytes()).collect();
    Codec::ALL.into_iter().map(|codec| (codec, compress(codec, &plain).unwrap().to_vec())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_exceed_the_limit(input in proptest::collection::vec(any::<u8>(), 0..4096), limit in 0usize..65536) {
        // Whatever arrives in a produce request, decompression returns an error or at most
        // `limit` bytes; it never panics.
        for codec in Codec::ALL {
            if let Ok(output) = decompress(codec, &input, limit) {
                prop_assert!(output.len() <= limit, "{} returned {} bytes over a limit of {}", codec, output.len(), limit);
            }
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic_nor_exceed_the_limit(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        limit in 0usize..65536,
    ) {
        // Random bytes rarely get past a format's magic; flipping bytes inside real streams
        // reaches the block decoders, checksums and length fields.
        for (codec, sample) in samples() {
            let mut input = sample.clone();
            for (index, value) in &edits {
                let at = index.index(input.len());
                input[at] = *value;
            }
            if truncate {
                input.truncate(cut.index(input.len() + 1));
            }
            if let Ok(output) = decompress(codec, &input, limit) {
                prop_assert!(output.len() <= limit, "{} returned {} bytes over a limit of {}", codec, output.len(), limit);
            }
        }
    }
}

#[test]
fn xerial_snappy_with_several_blocks_and_raw_snappy_both_decode() {
    // Java producers send xerial-framed blocks and librdkafka sends one raw block; a broker must
    // read both, and a stream made of two concatenated xerial streams too (snappy-java reads it).
    let plain = mixed_mib();
    let mut encoder = snap::raw::Encoder::new();
    let raw = encoder.compress_vec(&plain).unwrap();
    assert_eq!(decompress(Codec::Snappy, &raw, plain.len()).unwrap(), plain);

    let header = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let mut framed = header.to_vec();
    for block in plain.chunks(100_000) {
        let compressed = encoder.compress_vec(block).unwrap();
        framed.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        framed.extend_from_slice(&compressed);
    }
    assert_eq!(decompress(Codec::Snappy, &framed, plain.len()).unwrap(), plain);

    let mut twice = framed.clone();
    twice.extend_from_slice(&framed);
    let doubled = decompress(Codec::Snappy, &twice, 2 * plain.len()).unwrap();
    assert!(doubled[..plain.len()] == plain[..] && doubled[plain.len()..] == plain[..]);
}

#[test]
fn truncated_or_overlong_xerial_block_lengths_are_corrupt() {
    // A stream that ends inside a block length, or whose length runs past the end, is Corrupt
    // and says why.
    let packed = compress(Codec::Snappy, &mixed_mib()).unwrap();
    let first_block = u32::from_be_bytes(packed[16..20].try_into().unwrap()) as usize;
    let next_length_at = 20 + first_block;
    for cut in [17, 18, 19, next_length_at + 2] {
        let result = decompress(Codec::Snappy, &packed[..cut], 2 * MIB);
        match &result {
            Err(CompressionError::Corrupt { codec: Codec::Snappy, reason }) => {
                assert!(reason.contains("truncated xerial block length"), "{reason}")
            }
            other => panic!("cut at {cut}: {:?}", other.as_ref().map(|b| b.len())),
        }
    }
    let result = decompress(Codec::Snappy, &packed[..next_length_at - 1], 2 * MIB);
    assert!(is_corrupt(&result), "block running past the end: {:?}", result.map(|b| b.len()));
}

#[test]
fn the_limit_holds_across_xerial_blocks_before_any_block_is_decoded() {
    // Each block is small, but together they pass the limit: the sum of declared lengths is
    // checked first.
    let packed = compress(Codec::Snappy, &vec![1u8; 4 * MIB]).unwrap();
    assert!(is_too_large(&decompress(Codec::Snappy, &packed, 4 * MIB - 1)));
    assert_eq!(decompress(Codec::Snappy, &packed, 4 * MIB).unwrap().len(), 4 * MIB);
}

// Fixtures written by other implementations. Each decodes to PLAIN, which Python builds as
//     plain = (b"stele interop fixture " * 8) + bytes(range(0, 256, 4))
// and were printed with `.hex()` by the commands above each constant, run with Python 3.11,
// python-snappy 0.7.3, lz4 4.4.5 and zstandard 0.25.0.

fn plain() -> Vec<u8> {
    let mut plain = b"stele interop fixture ".repeat(8);
    plain.extend((0..=255u8).step_by(4));
    plain
}

// gzip.compress(plain, mtime=0)
const GZIP: &str = "1f8b08000000000002032b2e49cd4955c8cc2b492dca2f5048cbac28292d4a55281eb4a20c2c1c3c022212320a2a1a3a\
    062616360e2e1e3e0121113109291939052515350d2d1d3d13a6cc98b360c98a351bb6ecd873e0c8893317aedcb8f3e0\
    c98b371fbefcf80300b15490bbf0000000";

// gzip.compress(plain[:120], mtime=0) + gzip.compress(plain[120:], mtime=0)
const GZIP_TWO_MEMBERS: &str =
    "1f8b08000000000002032b2e49cd4955c8cc2b492dca2f5048cbac28292d4a5528a6b92800fc5def3c780000001f8b08\
    000000000002032bca2f5048cbac28292d4a55282e49cd4955c8cc2b492d2228cac0c2c123202221a3a0a2a163606261\
    e3e0e2e1131012119390929153505251d3d0d2d13361ca8c390b96ac58b361cb8e3d078e9c3873e1ca8d3b0f9ebc78f3\
    e1cb8f3f00fc95d4b078000000";

// snappy.compress(plain)  # raw, unframed: what librdkafka sends
const SNAPPY_RAW: &str =
    "f001547374656c6520696e7465726f70206669787475726520fe1600fe1600661600f03f0004080c1014181c2024282c\
    3034383c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bcc0c4c8ccd0d4d8dce0e4e8ec\
    f0f4f8fc";

// b"\x82SNAPPY\x00" + struct.pack("!ii", 1, 1) + b"".join(
//         struct.pack("!i", len(c)) + c for c in (snappy.compress(plain[i:i + 64]) for i in range(0, 240, 64)))
//     (kafka-python's xerial framing, with 64-byte blocks so that there are four)
const SNAPPY_XERIAL_64_BYTE_BLOCKS: &str =
    "82534e415050590000000001000000010000001b40547374656c6520696e7465726f70206669787475726520a6160000\
    00001b405465207374656c6520696e7465726f7020666978747572a616000000002d4058757265207374656c6520696e\
    7465726f702066697874756216003c0004080c1014181c2024282c3034383c0000003230bc4044484c5054585c606468\
    6c7074787c8084888c9094989ca0a4a8acb0b4b8bcc0c4c8ccd0d4d8dce0e4e8ecf0f4f8fc";

// lz4.frame.compress(plain)  # content size stored; one block, so independent
const LZ4_PYTHON_DEFAULT: &str =
    "04224d186840f000000000000000b95d000000ff077374656c6520696e7465726f70206669787475726520160087f031\
    0004080c1014181c2024282c3034383c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bc\
    c0c4c8ccd0d4d8dce0e4e8ecf0f4f8fc00000000";

// lz4.frame.compress(plain, block_linked=False, store_size=False)  # the frame Kafka Java writes
const LZ4_NO_CONTENT_SIZE: &str =
    "04224d186040825d000000ff077374656c6520696e7465726f70206669787475726520160087f0310004080c1014181c\
    2024282c3034383c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bcc0c4c8ccd0d4d8dc\
    e0e4e8ecf0f4f8fc00000000";

// lz4.frame.compress(plain, block_linked=False, content_checksum=True, block_checksum=True)
const LZ4_ALL_CHECKSUMS: &str =
    "04224d187c40f0000000000000001c5d000000ff077374656c6520696e7465726f70206669787475726520160087f031\
    0004080c1014181c2024282c3034383c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bc\
    c0c4c8ccd0d4d8dce0e4e8ecf0f4f8fc79e96e000000000081930649";

// zstandard.ZstdCompressor(level=3).compress(plain)
const ZSTD_WITH_CONTENT_SIZE: &str =
    "28b52ffd20f0f5020064057374656c6520696e7465726f702066697874757265200004080c1014181c2024282c303438\
    3c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bcc0c4c8ccd0d4d8dce0e4e8ecf0f4f8\
    fc01002e49cd26";

// c = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=False).compressobj()
//     c.compress(plain) + c.flush()  # streamed, no content size: like Java's ZstdOutputStream
const ZSTD_STREAMED_WITH_CHECKSUM: &str =
    "28b52ffd0458f5020064057374656c6520696e7465726f702066697874757265200004080c1014181c2024282c303438\
    3c4044484c5054585c6064686c7074787c8084888c9094989ca0a4a8acb0b4b8bcc0c4c8ccd0d4d8dce0e4e8ecf0f4f8\
    fc01002e49cd26d1106b2f";
#[test]
fn byte_strings_from_other_implementations_decode() {
    // Each fixture was written by a different implementation than ours, in each framing a Kafka
    // client may send; all must decode to the same plain bytes.
    let fixtures = [
        (Codec::Gzip, "GZIP", GZIP),
        (Codec::Gzip, "GZIP_TWO_MEMBERS", GZIP_TWO_MEMBERS),
        (Codec::Snappy, "SNAPPY_RAW", SNAPPY_RAW),
        (Codec::Snappy, "SNAPPY_XERIAL_64_BYTE_BLOCKS", SNAPPY_XERIAL_64_BYTE_BLOCKS),
        (Codec::Lz4, "LZ4_PYTHON_DEFAULT", LZ4_PYTHON_DEFAULT),
        (Codec::Lz4, "LZ4_NO_CONTENT_SIZE", LZ4_NO_CONTENT_SIZE),
        (Codec::Lz4, "LZ4_ALL_CHECKSUMS", LZ4_ALL_CHECKSUMS),
        (Codec::Zstd, "ZSTD_WITH_CONTENT_SIZE", ZSTD_WITH_CONTENT_SIZE),
        (Codec::Zstd, "ZSTD_STREAMED_WITH_CHECKSUM", ZSTD_STREAMED_WITH_CHECKSUM),
    ];
    let plain = plain();
    for (codec, name, hex) in fixtures {
        let output = decompress(codec, &unhex(hex), plain.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(output == plain[..], "{name} decoded to other bytes");
        assert!(is_too_large(&decompress(codec, &unhex(hex), plain.len() - 1)), "{name} ignored the limit");
    }
}

#[test]
fn checksums_written_by_other_implementations_are_verified() {
    // Damaging a byte that only a checksum covers must be caught: the lz4 content and block
    // checksums, the zstd content checksum and the gzip CRC.
    let cases = [
        (Codec::Lz4, "lz4 content checksum", unhex(LZ4_ALL_CHECKSUMS), 1usize),
        (Codec::Zstd, "zstd content checksum", unhex(ZSTD_STREAMED_WITH_CHECKSUM), 1),
        (Codec::Gzip, "gzip CRC32", unhex(GZIP), 8),
    ];
    for (codec, label, mut bytes, from_end) in cases {
        let at = bytes.len() - from_end;
        bytes[at] ^= 0x01;
        let result = decompress(codec, &bytes, MIB);
        assert!(is_corrupt(&result), "{label}: {:?}", result.map(|b| b.len()));
    }
    // The block checksum of the one lz4 block sits just before the end mark and content checksum.
    let mut bytes = unhex(LZ4_ALL_CHECKSUMS);
    let at = bytes.len() - 9;
    bytes[at] ^= 0x01;
    assert!(is_corrupt(&decompress(Codec::Lz4, &bytes, MIB)), "lz4 block checksum");
}

#[test]
fn trailing_garbage_after_a_frame_is_corrupt() {
    // Bytes after the last frame that are not another frame mean the batch is damaged, not that
    // they can be ignored.
    for (codec, hex) in [(Codec::Gzip, GZIP), (Codec::Lz4, LZ4_NO_CONTENT_SIZE), (Codec::Zstd, ZSTD_WITH_CONTENT_SIZE)]
    {
        let mut bytes = unhex(hex);
        bytes.extend_from_slice(b"garbage!");
        assert!(is_corrupt(&decompress(codec, &bytes, MIB)), "{codec}");
    }
}

#[test]
fn concatenated_lz4_and_zstd_frames_decode_in_order() {
    // librdkafka and zstd's own readers accept several frames back to back; so do we, and the
    // limit counts all of them.
    let plain = plain();
    for (codec, hex) in [(Codec::Lz4, LZ4_PYTHON_DEFAULT), (Codec::Zstd, ZSTD_STREAMED_WITH_CHECKSUM)] {
        let mut bytes = unhex(hex);
        bytes.extend_from_slice(&unhex(hex));
        let output = decompress(codec, &bytes, 2 * plain.len()).unwrap();
        assert!(output[..plain.len()] == plain[..] && output[plain.len()..] == plain[..], "{codec}");
        assert!(is_too_large(&decompress(codec, &bytes, 2 * plain.len() - 1)), "{codec}");
    }
}

#[test]
fn a_zstd_frame_declaring_a_huge_window_is_refused_under_a_small_limit() {
    // A frame header alone can make a streaming zstd decoder allocate its declared window; with a
    // small limit, windows past 8 MiB are refused instead of allocated.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.set_parameter(zstd::zstd_safe::CParameter::WindowLog(26)).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(&compressible_10_mib()[..MIB]).unwrap();
    let huge_window = encoder.finish().unwrap();
    match decompress(Codec::Zstd, &huge_window, 2 * MIB) {
        Err(CompressionError::Corrupt { codec: Codec::Zstd, reason }) => {
            assert!(reason.contains("8388608 bytes allowed under a 2097152-byte limit"), "{reason}")
        }
        other => panic!("{:?}", other.map(|b| b.len())),
    }
    // With a limit large enough to need such a window, the same frame decodes.
    assert_eq!(decompress(Codec::Zstd, &huge_window, 64 * MIB).unwrap().len(), MIB);
}
