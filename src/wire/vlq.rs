//! VLQ counts ("VLC" in CAD015): unsigned, base-128, most significant group
//! first, high bit = "more bytes follow". Shortest form only, at most 63 bits
//! (9 bytes).
//!
//! Pure functions over byte slices; no allocation, no IO.

use bytes::BufMut;

/// The largest value a VLQ count can carry: 2^63 − 1.
pub const MAX_VALUE: u64 = i64::MAX as u64;

/// The longest encoding: 9 bytes (9 × 7 = 63 bits).
pub const MAX_LEN: usize = 9;

/// Why a VLQ count could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VlqError {
    /// The input ends before the last byte (the one without the high bit).
    #[error("VLQ count is truncated")]
    Truncated,
    /// The first byte is exactly 0x80: a leading zero group, not the shortest form.
    #[error("VLQ count has a superfluous leading zero (0x80)")]
    LeadingZero,
    /// A 10th byte would be needed: more than 63 bits.
    #[error("VLQ count overflows 63 bits")]
    Overflow,
    /// A value above 2^63 − 1 was given to the encoder.
    #[error("value {0} exceeds the VLQ maximum 2^63-1")]
    TooLarge(u64),
}

/// Number of bytes `value` takes when encoded (1 for 0).
#[inline]
pub const fn encoded_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    if bits == 0 { 1 } else { bits.div_ceil(7) }
}

/// Decodes one VLQ count from the start of `buf`.
///
/// Returns the value and the number of bytes it occupied. `Truncated` means
/// "need more bytes" to a streaming caller; the other errors are final.
#[inline]
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VlqError> {
    let first = *buf.first().ok_or(VlqError::Truncated)?;
    if first < 0x80 {
        return Ok((u64::from(first), 1));
    }
    if first == 0x80 {
        return Err(VlqError::LeadingZero);
    }
    let mut value = u64::from(first & 0x7f);
    for i in 1..MAX_LEN {
        let b = *buf.get(i).ok_or(VlqError::Truncated)?;
        value = (value << 7) | u64::from(b & 0x7f);
        if b < 0x80 {
            return Ok((value, i + 1));
        }
    }
    Err(VlqError::Overflow)
}

/// Writes `value` in shortest form. Fails only for values above [`MAX_VALUE`].
#[inline]
pub fn write(out: &mut impl BufMut, value: u64) -> Result<usize, VlqError> {
    if value > MAX_VALUE {
        return Err(VlqError::TooLarge(value));
    }
    let n = encoded_len(value);
    // Byte by byte: a copy of at most 9 bytes through `put_slice` costs a
    // call to memcpy per count, and the send path writes two per message.
    for i in (1..n).rev() {
        out.put_u8(((value >> (7 * i)) & 0x7f) as u8 | 0x80);
    }
    out.put_u8((value & 0x7f) as u8);
    Ok(n)
}

/// Writes the length of an in-memory buffer. Buffer lengths are below
/// `isize::MAX` < 2^63, so this cannot fail.
#[inline]
pub fn write_len(out: &mut impl BufMut, len: usize) -> usize {
    // usize fits in u64 on every supported target and is < 2^63 for real buffers.
    match write(out, len as u64) {
        Ok(n) => n,
        Err(_) => unreachable!("buffer length {len} exceeds 2^63"),
    }
}

/// Encodes `value` into a fresh small array (for tests and constants).
pub fn to_vec(value: u64) -> Result<Vec<u8>, VlqError> {
    let mut v = Vec::with_capacity(MAX_LEN);
    write(&mut v, value)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn issue_vectors() {
        let cases: &[(u64, &str)] = &[
            (0, "00"),
            (127, "7f"),
            (128, "81 00"),
            (255, "81 7f"),
            (16383, "ff 7f"),
            (16384, "81 80 00"),
            (1 << 32, "90 80 80 80 00"),
            (MAX_VALUE, "ff ff ff ff ff ff ff ff 7f"),
            // from the Convex notes
            (163, "81 23"),
            (32768, "82 80 00"),
            (1 << 30, "84 80 80 80 00"),
        ];
        for &(v, bytes) in cases {
            let b = h(bytes);
            assert_eq!(to_vec(v).unwrap(), b, "encode {v}");
            assert_eq!(decode(&b), Ok((v, b.len())), "decode {bytes}");
            assert_eq!(encoded_len(v), b.len());
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(decode(&h("80 00")), Err(VlqError::LeadingZero));
        assert_eq!(decode(&h("ff ff ff ff ff ff ff ff ff 7f")), Err(VlqError::Overflow));
        assert_eq!(decode(&h("81 80 80 80 80 80 80 80 80 00")), Err(VlqError::Overflow));
        assert_eq!(decode(&h("81")), Err(VlqError::Truncated));
        assert_eq!(decode(&h("ff ff")), Err(VlqError::Truncated));
        assert_eq!(decode(&[]), Err(VlqError::Truncated));
        assert_eq!(to_vec(MAX_VALUE + 1), Err(VlqError::TooLarge(MAX_VALUE + 1)));
    }

    proptest! {
        #[test]
        fn round_trip(v in 0..=MAX_VALUE, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut b = to_vec(v).unwrap();
            let n = b.len();
            b.extend_from_slice(&tail);
            prop_assert_eq!(decode(&b), Ok((v, n)));
        }

        #[test]
        fn every_prefix_is_truncated(v in 128..=MAX_VALUE) {
            let b = to_vec(v).unwrap();
            for cut in 0..b.len() {
                prop_assert_eq!(decode(&b[..cut]), Err(VlqError::Truncated));
            }
        }
    }
}
