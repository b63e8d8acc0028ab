//! A checked cursor over received bytes (after rustls' `Reader`): every read
//! is bounds-checked and failures carry the absolute byte offset.
//!
//! No indexing or `unwrap` on peer data anywhere in the wire layer goes
//! around this type.

use super::error::{DecodeError, DecodeErrorKind};
use super::vlq;

/// Cursor over `buf`; `base` is the absolute offset of `buf[0]` in the input
/// the caller is decoding, so errors name positions a user can find.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Reads stop here (`end <= buf.len()`); callers narrow it to bound a
    /// nested item (an inline child, a cell of at most `max_cell` bytes).
    end: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`, whose first byte is at absolute offset `base`.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, end: buf.len(), base }
    }

    /// The current read limit (relative position).
    #[inline]
    pub fn end(&self) -> usize {
        self.end
    }

    /// Moves the read limit; it never goes past the buffer.
    #[inline]
    pub fn set_end(&mut self, end: usize) {
        self.end = end.min(self.buf.len());
    }

    /// Moves the cursor to relative position `pos` (at most the limit).
    #[inline]
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos.min(self.end);
    }

    /// Position relative to the start of this reader's buffer.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Absolute offset of the cursor in the decoded input.
    #[inline]
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The whole buffer this reader walks over.
    #[inline]
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// An error of `kind` at the current position.
    #[inline]
    pub fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.offset(), kind)
    }

    /// An error of `kind` at relative position `pos`.
    #[inline]
    pub fn err_at(&self, pos: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError::new(self.base + pos, kind)
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf[..self.end].get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.err(DecodeErrorKind::Truncated)),
        }
    }

    /// Looks at the next byte without consuming it.
    #[inline]
    pub fn peek(&self) -> Result<u8, DecodeError> {
        self.buf[..self.end].get(self.pos).copied().ok_or_else(|| self.err(DecodeErrorKind::Truncated))
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(DecodeErrorKind::Truncated));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes the next `N` bytes as an array.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], DecodeError> {
        let s = self.take(N)?;
        // take() returned exactly N bytes.
        Ok(s.try_into().unwrap_or_else(|_| unreachable!()))
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: u64) -> Result<(), DecodeError> {
        if n > self.remaining() as u64 {
            return Err(self.err(DecodeErrorKind::Truncated));
        }
        self.pos += n as usize;
        Ok(())
    }

    /// Reads a big-endian u16.
    #[inline]
    pub fn u16_be(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(*self.array::<2>()?))
    }

    /// Reads a VLQ count (shortest form, at most 63 bits).
    #[inline]
    pub fn vlq(&mut self) -> Result<u64, DecodeError> {
        match vlq::decode(&self.buf[self.pos..self.end]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(e) => Err(self.err(e.into())),
        }
    }
}
