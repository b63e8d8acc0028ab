//! Stream frames: `VLQ length ‖ frame bytes` (CAD015 "TCP Connections").
//!
//! [`FrameDecoder`] works over a growing receive buffer: "need more bytes"
//! is `Ok(None)`, not an error; the claimed length is checked against the
//! maximum before any of the body is awaited; nothing is reserved because a
//! length field says so; complete frames are split off as `Bytes` views
//! without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, DecodeErrorKind as K};
use super::vlq::{self, VlqError};

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Body length in bytes.
    pub len: usize,
    /// Bytes the VLQ length prefix occupies.
    pub header_len: usize,
}

impl FrameHeader {
    /// Header plus body.
    pub fn total(&self) -> usize {
        self.header_len + self.len
    }
}

/// Splits a byte stream into frames, enforcing a maximum frame size.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame: usize,
    /// Stream offset of the first byte not yet consumed (for error offsets).
    consumed: u64,
}

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder { max_frame, consumed: 0 }
    }

    /// The configured maximum frame body length.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes of the stream consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Parses the header at the start of `buf`: `Ok(None)` if more bytes are
    /// needed to know the length; an error if the length is 0, over the
    /// maximum, or not a canonical VLQ.
    pub fn header(&self, buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        let at = self.consumed as usize;
        match vlq::decode(buf) {
            Ok((0, _)) => Err(DecodeError::new(at, K::EmptyFrame)),
            Ok((len, header_len)) if len > self.max_frame as u64 => {
                let _ = header_len;
                Err(DecodeError::new(at, K::FrameTooLarge { len, max: self.max_frame }))
            }
            Ok((len, header_len)) => Ok(Some(FrameHeader { len: len as usize, header_len })),
            Err(VlqError::Truncated) => Ok(None),
            Err(e) => Err(DecodeError::new(at, e.into())),
        }
    }

    /// Splits the next complete frame's body off the front of `buf`, or
    /// returns `Ok(None)` if `buf` does not yet hold a whole frame.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let Some(h) = self.header(buf)? else {
            return Ok(None);
        };
        if buf.len() < h.total() {
            return Ok(None);
        }
        buf.advance(h.header_len);
        self.consumed += h.total() as u64;
        Ok(Some(buf.split_to(h.len)))
    }

    /// As [`FrameDecoder::decode`], over an immutable buffer.
    pub fn decode_bytes(&mut self, buf: &mut Bytes) -> Result<Option<Bytes>, DecodeError> {
        let Some(h) = self.header(buf)? else {
            return Ok(None);
        };
        if buf.len() < h.total() {
            return Ok(None);
        }
        buf.advance(h.header_len);
        self.consumed += h.total() as u64;
        Ok(Some(buf.split_to(h.len)))
    }

    /// Records that `n` stream bytes were consumed by a caller that split the
    /// frame itself (error offsets stay stream positions).
    pub fn note_consumed(&mut self, n: usize) {
        self.consumed += n as u64;
    }

    /// How many more bytes `buf` needs before the next frame is complete
    /// (at least 1). Bounded by the maximum frame size, so a reader may use
    /// it to size a read without trusting the peer beyond the limit.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        match self.header(buf) {
            Ok(Some(h)) => h.total().saturating_sub(buf.len()).max(1),
            _ => 1,
        }
    }
}

/// Writes `VLQ(len) ‖ body`.
pub fn write_frame(out: &mut impl BufMut, body: &[u8]) {
    vlq::write_len(out, body.len());
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_more_then_frames() {
        let mut d = FrameDecoder::new(1000);
        let mut wire = BytesMut::new();
        write_frame(&mut wire, &[7; 200]);
        write_frame(&mut wire, b"hi");
        let all = wire.split().freeze();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in all.iter() {
            buf.put_u8(b);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f.freeze());
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 200);
        assert_eq!(&got[1][..], b"hi");
        assert_eq!(d.consumed(), all.len() as u64);
    }

    #[test]
    fn limits_checked_before_body() {
        let d = FrameDecoder::new(100);
        // Header claims 2^40 bytes; only the header is present.
        let e = d.header(&[0xa0, 0x80, 0x80, 0x80, 0x80, 0x00]).unwrap_err();
        assert_eq!(e.kind, K::FrameTooLarge { len: 1 << 40, max: 100 });
        assert_eq!(d.header(&[0x00]).unwrap_err().kind, K::EmptyFrame);
        assert_eq!(d.header(&[0x80, 0x01]).unwrap_err().kind, K::VlqLeadingZero);
        assert_eq!(d.header(&[0x81]).unwrap(), None);
        assert_eq!(d.wanted(&[0x40, 1, 2]), 62);
    }

    #[test]
    fn frames_are_views_not_copies() {
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        write_frame(&mut buf, b"abcdef");
        let base = buf.as_ptr() as usize;
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.as_ptr() as usize, base + 1);
    }
}
