//! A secure link after the handshake: ciphertext bytes in, plaintext frames
//! out; frames in, ciphertext bytes out.
//!
//! The plaintext of consecutive records forms one byte stream that carries
//! stream frames (`VLQ(len) ‖ frame`, docs/protocol.md section 6). A record
//! may hold many frames and a frame may span records, so small messages
//! share one AEAD operation and large ones need no special case. A frame
//! that lies inside one record is handed out as a view of the decrypted
//! buffer; only frames that span records are copied together.
//!
//! Pure: no IO, no clocks. Once the link fails it stays failed.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::record::{MAX_RECORD_BODY, MAX_RECORD_PLAINTEXT, OpenRecord, Opener, RecordError, Sealer};
use crate::wire::{DecodeError, FrameDecoder, vlq};

/// Why a link stopped. Every variant is final.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A record frame was malformed (bad length prefix, over the record limit).
    #[error("bad record frame: {0}")]
    RecordFrame(DecodeError),
    /// A record was rejected (bad tag, replayed, skipped ...).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A plaintext frame was malformed or over the link's frame limit.
    #[error("bad frame inside the records: {0}")]
    Frame(DecodeError),
}

/// First record size of a new link; each record may hold twice the last,
/// up to [`MAX_RECORD_PLAINTEXT`]. Records decrypt only when whole, so a
/// connection that dies early still delivers its first records, and the
/// first message on a fresh link is not held behind 64 KiB of others.
pub const FIRST_RECORD_PLAINTEXT: usize = 1024;

/// One direction pair of an established secure link.
#[derive(Debug)]
pub struct Link {
    sealer: Sealer,
    open: Option<OpenRecord>,
    /// Plaintext limit of the record being filled (slow start).
    record_limit: usize,
    opener: Opener,
    records: FrameDecoder,
    plain: PlainStream,
    failed: Option<LinkError>,
}

impl Link {
    pub(crate) fn new(sealer: Sealer, opener: Opener, max_frame: usize) -> Self {
        Link {
            sealer,
            open: None,
            record_limit: FIRST_RECORD_PLAINTEXT,
            opener,
            records: FrameDecoder::new(MAX_RECORD_BODY),
            plain: PlainStream::new(max_frame),
            failed: None,
        }
    }

    /// The two ends of a link keyed with fixed, publicly known keys — for
    /// tests, fuzzing and benchmarks only; such a link protects nothing.
    #[doc(hidden)]
    pub fn insecure_fixed_key_pair_for_testing(
        backend: super::AeadBackend,
        max_frame: usize,
    ) -> Result<(Link, Link), super::aead::BackendUnavailable> {
        let (s1, o1) = super::record::insecure_fixed_key_pair_for_testing(backend, 0x11)?;
        let (s2, o2) = super::record::insecure_fixed_key_pair_for_testing(backend, 0x22)?;
        Ok((Link::new(s1, o2, max_frame), Link::new(s2, o1, max_frame)))
    }

    /// The largest plaintext frame this link accepts.
    pub fn max_frame(&self) -> usize {
        self.plain.frames.max_frame()
    }

    /// Records sealed so far (the next record's seq).
    pub fn records_sent(&self) -> u64 {
        self.sealer.next_seq()
    }

    /// Records opened so far.
    pub fn records_received(&self) -> u64 {
        self.opener.next_seq()
    }

    fn fail(&mut self, e: LinkError) -> LinkError {
        self.failed = Some(e.clone());
        e
    }

    /// Takes every complete record frame from the front of `buf`, decrypts
    /// it and queues its plaintext. Bytes of an incomplete record stay in
    /// `buf` for the next call.
    pub fn handle_recv(&mut self, buf: &mut BytesMut) -> Result<(), LinkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            let body = match self.records.decode(buf) {
                Ok(Some(b)) => b,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(LinkError::RecordFrame(e))),
            };
            match self.opener.open(body) {
                Ok(plain) => self.plain.push(plain),
                Err(e) => return Err(self.fail(e.into())),
            }
        }
    }

    /// As [`Link::handle_recv`] for ciphertext that arrives as separate
    /// buffers (a ring's provided buffers): `buf` comes after `pending`, the
    /// unparsed start of a record left by earlier calls. Only the bytes that
    /// complete that record are copied, into one allocation sized for the
    /// whole record (its header already checked against the record limit);
    /// the records after it are decrypted where they lie in `buf`, and what
    /// is left of `buf` becomes `pending`. Returns how many bytes were
    /// copied (both parts of a record that spanned the two).
    pub fn handle_recv_buf(&mut self, pending: &mut BytesMut, mut buf: BytesMut) -> Result<usize, LinkError> {
        let mut copied = 0;
        while !pending.is_empty() {
            // Bytes that complete the header, or the record once its header
            // is whole (at least 1, at most one record).
            let want = self.records.wanted(pending);
            let take = want.min(buf.len());
            if pending.capacity() - pending.len() < take {
                copied += pending.len();
                pending.reserve(want);
            }
            pending.extend_from_slice(&buf[..take]);
            copied += take;
            self.handle_recv(pending)?;
            buf.advance(take);
            if buf.is_empty() {
                return Ok(copied);
            }
        }
        *pending = buf;
        self.handle_recv(pending)?;
        Ok(copied)
    }

    /// The next complete plaintext frame, if one has arrived.
    pub fn poll_frame(&mut self) -> Result<Option<Bytes>, LinkError> {
        if let Some(e) = &self.failed {
            // Frames decrypted before the failure are still handed out;
            // nothing after the failure was ever queued.
            if self.plain.is_empty() {
                return Err(e.clone());
            }
        }
        self.plain.next().map_err(|e| self.fail(LinkError::Frame(e)))
    }

    /// Bytes the receiver still needs before the next record completes
    /// (a hint for read sizes; never more than one record).
    pub fn recv_wanted(&self, buf: &[u8]) -> usize {
        self.records.wanted(buf)
    }

    /// Appends one frame (`VLQ(len) ‖ frame`) to the outgoing plaintext,
    /// sealing records into `out` as they fill. Call [`Link::flush`] to seal
    /// the last, partly filled record.
    pub fn send_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), LinkError> {
        let mut hdr = [0u8; vlq::MAX_LEN];
        let n = vlq::write_len(&mut &mut hdr[..], frame.len());
        self.write_plain(&hdr[..n], out)?;
        self.write_plain(frame, out)
    }

    /// As [`Link::send_frame`] for a frame given as several parts (a header
    /// and a payload that already lives elsewhere): no intermediate copy.
    pub fn send_frame_parts(&mut self, parts: &[&[u8]], out: &mut BytesMut) -> Result<(), LinkError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut hdr = [0u8; vlq::MAX_LEN];
        let n = vlq::write_len(&mut &mut hdr[..], len);
        self.write_plain(&hdr[..n], out)?;
        for p in parts {
            self.write_plain(p, out)?;
        }
        Ok(())
    }

    /// Writes `frames` back to back, then flushes: one call per batch.
    pub fn send_frames<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        out: &mut BytesMut,
    ) -> Result<(), LinkError> {
        for f in frames {
            self.send_frame(f, out)?;
        }
        self.flush(out)
    }

    fn write_plain(&mut self, mut data: &[u8], out: &mut BytesMut) -> Result<(), LinkError> {
        while !data.is_empty() {
            let rec = match self.open {
                Some(r) => r,
                None => *self.open.insert(self.sealer.begin(out)),
            };
            let space = self.record_limit - rec.plaintext_len(out);
            let take = space.min(data.len());
            out.put_slice(&data[..take]);
            data = &data[take..];
            if take == space {
                self.seal_open(out)?;
            }
        }
        Ok(())
    }

    /// Seals the open record, if any.
    pub fn flush(&mut self, out: &mut BytesMut) -> Result<(), LinkError> {
        self.seal_open(out)
    }

    fn seal_open(&mut self, out: &mut BytesMut) -> Result<(), LinkError> {
        if let Some(rec) = self.open.take() {
            self.sealer.finish(out, rec)?;
            self.record_limit = (self.record_limit * 2).min(MAX_RECORD_PLAINTEXT);
        }
        Ok(())
    }

    /// Plaintext written but not yet sealed.
    pub fn unflushed(&self, out: &BytesMut) -> usize {
        self.open.map_or(0, |r| r.plaintext_len(out))
    }
}

/// Reassembles plaintext frames from record plaintexts.
#[derive(Debug)]
struct PlainStream {
    chunks: VecDeque<Bytes>,
    len: usize,
    frames: FrameDecoder,
}

impl PlainStream {
    fn new(max_frame: usize) -> Self {
        PlainStream { chunks: VecDeque::new(), len: 0, frames: FrameDecoder::new(max_frame) }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    fn next(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.chunks.is_empty() {
            return Ok(None);
        }
        // The header may straddle chunks: look at up to 9 bytes.
        let mut peek = [0u8; vlq::MAX_LEN];
        let mut n = 0;
        for c in &self.chunks {
            let take = (vlq::MAX_LEN - n).min(c.len());
            peek[n..n + take].copy_from_slice(&c[..take]);
            n += take;
            if n == vlq::MAX_LEN {
                break;
            }
        }
        let Some(h) = self.frames.header(&peek[..n])? else { return Ok(None) };
        if self.len < h.total() {
            return Ok(None);
        }
        self.skip(h.header_len);
        let frame = self.take(h.len);
        self.frames.note_consumed(h.total());
        Ok(Some(frame))
    }

    fn skip(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.len -= n;
        let front = self.chunks.front_mut().map(|f| f.len()).unwrap_or(0);
        if front >= n {
            // The whole frame lies in one record: a view, no copy.
            let Some(f) = self.chunks.front_mut() else { return Bytes::new() };
            let out = f.split_to(n);
            if f.is_empty() {
                self.chunks.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        let mut need = n;
        while need > 0 {
            let Some(f) = self.chunks.front_mut() else { break };
            let take = need.min(f.len());
            out.put_slice(&f[..take]);
            f.advance(take);
            need -= take;
            if f.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}
