//! Framing: every Kafka request and response is a 4-byte big-endian size
//! followed by that many bytes. The size is checked against the configured
//! maximum (Kafka's `socket.request.max.bytes`, 100 MiB by default) before
//! any buffer is sized for the frame, so a lying prefix costs nothing.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::FrameError;

/// Kafka's default `socket.request.max.bytes`.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;
/// Width of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Checks a size prefix: not negative, not zero, not above `size_max`.
pub fn check_size(size: i32, size_max: usize) -> Result<usize, FrameError> {
    if size < 0 {
        return Err(FrameError::NegativeSize { size });
    }
    if size == 0 {
        return Err(FrameError::ZeroSize);
    }
    let size = size as usize;
    if size > size_max {
        return Err(FrameError::TooLarge { size, size_max });
    }
    Ok(size)
}

/// Cuts whole frames off the front of a connection's read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    size_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { size_max: REQUEST_BYTES_MAX_DEFAULT }
    }
}

impl FrameDecoder {
    pub fn new(size_max: usize) -> FrameDecoder {
        FrameDecoder { size_max }
    }

    pub fn size_max(&self) -> usize {
        self.size_max
    }

    /// The next whole frame, without its size prefix, split off the front of
    /// `buf` (zero-copy). `Ok(None)` means more bytes are needed; room for the
    /// rest of the frame is reserved only once its size has been checked.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < SIZE_PREFIX_BYTES {
            return Ok(None);
        }
        let prefix = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let size = check_size(prefix, self.size_max)?;
        let frame_bytes = SIZE_PREFIX_BYTES + size;
        if buf.len() < frame_bytes {
            buf.reserve(frame_bytes - buf.len());
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_BYTES);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sizes_are_refused_before_allocating() {
        // Proves negative, zero and oversized prefixes are errors and that a
        // refused prefix does not make the buffer grow.
        let decoder = FrameDecoder::new(1024);
        for (prefix, expected) in [
            (-1i32, FrameError::NegativeSize { size: -1 }),
            (0, FrameError::ZeroSize),
            (1025, FrameError::TooLarge { size: 1025, size_max: 1024 }),
            (i32::MAX, FrameError::TooLarge { size: i32::MAX as usize, size_max: 1024 }),
        ] {
            let mut buf = BytesMut::from(&prefix.to_be_bytes()[..]);
            let capacity = buf.capacity();
            assert_eq!(decoder.decode(&mut buf), Err(expected));
            assert_eq!(buf.capacity(), capacity, "prefix {prefix} grew the buffer");
        }
    }

    #[test]
    fn frames_are_cut_whole_and_in_order() {
        // Proves partial frames wait for more bytes and back-to-back frames
        // come out one at a time, without their prefixes.
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&3i32.to_be_bytes());
        buf.extend_from_slice(b"ab");
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"c");
        buf.extend_from_slice(&1i32.to_be_bytes());
        buf.extend_from_slice(b"d");
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), Bytes::from_static(b"d"));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
}
