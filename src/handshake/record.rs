//! Records (node proxy: `NodeMsg { seq, encrypted msg }`): after the
//! handshake each direction has its own AES-256-GCM key; each record is
//! carried in one stream frame (`VLQ(len) ‖ body`) whose body is
//!
//! ```text
//! seq: u64 big-endian ‖ ciphertext ‖ tag (16 bytes)
//! ```
//!
//! `seq` travels explicitly (8 bytes) so that a replayed, late, early or
//! missing record is named as such rather than as a bad tag; it is also the
//! AEAD's additional data and, as `0^32 ‖ seq`, its nonce. It starts at 0
//! and grows by 1 per record in each direction; the receiver accepts only
//! exactly the next one. Any failure is final: the opener stays failed.
//!
//! Pure: no IO, no clock. Sealing writes straight into the caller's output
//! buffer; opening decrypts in place and returns a view of the plaintext.

use bytes::{BufMut, Bytes, BytesMut};

use super::aead::{RecordKey, TAG_LEN};
use crate::wire::vlq;

/// Largest plaintext one record carries: 64 KiB.
pub const MAX_RECORD_PLAINTEXT: usize = 65536;
/// Bytes a record adds to its plaintext: `seq` and the tag.
pub const RECORD_OVERHEAD: usize = 8 + TAG_LEN;
/// Largest record frame body: 65,560 bytes.
pub const MAX_RECORD_BODY: usize = MAX_RECORD_PLAINTEXT + RECORD_OVERHEAD;
/// Header space reserved before a record's plaintext: the frame's VLQ length
/// (at most 3 bytes for bodies up to 65,560) and `seq`.
const RESERVE: usize = 3 + 8;

/// Why a record was rejected. Each one ends the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The body is too short to hold `seq` and a tag.
    #[error("record of {len} bytes is shorter than its 24-byte overhead")]
    TooShort {
        /// Body length.
        len: usize,
    },
    /// A `seq` below the expected one: a replayed or late (reordered) record.
    #[error("record seq {seq} was already received (expected {expected}): replayed or reordered")]
    Replayed {
        /// The record's seq.
        seq: u64,
        /// The seq expected next.
        expected: u64,
    },
    /// A `seq` above the expected one: a record is missing, or this one is early.
    #[error("record seq {seq} skips ahead of {expected}: a record is missing or reordered")]
    Skipped {
        /// The record's seq.
        seq: u64,
        /// The seq expected next.
        expected: u64,
    },
    /// The tag does not verify: the record was altered or not sealed with this key.
    #[error("record seq {seq} failed authentication")]
    BadTag {
        /// The record's seq.
        seq: u64,
    },
    /// An earlier record failed; nothing after it is accepted.
    #[error("the link already failed; no further records are accepted")]
    Failed,
    /// 2^64 records were sealed with one key (a new link is needed).
    #[error("record sequence numbers exhausted")]
    SeqExhausted,
}

/// Seals records for one direction.
#[derive(Debug)]
pub struct Sealer {
    key: RecordKey,
    seq: u64,
}

/// Where an open record starts in the output buffer (see [`Sealer::begin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRecord(usize);

impl OpenRecord {
    /// Plaintext bytes written into this record so far.
    pub fn plaintext_len(&self, out: &BytesMut) -> usize {
        out.len() - self.0 - RESERVE
    }
}

impl Sealer {
    pub(crate) fn new(key: RecordKey) -> Self {
        Sealer { key, seq: 0 }
    }

    /// The seq the next record will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Starts a record at the end of `out`: the caller then appends up to
    /// [`MAX_RECORD_PLAINTEXT`] bytes of plaintext and calls [`Sealer::finish`].
    pub fn begin(&self, out: &mut BytesMut) -> OpenRecord {
        let start = out.len();
        out.put_bytes(0, RESERVE);
        OpenRecord(start)
    }

    /// Seals the record begun at `rec`: fills in its header, encrypts the
    /// plaintext in place and appends the tag.
    pub fn finish(&mut self, out: &mut BytesMut, rec: OpenRecord) -> Result<(), RecordError> {
        let start = rec.0;
        let pt_start = start + RESERVE;
        let pt_len = out.len() - pt_start;
        debug_assert!(pt_len <= MAX_RECORD_PLAINTEXT, "record plaintext over the limit");
        if self.seq == u64::MAX {
            return Err(RecordError::SeqExhausted);
        }
        let body_len = pt_len + RECORD_OVERHEAD;
        let hdr = vlq::encoded_len(body_len as u64);
        // The VLQ takes fewer than 3 bytes for bodies under 16 KiB: close the gap.
        let gap = 3 - hdr;
        if gap > 0 {
            out.copy_within(pt_start.., pt_start - gap);
            out.truncate(out.len() - gap);
        }
        let mut len_buf = [0u8; 3];
        vlq::write_len(&mut &mut len_buf[..], body_len);
        out[start..start + hdr].copy_from_slice(&len_buf[..hdr]);
        let seq_at = start + hdr;
        let seq = self.seq.to_be_bytes();
        out[seq_at..seq_at + 8].copy_from_slice(&seq);
        let tag = self.key.seal(self.seq, &seq, &mut out[seq_at + 8..]);
        out.put_slice(&tag);
        self.seq += 1;
        Ok(())
    }

    /// Seals `plaintext` as one record frame appended to `out`.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), RecordError> {
        let rec = self.begin(out);
        out.put_slice(plaintext);
        self.finish(out, rec)
    }
}

/// Opens records for one direction.
#[derive(Debug)]
pub struct Opener {
    key: RecordKey,
    next: u64,
    failed: bool,
}

impl Opener {
    pub(crate) fn new(key: RecordKey) -> Self {
        Opener { key, next: 0, failed: false }
    }

    /// The seq expected next.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Opens one record frame body in place and returns its plaintext as a
    /// view into the same buffer. Any error is final.
    pub fn open(&mut self, mut body: BytesMut) -> Result<Bytes, RecordError> {
        if self.failed {
            return Err(RecordError::Failed);
        }
        let r = self.open_inner(&mut body);
        if r.is_err() {
            self.failed = true;
        }
        r?;
        let len = body.len();
        Ok(body.freeze().slice(8..len - TAG_LEN))
    }

    fn open_inner(&mut self, body: &mut BytesMut) -> Result<(), RecordError> {
        if body.len() < RECORD_OVERHEAD {
            return Err(RecordError::TooShort { len: body.len() });
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&body[..8]);
        let seq = u64::from_be_bytes(seq_bytes);
        let expected = self.next;
        if seq < expected {
            return Err(RecordError::Replayed { seq, expected });
        }
        if seq > expected {
            return Err(RecordError::Skipped { seq, expected });
        }
        self.key.open(seq, &seq_bytes, &mut body[8..]).map_err(|()| RecordError::BadTag { seq })?;
        self.next += 1;
        Ok(())
    }
}

/// A sealer and the opener for it, keyed with `[key; 32]` — a publicly known
/// key, for tests, fuzzing and benchmarks only.
#[doc(hidden)]
pub fn insecure_fixed_key_pair_for_testing(
    backend: super::AeadBackend,
    key: u8,
) -> Result<(Sealer, Opener), super::aead::BackendUnavailable> {
    let k = [key; 32];
    Ok((Sealer::new(RecordKey::new(backend, &k)?), Opener::new(RecordKey::new(backend, &k)?)))
}
