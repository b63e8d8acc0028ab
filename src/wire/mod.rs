//! The wire format: VLQ counts, CAD3 cells, multi-cell messages and stream
//! frames (CAD003 / CAD015, as `docs/protocol.md` specifies byte for byte).
//!
//! Pure and zero-copy: decoding returns views (`bytes::Bytes` slices) into the
//! received buffer; encoding writes into a caller's buffer. No IO, no clocks,
//! no glommio here — and no panics on any input.
//!
//! Layout: [`vlq`] → [`cell`] (scanner and views) → [`multicell`] →
//! [`message`]; [`frame`] splits a byte stream; [`value`] builds and reads
//! owned values.

pub mod cell;
pub mod error;
pub mod frame;
pub mod hash;
pub mod message;
pub mod multicell;
pub mod reader;
pub mod value;
pub mod vlq;

#[cfg(test)]
mod tests;

pub use cell::{Cell, Child, WireConfig};
pub use error::{DecodeError, DecodeErrorKind, PayloadError};
pub use frame::{FrameDecoder, FrameHeader, write_frame};
pub use hash::{HashAlg, ValueId};
pub use message::{Message, MessageType, encode_message, encode_partial, payload};
pub use multicell::MultiCell;
pub use value::{EncodeError, Encoded, Value, encode, to_value};
