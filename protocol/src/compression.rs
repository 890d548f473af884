//! Kafka record-batch compression codecs: gzip, snappy, lz4 and zstd.
//!
//! The broker needs this where it must look inside a compressed batch (to validate records or to
//! convert them), and the benchmark client needs it to produce compressed batches the way real
//! producers do. The byte formats follow what Kafka's clients actually send, which is not always
//! the codec's "standard" format:
//!
//! * gzip is an RFC 1952 stream; several concatenated members are accepted, as Java's
//!   `GZIPInputStream` does.
//! * snappy from the Java client is wrapped in snappy-java's ("xerial") framing: the 16-byte header
//!   `82 'S' 'N' 'A' 'P' 'P' 'Y' 00`, version 1 and compatible version 1 (both big-endian `i32`), then
//!   blocks of `[u32 big-endian compressed length][raw snappy block]`. librdkafka sends raw, unframed
//!   snappy instead, and Kafka (through snappy-java's `SnappyInputStream`) accepts both, so both decode
//!   here. We compress with xerial framing, as the Java producer does.
//! * lz4 is the standard LZ4 frame format with independent blocks. Kafka's Java reader rejects
//!   linked (dependent) blocks, so a broker that accepted them would store batches that Java
//!   consumers cannot read; they are rejected here too.
//! * zstd is the standard zstd frame format.
//!
//! Every decompression is bounded by `output_bytes_max`: a batch that would expand past it is a
//! [`CompressionError::TooLarge`] error, found before memory past the limit is allocated. Where the
//! format declares sizes up front (snappy always, lz4 and zstd when the producer wrote a content
//! size) the declaration is checked before anything is allocated; otherwise the output is read in
//! bounded steps that stop at `output_bytes_max + 1` bytes.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use bytes::Bytes;

/// A record batch compression codec, numbered as in bits 0-2 of the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    /// Every codec, in attribute order; handy for tests and for listing what is supported.
    pub const ALL: [Codec; 5] = [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

    /// From record batch attributes bits 0-2; codecs 5-7 are an error.
    pub fn from_attributes(attributes: i16) -> Result<Codec, CompressionError> {
        match attributes & 0x07 {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            codec => Err(CompressionError::UnknownCodec { codec }),
        }
    }

    /// The codec's number in the batch attributes, 0 to 4.
    pub fn id(self) -> i16 {
        self as i16
    }

    /// The codec's name as Kafka's `compression.type` setting spells it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = CompressionError;

    /// Parses Kafka's `compression.type` names, which are lower case there; the topic-level values
    /// `producer` and `uncompressed` are not codecs and belong to the configuration layer.
    fn from_str(name: &str) -> Result<Codec, CompressionError> {
        Codec::ALL
            .into_iter()
            .find(|codec| codec.name() == name)
            .ok_or_else(|| CompressionError::UnknownName { name: name.to_owned() })
    }
}

/// Why a batch could not be compressed or decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// Batch attributes named codec 5, 6 or 7, which Kafka does not define.
    #[error("unknown compression codec {codec} in record batch attributes (Kafka defines 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)")]
    UnknownCodec { codec: i16 },
    /// A `compression.type` name that is not one of the codecs.
    #[error("unknown compression type {name:?}: expected one of none, gzip, snappy, lz4, zstd")]
    UnknownName { name: String },
    /// The input is not valid data for the codec, or uses a feature Kafka's readers refuse.
    #[error("corrupt {codec} data: {reason}")]
    Corrupt { codec: Codec, reason: String },
    /// The output would exceed `output_bytes_max` (a decompression bomb, or a limit set too low).
    #[error("{codec} data decompresses to more than the limit of {output_bytes_max} bytes")]
    TooLarge { codec: Codec, output_bytes_max: usize },
    /// The compressor itself failed; with in-memory buffers this only happens when memory runs out.
    #[error("{codec} compression failed: {reason}")]
    CompressFailed { codec: Codec, reason: String },
}

fn corrupt(codec: Codec, reason: impl Into<String>) -> CompressionError {
    CompressionError::Corrupt { codec, reason: reason.into() }
}

fn too_large(codec: Codec, output_bytes_max: usize) -> CompressionError {
    CompressionError::TooLarge { codec, output_bytes_max }
}

/// Decompresses `input`; the output may never exceed `output_bytes_max` (a decompression bomb is an
/// error, found before allocating past the limit).
pub fn decompress(codec: Codec, input: &[u8], output_bytes_max: usize) -> Result<Bytes, CompressionError> {
    let output = match codec {
        Codec::None => {
            if input.len() > output_bytes_max {
                return Err(too_large(codec, output_bytes_max));
            }
            input.to_vec()
        }
        Codec::Gzip => gzip_decompress(input, output_bytes_max)?,
        Codec::Snappy => snappy_decompress(input, output_bytes_max)?,
        Codec::Lz4 => lz4_decompress(input, output_bytes_max)?,
        Codec::Zstd => zstd_decompress(input, output_bytes_max)?,
    };
    Ok(Bytes::from(output))
}

/// Compresses with the codec's default level, which is Kafka's default: gzip 6 (`Deflater`'s
/// default, Kafka's `compression.gzip.level` of -1), zstd 3 (`compression.zstd.level`), and lz4's
/// fast compressor (what Kafka uses at its default `compression.lz4.level`).
pub fn compress(codec: Codec, input: &[u8]) -> Result<Bytes, CompressionError> {
    let output = match codec {
        Codec::None => input.to_vec(),
        Codec::Gzip => gzip_compress(input)?,
        Codec::Snappy => snappy_compress(input)?,
        Codec::Lz4 => lz4_compress(input)?,
        Codec::Zstd => zstd_compress(input)?,
    };
    Ok(Bytes::from(output))
}

/// Why [`read_bounded`] stopped.
enum BoundedReadError {
    TooLarge,
    Io(io::Error),
}

impl BoundedReadError {
    fn into_compression_error(self, codec: Codec, output_bytes_max: usize) -> CompressionError {
        match self {
            BoundedReadError::TooLarge => too_large(codec, output_bytes_max),
            BoundedReadError::Io(error) => corrupt(codec, error.to_string()),
        }
    }
}

/// The smallest buffer a bounded read starts with, so that tiny outputs do not grow byte by byte.
const READ_CHUNK_MIN: usize = 8 * 1024;

/// Reads a decoder to its end into one buffer that never grows past `limit + 1` bytes: reading one
/// byte past the limit is enough to prove a bomb, so no more is ever allocated. `size_hint` is the
/// expected output size (from the format's own declaration) and sizes the first allocation.
fn read_bounded<R: Read>(mut reader: R, limit: usize, size_hint: usize) -> Result<Vec<u8>, BoundedReadError> {
    let hard_cap = limit.saturating_add(1);
    let first = size_hint.max(READ_CHUNK_MIN).min(hard_cap);
    let mut buffer = Vec::new();
    buffer.reserve_exact(first);
    buffer.resize(first, 0);
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            // The buffer is full. Probe with a small stack buffer before growing, so that an output
            // that exactly fills its declared size is never copied into a doubled buffer just to
            // find its end.
            let mut probe = [0u8; 64];
            let n = read_retrying(&mut reader, &mut probe)?;
            if n == 0 {
                break;
            }
            if filled + n > limit {
                return Err(BoundedReadError::TooLarge);
            }
            let grow_to = filled.saturating_mul(2).max(filled + n).max(READ_CHUNK_MIN).min(hard_cap);
            buffer.reserve_exact(grow_to - buffer.len());
            buffer.resize(grow_to, 0);
            buffer[filled..filled + n].copy_from_slice(&probe[..n]);
            filled += n;
            continue;
        }
        let n = read_retrying(&mut reader, &mut buffer[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
        if filled > limit {
            return Err(BoundedReadError::TooLarge);
        }
    }
    buffer.truncate(filled);
    // A size hint that overstated the output would otherwise pin the unused memory for as long as
    // the caller keeps the batch.
    if buffer.capacity() > filled.saturating_mul(2).max(READ_CHUNK_MIN) {
        buffer.shrink_to_fit();
    }
    Ok(buffer)
}

fn read_retrying<R: Read>(reader: &mut R, buffer: &mut [u8]) -> Result<usize, BoundedReadError> {
    loop {
        match reader.read(buffer) {
            Ok(n) => return Ok(n),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(BoundedReadError::Io(error)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gzip

/// DEFLATE cannot expand data by more than about 1032 to 1, so a gzip trailer that claims more than
/// that is not believed when sizing the first allocation.
const DEFLATE_MAX_EXPANSION: usize = 1032;

fn gzip_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    if input.is_empty() {
        return Err(corrupt(Codec::Gzip, "empty input: a gzip stream is at least 18 bytes"));
    }
    // The trailer's ISIZE is the last member's length modulo 2^32: only a hint.
    let size_hint = match input.len().checked_sub(4).and_then(|start| input.get(start..)) {
        Some(&[a, b, c, d]) => {
            (u32::from_le_bytes([a, b, c, d]) as usize).min(input.len().saturating_mul(DEFLATE_MAX_EXPANSION))
        }
        _ => 0,
    };
    let decoder = flate2::bufread::MultiGzDecoder::new(input);
    read_bounded(decoder, limit, size_hint).map_err(|error| error.into_compression_error(Codec::Gzip, limit))
}

fn gzip_compress(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    let failed = |error: io::Error| CompressionError::CompressFailed { codec: Codec::Gzip, reason: error.to_string() };
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(input.len() / 2 + 64), flate2::Compression::default());
    encoder.write_all(input).map_err(failed)?;
    encoder.finish().map_err(failed)
}

// ---------------------------------------------------------------------------------------------
// snappy

/// snappy-java's magic: the first 8 bytes of its 16-byte stream header.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// The full header snappy-java writes: magic, version 1, minimum compatible version 1.
const XERIAL_HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
/// snappy-java's `SnappyOutputStream` default block size, which Kafka's Java producer uses.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;
/// A snappy element writes at most 64 bytes for 3 bytes of input (a copy with a two-byte offset),
/// so a block can never expand by more than 64/3; 22 rounds that up. A block declaring more is
/// lying, and is rejected before its output is allocated.
const SNAPPY_MAX_EXPANSION: usize = 22;

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    // snappy-java's rule: a stream at least a header long that starts with the magic is framed;
    // anything else is one raw snappy block (what librdkafka sends). An empty input is an empty
    // stream, as `SnappyInputStream` reads it.
    if input.is_empty() {
        return Ok(Vec::new());
    }
    if input.len() >= XERIAL_HEADER.len() && input.starts_with(&XERIAL_MAGIC) {
        return xerial_decompress(input, limit);
    }
    let length = snappy_block_length(input, limit, 0)?;
    let mut output = Vec::new();
    output.reserve_exact(length);
    output.resize(length, 0);
    snappy_block_decompress(input, &mut output)?;
    Ok(output)
}

/// Checks a xerial stream header at the start of `input` and returns its length. snappy-java only
/// insists on the magic and on a version of at least 1.
fn xerial_header(input: &[u8], offset: usize) -> Result<usize, CompressionError> {
    let header = input.get(..XERIAL_HEADER.len()).ok_or_else(|| {
        corrupt(Codec::Snappy, format!("truncated xerial stream header at byte {offset}: {} bytes left", input.len()))
    })?;
    let version = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version < 1 {
        return Err(corrupt(
            Codec::Snappy,
            format!("xerial stream header at byte {offset} has version {version}; snappy-java requires at least 1"),
        ));
    }
    Ok(XERIAL_HEADER.len())
}

/// One block of a xerial stream, located in the input.
struct XerialBlock {
    start: usize,
    end: usize,
    output_len: usize,
}

fn xerial_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    // Two passes, as librdkafka does: the first reads every block's declared length, so that the
    // limit is checked and the output allocated once, exactly, before anything is decompressed.
    let mut blocks = Vec::new();
    let mut position = xerial_header(input, 0)?;
    let mut total = 0usize;
    while position < input.len() {
        let rest = &input[position..];
        // snappy-java reads a second header in the middle of a stream as the start of a
        // concatenated stream; no block length can start with 0x82 (it would exceed 2 GiB).
        if rest.starts_with(&XERIAL_MAGIC) {
            position += xerial_header(rest, position)?;
            continue;
        }
        let length_bytes: [u8; 4] = rest.get(..4).and_then(|bytes| bytes.try_into().ok()).ok_or_else(|| {
            corrupt(
                Codec::Snappy,
                format!(
                    "truncated xerial block length at byte {position}: {} bytes left where 4 are needed",
                    rest.len()
                ),
            )
        })?;
        let block_len = u32::from_be_bytes(length_bytes) as usize;
        let start = position + 4;
        let end = start.checked_add(block_len).filter(|&end| end <= input.len()).ok_or_else(|| {
            corrupt(
                Codec::Snappy,
                format!(
                    "xerial block at byte {position} declares {block_len} compressed bytes but only {} remain",
                    input.len() - start
                ),
            )
        })?;
        let output_len = snappy_block_length(&input[start..end], limit, total)?;
        total += output_len;
        blocks.push(XerialBlock { start, end, output_len });
        position = end;
    }
    let mut output = Vec::new();
    output.reserve_exact(total);
    output.resize(total, 0);
    let mut written = 0;
    for block in blocks {
        snappy_block_decompress(&input[block.start..block.end], &mut output[written..written + block.output_len])?;
        written += block.output_len;
    }
    Ok(output)
}

/// Reads a raw snappy block's declared decompressed length and checks it against what the limit
/// still allows after `already` bytes, and against what the block could possibly expand to.
fn snappy_block_length(block: &[u8], limit: usize, already: usize) -> Result<usize, CompressionError> {
    if block.is_empty() {
        return Err(corrupt(Codec::Snappy, "empty snappy block: a block holds at least its length varint"));
    }
    let length = snap::raw::decompress_len(block).map_err(|error| corrupt(Codec::Snappy, error.to_string()))?;
    if length > limit - already {
        return Err(too_large(Codec::Snappy, limit));
    }
    if length > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(corrupt(
            Codec::Snappy,
            format!("a {}-byte snappy block declares {length} bytes, more than snappy can encode in it", block.len()),
        ));
    }
    Ok(length)
}

/// Decompresses one raw snappy block into `output`, which is exactly its declared length.
fn snappy_block_decompress(block: &[u8], output: &mut [u8]) -> Result<(), CompressionError> {
    let written = snap::raw::Decoder::new()
        .decompress(block, output)
        .map_err(|error| corrupt(Codec::Snappy, error.to_string()))?;
    if written != output.len() {
        return Err(corrupt(
            Codec::Snappy,
            format!("snappy block declared {} bytes but produced {written}", output.len()),
        ));
    }
    Ok(())
}

fn snappy_compress(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    // An empty input is sent as the one-byte raw block for "length 0": every reader takes it
    // (snappy-java and kafka-python read short input as raw snappy), while a xerial stream with no
    // data is refused by librdkafka.
    if input.is_empty() {
        return Ok(vec![0]);
    }
    let failed =
        |error: snap::Error| CompressionError::CompressFailed { codec: Codec::Snappy, reason: error.to_string() };
    let block_bound = snap::raw::max_compress_len(XERIAL_BLOCK_SIZE.min(input.len()));
    let blocks = input.len().div_ceil(XERIAL_BLOCK_SIZE);
    let mut output = Vec::with_capacity(XERIAL_HEADER.len() + blocks * (4 + block_bound));
    output.extend_from_slice(&XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK_SIZE) {
        let length_at = output.len();
        output.extend_from_slice(&[0; 4]);
        let block_at = output.len();
        output.resize(block_at + snap::raw::max_compress_len(chunk.len()), 0);
        let written = encoder.compress(chunk, &mut output[block_at..]).map_err(failed)?;
        output.truncate(block_at + written);
        // A block is at most max_compress_len(32 KiB) bytes, far below u32::MAX.
        output[length_at..block_at].copy_from_slice(&(written as u32).to_be_bytes());
    }
    Ok(output)
}

// ---------------------------------------------------------------------------------------------
// lz4

const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// What a walk over the LZ4 frames found, before any of them is decoded.
struct Lz4Scan {
    /// The declared content size of every frame, when all declared one.
    declared: Option<usize>,
    /// The most the frames can decode to: declared sizes, or full blocks where none is declared.
    bound: usize,
}

/// Walks the frame headers and block lengths without decoding anything. The walk checks the
/// structure Kafka's Java reader insists on (version 1, independent blocks, no dictionary, block
/// size code 4-7), finds a truncated frame (which lz4_flex takes for a clean end when the cut falls
/// between blocks), refuses trailing bytes that are not a frame, and rejects a declared content size
/// over the limit before anything is allocated.
fn lz4_scan(input: &[u8], limit: usize) -> Result<Lz4Scan, CompressionError> {
    let bad = |reason: String| corrupt(Codec::Lz4, reason);
    if input.is_empty() {
        return Err(bad("empty input: an LZ4 frame is at least 7 bytes".into()));
    }
    let mut position = 0;
    let mut declared_total = Some(0usize);
    let mut bound = 0usize;
    while position < input.len() {
        let frame_start = position;
        let header = input
            .get(position..position + 6)
            .ok_or_else(|| bad(format!("truncated LZ4 frame header at byte {frame_start}")))?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if magic != LZ4_FRAME_MAGIC {
            return Err(bad(format!(
                "no LZ4 frame at byte {frame_start}: magic {magic:#010x}, expected {LZ4_FRAME_MAGIC:#010x} (Kafka batches use the LZ4 frame format)"
            )));
        }
        let (flags, block_descriptor) = (header[4], header[5]);
        if flags >> 6 != 1 {
            return Err(bad(format!("LZ4 frame at byte {frame_start} has version {}, only 1 exists", flags >> 6)));
        }
        if flags & 0x02 != 0 || block_descriptor & 0x8F != 0 {
            return Err(bad(format!("LZ4 frame at byte {frame_start} sets reserved descriptor bits")));
        }
        if flags & 0x01 != 0 {
            return Err(bad(format!("LZ4 frame at byte {frame_start} needs a dictionary, which Kafka never uses")));
        }
        if flags & 0x20 == 0 {
            return Err(bad(format!(
                "LZ4 frame at byte {frame_start} uses linked blocks, which Kafka's Java clients cannot read"
            )));
        }
        let block_checksums = flags & 0x10 != 0;
        let has_content_size = flags & 0x08 != 0;
        let content_checksum = flags & 0x04 != 0;
        let size_code = (block_descriptor >> 4) & 0x07;
        if !(4..=7).contains(&size_code) {
            return Err(bad(format!("LZ4 frame at byte {frame_start} has block size code {size_code}, not 4-7")));
        }
        let max_block = 1usize << (2 * size_code + 8);
        position += 6;
        let mut content_size = None;
        if has_content_size {
            let bytes = input
                .get(position..position + 8)
                .ok_or_else(|| bad(format!("truncated LZ4 frame header at byte {frame_start}")))?;
            let mut size = [0u8; 8];
            size.copy_from_slice(bytes);
            let size = u64::from_le_bytes(size);
            let total = (declared_total.unwrap_or(0) as u64).saturating_add(size);
            if size > limit as u64 || total > limit as u64 {
                return Err(too_large(Codec::Lz4, limit));
            }
            content_size = Some(size as usize);
            position += 8;
        }
        // The descriptor checksum byte; lz4_flex verifies it when it decodes.
        if position >= input.len() {
            return Err(bad(format!("truncated LZ4 frame header at byte {frame_start}")));
        }
        position += 1;
        let mut frame_bound = 0usize;
        loop {
            let bytes = input.get(position..position + 4).ok_or_else(|| {
                bad(format!("LZ4 frame at byte {frame_start} is truncated: it ends without its end mark"))
            })?;
            let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            position += 4;
            if word == 0 {
                break;
            }
            let stored = word & 0x8000_0000 != 0;
            let size = (word & 0x7FFF_FFFF) as usize;
            if size == 0 {
                // The reference decoder reads this as an end mark and lz4_flex as an empty block;
                // no encoder writes it, so it is refused rather than guessed at.
                return Err(bad(format!("LZ4 block at byte {} is an empty stored block", position - 4)));
            }
            if size > max_block {
                return Err(bad(format!(
                    "LZ4 block at byte {} is {size} bytes, over the frame's {max_block}-byte block size",
                    position - 4
                )));
            }
            let stored_len = size + if block_checksums { 4 } else { 0 };
            if input.len() - position < stored_len {
                return Err(bad(format!("LZ4 block at byte {} is truncated", position - 4)));
            }
            position += stored_len;
            frame_bound = frame_bound.saturating_add(if stored { size } else { max_block });
        }
        if content_checksum {
            if input.len() - position < 4 {
                return Err(bad(format!("LZ4 frame at byte {frame_start} is truncated before its content checksum")));
            }
            position += 4;
        }
        match content_size {
            Some(size) => {
                declared_total = declared_total.map(|total| total + size);
                bound = bound.saturating_add(size);
            }
            None => {
                declared_total = None;
                bound = bound.saturating_add(frame_bound);
            }
        }
    }
    Ok(Lz4Scan { declared: declared_total, bound })
}

fn lz4_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let scan = lz4_scan(input, limit)?;
    let size_hint = scan.declared.unwrap_or(scan.bound);
    let decoder = Lz4Frames(lz4_flex::frame::FrameDecoder::new(input));
    read_bounded(decoder, limit, size_hint).map_err(|error| error.into_compression_error(Codec::Lz4, limit))
}

/// lz4_flex's decoder returns a zero-length read at the end of each frame, and for a block that
/// decodes to nothing, not only at the end of its input. This reader keeps going until the input
/// itself is used up, so that concatenated frames all decode; each inner read consumes input (a
/// frame header or a block), so the loop always ends.
struct Lz4Frames<'a>(lz4_flex::frame::FrameDecoder<&'a [u8]>);

impl Read for Lz4Frames<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.read(buffer)?;
            if n > 0 || buffer.is_empty() || self.0.get_ref().is_empty() {
                return Ok(n);
            }
        }
    }
}

fn lz4_compress(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    // The frame Kafka's Java producer writes: 64 KiB independent blocks, no checksums and no
    // content size.
    let frame = lz4_flex::frame::FrameInfo::new()
        .block_size(lz4_flex::frame::BlockSize::Max64KB)
        .block_mode(lz4_flex::frame::BlockMode::Independent);
    let failed = |reason: String| CompressionError::CompressFailed { codec: Codec::Lz4, reason };
    let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(frame, Vec::with_capacity(input.len() / 2 + 64));
    encoder.write_all(input).map_err(|error| failed(error.to_string()))?;
    encoder.finish().map_err(|error| failed(error.to_string()))
}

// ---------------------------------------------------------------------------------------------
// zstd

const ZSTD_FRAME_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames use magics 0x184D2A50 to 0x184D2A5F.
const ZSTD_SKIPPABLE_MAGIC_MASK: u32 = 0xFFFF_FFF0;
const ZSTD_SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Kafka's default `compression.zstd.level`, which is also zstd's own default.
const ZSTD_LEVEL: i32 = 3;
/// The smallest window the decoder will always accept: 8 MiB, what RFC 8878 recommends every
/// decoder support, and the most any level up to 19 declares when the producer streams without a
/// content size (as Kafka's Java producer does).
const ZSTD_WINDOW_LOG_FLOOR: u32 = 23;
/// zstd's own default ceiling (128 MiB windows).
const ZSTD_WINDOW_LOG_CEILING: u32 = 27;

/// Walks the zstd frames without decoding them: refuses anything that is not a standard or
/// skippable frame (zstd's pre-1.0 legacy formats included, which no Kafka client writes), finds
/// truncated frames and trailing bytes, and sums the declared content sizes so that a frame
/// declaring more than the limit is refused before anything is allocated.
fn zstd_scan(input: &[u8], limit: usize) -> Result<Option<usize>, CompressionError> {
    if input.is_empty() {
        return Err(corrupt(Codec::Zstd, "empty input: a zstd frame is at least 9 bytes"));
    }
    let mut position = 0;
    let mut declared_total = Some(0usize);
    while position < input.len() {
        let rest = &input[position..];
        let magic = match rest.get(..4) {
            Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            _ => return Err(corrupt(Codec::Zstd, format!("truncated zstd frame at byte {position}"))),
        };
        let skippable = magic & ZSTD_SKIPPABLE_MAGIC_MASK == ZSTD_SKIPPABLE_MAGIC;
        if magic != ZSTD_FRAME_MAGIC && !skippable {
            return Err(corrupt(
                Codec::Zstd,
                format!("no zstd frame at byte {position}: magic {magic:#010x}, expected {ZSTD_FRAME_MAGIC:#010x}"),
            ));
        }
        if !skippable {
            match zstd::zstd_safe::get_frame_content_size(rest) {
                Ok(Some(size)) => {
                    let total = (declared_total.unwrap_or(0) as u64).saturating_add(size);
                    if size > limit as u64 || total > limit as u64 {
                        return Err(too_large(Codec::Zstd, limit));
                    }
                    declared_total = declared_total.map(|total| total + size as usize);
                }
                Ok(None) => declared_total = None,
                Err(_) => return Err(corrupt(Codec::Zstd, format!("unreadable zstd frame header at byte {position}"))),
            }
        }
        let frame_len = zstd::zstd_safe::find_frame_compressed_size(rest).map_err(|code| {
            corrupt(Codec::Zstd, format!("zstd frame at byte {position}: {}", zstd::zstd_safe::get_error_name(code)))
        })?;
        if frame_len == 0 || frame_len > rest.len() {
            return Err(corrupt(Codec::Zstd, format!("zstd frame at byte {position} has no valid length")));
        }
        position += frame_len;
    }
    Ok(declared_total)
}

fn zstd_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
    let declared = zstd_scan(input, limit)?;
    let failed = |error: io::Error| corrupt(Codec::Zstd, error.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(failed)?;
    // The decoder allocates the window a frame declares, whatever it really holds, so the window is
    // capped at what the limit can need, but never below what real producers declare.
    let window_log = (usize::BITS - limit.leading_zeros()).clamp(ZSTD_WINDOW_LOG_FLOOR, ZSTD_WINDOW_LOG_CEILING);
    decoder.window_log_max(window_log).map_err(failed)?;
    let size_hint = declared.unwrap_or_else(|| input.len().saturating_mul(4));
    read_bounded(decoder, limit, size_hint).map_err(|error| match error {
        // zstd's own message ("Frame requires too much memory for decoding") does not say what the
        // cap was or why it is there.
        BoundedReadError::Io(error) if error.to_string().contains("memory") => corrupt(
            Codec::Zstd,
            format!("{error}: its window is over the {} bytes allowed under a {limit}-byte limit", 1u64 << window_log),
        ),
        error => error.into_compression_error(Codec::Zstd, limit),
    })
}

fn zstd_compress(input: &[u8]) -> Result<Vec<u8>, CompressionError> {
    // Single-shot compression writes the content size into the frame header, so readers (ours
    // included) can size their output exactly.
    zstd::bulk::compress(input, ZSTD_LEVEL)
        .map_err(|error| CompressionError::CompressFailed { codec: Codec::Zstd, reason: error.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn sample() -> Vec<u8> {
        (0..100_000u32).flat_map(|i| format!("record {i} value {}\n", i % 97).into_bytes()).collect()
    }

    #[test]
    fn attributes_select_the_codec_from_the_low_three_bits() {
        // Bits above 0-2 (timestamp type, transactional, control) must not change the codec, and
        // codecs 5-7 are refused with their number.
        assert_eq!(Codec::from_attributes(0x0004 | 0x0010 | 0x0020).unwrap(), Codec::Zstd);
        for codec in Codec::ALL {
            assert_eq!(Codec::from_attributes(codec.id() | 0x0008).unwrap(), codec);
        }
        for bad in 5..=7 {
            match Codec::from_attributes(bad) {
                Err(CompressionError::UnknownCodec { codec }) => assert_eq!(codec, bad),
                other => panic!("codec {bad} gave {other:?}"),
            }
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        // The names are Kafka's compression.type spelling, and the error tells the user what is
        // accepted.
        for codec in Codec::ALL {
            assert_eq!(codec.name().parse::<Codec>().unwrap(), codec);
            assert_eq!(codec.to_string(), codec.name());
        }
        let message = "brotli".parse::<Codec>().unwrap_err().to_string();
        assert!(message.contains("brotli") && message.contains("none, gzip, snappy, lz4, zstd"), "{message}");
    }

    #[test]
    fn every_codec_round_trips() {
        // What we compress, we decompress unchanged.
        let data = sample();
        for codec in Codec::ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(decompress(codec, &packed, data.len()).unwrap(), data, "{codec}");
        }
    }

    #[test]
    fn output_exactly_at_the_limit_passes_and_one_byte_over_fails() {
        // The limit is inclusive: output of exactly the limit is accepted, one byte more is
        // TooLarge, for every codec.
        let data = sample();
        for codec in Codec::ALL {
            let packed = compress(codec, &data).unwrap();
            assert_eq!(decompress(codec, &packed, data.len()).unwrap().len(), data.len(), "{codec}");
            match decompress(codec, &packed, data.len() - 1) {
                Err(CompressionError::TooLarge { codec: got, output_bytes_max }) => {
                    assert_eq!((got, output_bytes_max), (codec, data.len() - 1));
                }
                other => panic!("{codec}: {other:?}"),
            }
        }
    }

    #[test]
    fn snappy_is_written_with_the_xerial_header_and_32_kib_blocks() {
        // Java consumers and kafka-python expect exactly this header; the block size is
        // snappy-java's default, so no block is larger than a Java reader expects.
        let data = sample();
        let packed = compress(Codec::Snappy, &data).unwrap();
        assert_eq!(packed[..16], XERIAL_HEADER);
        let first_block = u32::from_be_bytes([packed[16], packed[17], packed[18], packed[19]]) as usize;
        let block = &packed[20..20 + first_block];
        assert_eq!(snap::raw::decompress_len(block).unwrap(), XERIAL_BLOCK_SIZE);
    }

    #[test]
    fn lz4_is_written_as_kafka_java_writes_it() {
        // Version 1 with independent blocks (FLG 0x60) and 64 KiB blocks (BD 0x40): the frame
        // descriptor Kafka's Lz4BlockOutputStream writes.
        let packed = compress(Codec::Lz4, &sample()).unwrap();
        assert_eq!(packed[..4], LZ4_FRAME_MAGIC.to_le_bytes());
        assert_eq!((packed[4], packed[5]), (0x60, 0x40));
    }

    #[test]
    fn zstd_frames_declare_their_content_size() {
        // Our zstd frames carry the content size, so readers can size their output exactly.
        let data = sample();
        let packed = compress(Codec::Zstd, &data).unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&packed).unwrap(), Some(data.len() as u64));
    }

    #[test]
    fn declared_sizes_over_the_limit_are_refused_before_decoding() {
        // A raw snappy block, an lz4 frame and a zstd frame that declare more than the limit are
        // TooLarge from their headers alone: the snappy block is cut after its header to prove
        // that its body is never read.
        let data = vec![7u8; 4 * LIMIT];
        let snappy_raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zstd = compress(Codec::Zstd, &data).unwrap();
        let mut lz4 = Vec::new();
        let frame = lz4_flex::frame::FrameInfo::new().content_size(Some(data.len() as u64));
        let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(frame, &mut lz4);
        encoder.write_all(&data).unwrap();
        encoder.finish().unwrap();
        for (codec, packed) in [(Codec::Snappy, &snappy_raw[..8]), (Codec::Zstd, &zstd[..]), (Codec::Lz4, &lz4[..])] {
            assert!(matches!(decompress(codec, packed, LIMIT), Err(CompressionError::TooLarge { .. })), "{codec}");
        }
    }

    #[test]
    fn a_snappy_block_cannot_claim_more_than_snappy_can_encode() {
        // Five bytes claiming a megabyte are refused as corrupt without allocating the megabyte.
        let mut lying = Vec::new();
        let mut length = LIMIT as u32;
        while length >= 0x80 {
            lying.push((length as u8) | 0x80);
            length >>= 7;
        }
        lying.push(length as u8);
        lying.extend_from_slice(b"\x00a");
        match decompress(Codec::Snappy, &lying, 2 * LIMIT) {
            Err(CompressionError::Corrupt { codec: Codec::Snappy, reason }) => {
                assert!(reason.contains("more than snappy can encode"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linked_lz4_blocks_are_refused_with_the_reason() {
        // Kafka's Java reader rejects dependent blocks; accepting them would store batches that
        // Java consumers cannot read.
        let frame = lz4_flex::frame::FrameInfo::new().block_mode(lz4_flex::frame::BlockMode::Linked);
        let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(frame, Vec::new());
        encoder.write_all(&sample()).unwrap();
        let linked = encoder.finish().unwrap();
        match decompress(Codec::Lz4, &linked, 10 * LIMIT) {
            Err(CompressionError::Corrupt { codec: Codec::Lz4, reason }) => {
                assert!(reason.contains("linked"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_lz4_block_that_decodes_to_nothing_does_not_end_the_frame() {
        // lz4_flex reports such a block as a zero-length read, which would otherwise look like the
        // end of the stream and silently drop the blocks after it.
        let data = sample();
        let packed = compress(Codec::Lz4, &data).unwrap();
        let mut spliced = packed[..7].to_vec();
        spliced.extend_from_slice(&[1, 0, 0, 0, 0x00]);
        spliced.extend_from_slice(&packed[7..]);
        assert_eq!(decompress(Codec::Lz4, &spliced, data.len()).unwrap(), data);
    }

    #[test]
    fn truncated_streams_are_corrupt() {
        // A batch cut anywhere, including exactly between lz4 blocks where lz4_flex alone would
        // see a clean end, is corrupt rather than silently short.
        let data = sample();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let packed = compress(codec, &data).unwrap();
            for cut in [1, 4, 7, 17, packed.len() / 2, packed.len() - 4, packed.len() - 1] {
                match decompress(codec, &packed[..cut], 10 * LIMIT) {
                    Err(CompressionError::Corrupt { .. }) => {}
                    other => panic!("{codec} cut at {cut} of {}: {other:?}", packed.len()),
                }
            }
        }
        // The cut just before the lz4 end mark.
        let packed = compress(Codec::Lz4, &data).unwrap();
        assert!(matches!(
            decompress(Codec::Lz4, &packed[..packed.len() - 4], 10 * LIMIT),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn errors_name_the_codec_and_the_limit() {
        // Operators read these messages in logs; they must say which codec and which limit.
        let packed = compress(Codec::Zstd, &sample()).unwrap();
        let message = decompress(Codec::Zstd, &packed, 1000).unwrap_err().to_string();
        assert!(message.contains("zstd") && message.contains("1000"), "{message}");
        let message = decompress(Codec::Gzip, b"not gzip at all", 1000).unwrap_err().to_string();
        assert!(message.starts_with("corrupt gzip data"), "{message}");
        let message = Codec::from_attributes(6).unwrap_err().to_string();
        assert!(message.contains('6'), "{message}");
    }

    #[test]
    fn empty_inputs_follow_what_kafka_readers_do() {
        // Java's SnappyInputStream reads an empty stream as empty; gzip, lz4 and zstd readers
        // refuse it. Compressing nothing round-trips for every codec.
        assert!(decompress(Codec::None, b"", 0).unwrap().is_empty());
        assert!(decompress(Codec::Snappy, b"", 0).unwrap().is_empty());
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd] {
            assert!(matches!(decompress(codec, b"", LIMIT), Err(CompressionError::Corrupt { .. })), "{codec}");
        }
        for codec in Codec::ALL {
            let packed = compress(codec, b"").unwrap();
            assert!(decompress(codec, &packed, 0).unwrap().is_empty(), "{codec}");
        }
    }

    #[test]
    fn bounded_read_never_grows_past_the_limit_plus_one() {
        // The allocation that detects a bomb is at most one byte over the limit.
        let source = vec![1u8; 100_000];
        match read_bounded(&source[..], 50_000, 0) {
            Err(BoundedReadError::TooLarge) => {}
            _ => panic!("expected TooLarge"),
        }
        let exact = read_bounded(&source[..], 100_000, 100_000).ok().unwrap();
        assert_eq!(exact.len(), 100_000);
        assert!(exact.capacity() <= 100_001);
        let small = read_bounded(&source[..10], 100_000, 0).ok().unwrap();
        assert_eq!(small, &source[..10]);
    }
}
