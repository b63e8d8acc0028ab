//! AES-256-GCM for records, through one of two backends that produce
//! identical bytes: `aws-lc-rs` (cargo feature `aws-lc`, the default; ~13
//! GB/s per core here) and the pure-Rust `aes-gcm` crate (feature
//! `rustcrypto`; ~1.5 GB/s). Both clear their key schedules when dropped.
//!
//! Nonce: 4 zero bytes ‖ the record's 64-bit sequence number, big-endian
//! (the layout Noise uses for AESGCM).

#[cfg(not(any(feature = "aws-lc", feature = "rustcrypto")))]
compile_error!("enable at least one AEAD backend: feature `aws-lc` or `rustcrypto`");

/// Which implementation seals and opens records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadBackend {
    /// aws-lc-rs (default when compiled in).
    AwsLc,
    /// The pure-Rust `aes-gcm` crate.
    RustCrypto,
}

impl Default for AeadBackend {
    fn default() -> Self {
        if cfg!(feature = "aws-lc") { AeadBackend::AwsLc } else { AeadBackend::RustCrypto }
    }
}

impl AeadBackend {
    /// Backends compiled into this build.
    pub fn available() -> Vec<AeadBackend> {
        let mut v = Vec::new();
        if cfg!(feature = "aws-lc") {
            v.push(AeadBackend::AwsLc);
        }
        if cfg!(feature = "rustcrypto") {
            v.push(AeadBackend::RustCrypto);
        }
        v
    }

    /// Name as configuration and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            AeadBackend::AwsLc => "aws-lc",
            AeadBackend::RustCrypto => "rustcrypto",
        }
    }
}

/// Authentication tag length.
pub const TAG_LEN: usize = 16;

/// The requested backend is not compiled into this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD backend {} is not compiled in (cargo feature)", .0.name())]
pub struct BackendUnavailable(pub AeadBackend);

/// An AES-256-GCM key bound to a backend.
pub(crate) enum RecordKey {
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    #[cfg(feature = "rustcrypto")]
    RustCrypto(Box<aes_gcm::Aes256Gcm>),
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(..)")
    }
}

fn nonce_bytes(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

impl RecordKey {
    pub fn new(backend: AeadBackend, key: &[u8; 32]) -> Result<RecordKey, BackendUnavailable> {
        match backend {
            #[cfg(feature = "aws-lc")]
            AeadBackend::AwsLc => {
                use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
                // A 32-byte key is always valid for AES-256-GCM.
                let k = UnboundKey::new(&AES_256_GCM, key).map_err(|_| BackendUnavailable(backend))?;
                Ok(RecordKey::AwsLc(LessSafeKey::new(k)))
            }
            #[cfg(feature = "rustcrypto")]
            AeadBackend::RustCrypto => {
                use aes_gcm::KeyInit;
                Ok(RecordKey::RustCrypto(Box::new(aes_gcm::Aes256Gcm::new(key.into()))))
            }
            #[allow(unreachable_patterns)]
            _ => Err(BackendUnavailable(backend)),
        }
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal(&self, seq: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let n = nonce_bytes(seq);
        let mut tag = [0u8; TAG_LEN];
        match self {
            #[cfg(feature = "aws-lc")]
            RecordKey::AwsLc(k) => {
                use aws_lc_rs::aead::{Aad, Nonce};
                // Sealing fails only for inputs above GCM's 64 GiB limit; records are 64 KiB.
                if let Ok(t) = k.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(aad), buf) {
                    tag.copy_from_slice(t.as_ref());
                }
            }
            #[cfg(feature = "rustcrypto")]
            RecordKey::RustCrypto(k) => {
                use aes_gcm::aead::AeadInPlace;
                if let Ok(t) = k.encrypt_in_place_detached((&n).into(), aad, buf) {
                    tag.copy_from_slice(&t);
                }
            }
        }
        tag
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place; on success the first
    /// `buf.len() - TAG_LEN` bytes hold the plaintext.
    pub fn open(&self, seq: u64, aad: &[u8], buf: &mut [u8]) -> Result<(), ()> {
        let n = nonce_bytes(seq);
        if buf.len() < TAG_LEN {
            return Err(());
        }
        match self {
            #[cfg(feature = "aws-lc")]
            RecordKey::AwsLc(k) => {
                use aws_lc_rs::aead::{Aad, Nonce};
                k.open_in_place(Nonce::assume_unique_for_key(n), Aad::from(aad), buf).map(drop).map_err(drop)
            }
            #[cfg(feature = "rustcrypto")]
            RecordKey::RustCrypto(k) => {
                use aes_gcm::aead::AeadInPlace;
                let (ct, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
                k.decrypt_in_place_detached((&n).into(), aad, ct, aes_gcm::Tag::from_slice(tag)).map_err(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of compiled backends: seal with one, open with the other.
    #[test]
    fn backends_interoperate() {
        let key = [0x42u8; 32];
        let all = AeadBackend::available();
        assert!(!all.is_empty());
        for &a in &all {
            for &b in &all {
                let (ka, kb) = (RecordKey::new(a, &key).unwrap(), RecordKey::new(b, &key).unwrap());
                for len in [0usize, 1, 64, 1024, 16 * 1024, 65536] {
                    let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let mut buf = plain.clone();
                    let tag = ka.seal(7, b"aad", &mut buf);
                    buf.extend_from_slice(&tag);
                    let mut other = buf.clone();
                    kb.open(7, b"aad", &mut other).unwrap_or_else(|_| panic!("{a:?} -> {b:?} len {len}"));
                    assert_eq!(&other[..len], &plain[..]);
                    // Wrong seq, wrong aad, flipped bit: all rejected.
                    assert!(kb.open(8, b"aad", &mut buf.clone()).is_err());
                    assert!(kb.open(7, b"aae", &mut buf.clone()).is_err());
                    let mut flipped = buf.clone();
                    flipped[len / 2] ^= 1;
                    assert!(kb.open(7, b"aad", &mut flipped).is_err());
                }
            }
        }
    }

    /// Known-answer test: both backends give NIST GCM test case 14's bytes
    /// (AES-256, zero key, zero IV, one zero block).
    #[test]
    fn known_answer() {
        for b in AeadBackend::available() {
            let k = RecordKey::new(b, &[0u8; 32]).unwrap();
            let mut buf = [0u8; 16];
            let tag = k.seal(0, b"", &mut buf);
            assert_eq!(hex::encode(buf), "cea7403d4d606b6e074ec5d3baf39d18", "{b:?}");
            assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919", "{b:?}");
        }
    }
}
