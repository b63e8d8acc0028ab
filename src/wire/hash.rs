//! Value IDs: the 32-byte hash of a cell's encoding. BLAKE3 by default,
//! SHA3-256 (FIPS 202, not Keccak) to read and check real Convex data.

use std::fmt;

/// Which hash function turns a cell encoding into its value ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlg {
    /// BLAKE3 (default: fast on large inputs).
    #[default]
    Blake3,
    /// SHA3-256, as Convex uses.
    Sha3_256,
}

impl HashAlg {
    /// The value ID of an encoding.
    #[inline]
    pub fn hash(self, encoding: &[u8]) -> ValueId {
        match self {
            HashAlg::Blake3 => ValueId(*blake3::hash(encoding).as_bytes()),
            HashAlg::Sha3_256 => {
                use sha3::Digest;
                ValueId(sha3::Sha3_256::digest(encoding).into())
            }
        }
    }

    /// Name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Blake3 => "blake3",
            HashAlg::Sha3_256 => "sha3-256",
        }
    }
}

impl std::str::FromStr for HashAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blake3" => Ok(HashAlg::Blake3),
            "sha3-256" | "sha3" => Ok(HashAlg::Sha3_256),
            other => Err(format!("unknown hash '{other}' (expected blake3 or sha3-256)")),
        }
    }
}

/// A 32-byte value ID. Ordered as unsigned bytes, which is the order Map and
/// Set leaves require of their keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueId(pub [u8; 32]);

impl Ord for ValueId {
    /// Byte order, compared as four big-endian words (cheaper than `memcmp`
    /// for 32 bytes, which the decoder does thousands of times per message).
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let w = |b: &[u8; 32], i: usize| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        (0..4).map(|i| w(&self.0, i).cmp(&w(&other.0, i))).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for ValueId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl ValueId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(ValueId(out))
    }

    /// Hex digit `i` (0 = high nibble of byte 0), as hash trees index children.
    pub fn hex_digit(&self, i: usize) -> u8 {
        let b = self.0[i / 2];
        if i % 2 == 0 { b >> 4 } else { b & 0x0f }
    }
}

impl fmt::Debug for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueId({})", self.to_hex())
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convex_hash_vectors() {
        // HashTest.testNullHash: value ID of nil (encoding 00).
        assert_eq!(
            HashAlg::Sha3_256.hash(&[0x00]).to_hex(),
            "5d53469f20fef4f8eab52b88044ede69c77a6a68a60728609fc4a65ff531e7d0"
        );
        // The vector: value ID of false (b0).
        assert_eq!(
            HashAlg::Sha3_256.hash(&[0xb0]).to_hex(),
            "07da05bf823af1825541e8d90acd6ed29e582b8c9fae66fd99bb8ddf458e4454"
        );
    }

    #[test]
    fn order_is_byte_order() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        for i in 0..32 {
            a[i] = 1;
            b[i] = 2;
            assert!(ValueId(a) < ValueId(b), "byte {i}");
            assert_eq!(ValueId(a).cmp(&ValueId(b)), a.cmp(&b));
            b[i] = 1;
            assert_eq!(ValueId(a), ValueId(b));
            a[i] = 0x80;
            assert!(ValueId(a) > ValueId(b));
            a[i] = 1;
        }
    }

    #[test]
    fn hex_digits() {
        let mut id = [0u8; 32];
        id[0] = 0xab;
        let v = ValueId(id);
        assert_eq!((v.hex_digit(0), v.hex_digit(1), v.hex_digit(2)), (0xa, 0xb, 0));
    }
}
