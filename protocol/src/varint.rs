//! Kafka's variable-length integers, as used inside v2 records: zigzag
//! varints (i32, at most 5 bytes) and varlongs (i64, at most 10 bytes).
//! Decoders take a slice and a position and never read past the slice.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The slice ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
}

impl VarintError {
    pub fn reason(self) -> &'static str {
        match self {
            VarintError::Truncated => "varint runs past the end of the records",
            VarintError::TooLong => "varint is longer than its type allows",
        }
    }
}

#[inline(always)]
fn read_unsigned(bytes: &[u8], at: &mut usize, bytes_max: usize) -> Result<u64, VarintError> {
    // Fast path: most varints inside records (deltas, small lengths) are one
    // byte, and record validation runs once per record at line rate.
    if let Some(&byte) = bytes.get(*at) {
        if byte & 0x80 == 0 {
            *at += 1;
            return Ok(u64::from(byte));
        }
        // Two bytes: lengths up to 8 KiB, the common record size.
        if let Some(&second) = bytes.get(*at + 1) {
            if second & 0x80 == 0 {
                *at += 2;
                return Ok(u64::from(byte & 0x7f) | u64::from(second) << 7);
            }
        }
    }
    let mut value = 0u64;
    for i in 0..bytes_max {
        let Some(&byte) = bytes.get(*at + i) else {
            return Err(VarintError::Truncated);
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *at += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::TooLong)
}

/// Reads a zigzag varint (Kafka's `varint`) at `*at`, advancing `*at`.
#[inline]
pub fn read_varint(bytes: &[u8], at: &mut usize) -> Result<i32, VarintError> {
    let raw = read_unsigned(bytes, at, 5)?;
    if raw > u64::from(u32::MAX) {
        return Err(VarintError::TooLong);
    }
    let raw = raw as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (Kafka's `varlong`) at `*at`, advancing `*at`.
#[inline]
pub fn read_varlong(bytes: &[u8], at: &mut usize) -> Result<i64, VarintError> {
    let raw = read_unsigned(bytes, at, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Appends a zigzag varint.
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends a zigzag varlong.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Encoded size of a zigzag varint.
pub fn varint_len(value: i32) -> usize {
    let raw = ((value << 1) ^ (value >> 31)) as u32;
    (32 - raw.leading_zeros() as usize).max(1).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_at_the_edges() {
        // Proves encoder and decoder agree on every width boundary and sign.
        for value in [0, 1, -1, 63, -64, 64, -65, 8191, -8192, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "length of {value}");
            let mut at = 0;
            assert_eq!(read_varint(&out, &mut at), Ok(value));
            assert_eq!(at, out.len());
        }
        for value in [0i64, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            let mut at = 0;
            assert_eq!(read_varlong(&out, &mut at), Ok(value));
        }
    }

    #[test]
    fn truncated_and_overlong_varints_are_errors() {
        // Proves a damaged varint is reported, never read past the slice.
        let mut at = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut at), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0xff; 6], &mut at), Err(VarintError::TooLong));
        assert_eq!(read_varlong(&[0xff; 11], &mut at), Err(VarintError::TooLong));
        assert_eq!(at, 0, "position is not advanced on error");
    }
}
