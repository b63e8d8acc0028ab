//! Decode errors of the wire layer: every rejection says what was wrong and
//! at which byte offset of the input it was found.
//!
//! All of these mean "the peer sent bad bytes" (they are the peer's fault and
//! final for the message or stream that carried them).

use super::vlq::VlqError;

/// A rejected input: what was wrong ([`DecodeErrorKind`]) and where (`offset`,
/// the byte offset in the input handed to the decoder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset in the decoded input where the problem was detected.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) const fn new(offset: usize, kind: DecodeErrorKind) -> Self {
        DecodeError { offset, kind }
    }
}

/// The reasons an input is rejected. One variant per distinct rule, so that a
/// test can feed a known-bad input and assert the exact rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ends before the item being read is complete.
    #[error("input is truncated")]
    Truncated,
    /// A VLQ count starts with 0x80 (not the shortest form).
    #[error("VLQ count has a leading zero group")]
    VlqLeadingZero,
    /// A VLQ count needs more than 9 bytes / 63 bits.
    #[error("VLQ count overflows 63 bits")]
    VlqOverflow,
    /// The tag byte is reserved or illegal (0x01-0x0f, 0xf0-0xff, ...).
    #[error("illegal tag byte 0x{0:02x}")]
    IllegalTag(u8),
    /// A Ref (0x20) where a whole cell is required (top cell or branch cell).
    #[error("a Ref (0x20) is only valid in a child position")]
    RefNotAllowed,
    /// A Long (0x11-0x18) or BigInt with a redundant leading sign byte.
    #[error("integer is not in its shortest two's-complement form")]
    NonMinimalInteger,
    /// A BigInt whose byte length is below 9 or above 4096.
    #[error("BigInt length {0} is outside 9..=4096")]
    BigIntLength(u64),
    /// A Char (0x3d/0x3e) with a leading zero byte.
    #[error("Char has a leading zero byte")]
    NonMinimalChar,
    /// A Char above U+10FFFF (this includes every 0x3f encoding).
    #[error("Char code point 0x{0:x} is above 0x10ffff")]
    CharOutOfRange(u32),
    /// A Symbol or Keyword name length outside 1..=128.
    #[error("name length {0} is outside 1..=128")]
    NameLength(u8),
    /// A child cell written inline whose encoding is longer than 140 bytes:
    /// it must be a branch referenced by hash.
    #[error("inline child is longer than 140 bytes; such a child must be a Ref")]
    InlineTooLarge,
    /// nil (0x00) where the structure requires a value (tree child, vector
    /// prefix, sparse record field, blob tree child).
    #[error("nil is not allowed in this child position")]
    NilChild,
    /// A tree child or vector prefix that is not the cell its parent
    /// requires: a Blob of the exact length under a Blob/String tree, a
    /// Vector of the exact count under a vector tree or as a prefix, a Map /
    /// Set / Index under a Map / Set / Index tree. Checked for inline
    /// children and for carried branches.
    #[error("tree child is not the cell its parent requires (type or count)")]
    TreeChild,
    /// Map or Set leaf entries not strictly ascending by key value ID.
    #[error("map/set entries are not in strictly ascending key-hash order")]
    KeyOrder,
    /// A Map or Set tree node with a shift above 63.
    #[error("hash tree shift {0} is above 63")]
    TreeShift(u8),
    /// A tree node (Map, Set, Index) with too few children for its form.
    #[error("tree node has {0} children; its form needs more")]
    TreeChildren(u32),
    /// An Index node's entry marker is neither 0x00 nor 0x80.
    #[error("Index entry marker 0x{0:02x} is neither 0x00 nor 0x80")]
    IndexEntryMarker(u8),
    /// An Index node's depth is 64 or more.
    #[error("Index depth {0} is 64 or more")]
    IndexDepth(u8),
    /// Syntax metadata that is neither nil nor a non-empty Map.
    #[error("Syntax metadata must be nil or a non-empty Map")]
    SyntaxMeta,
    /// One cell's encoding is longer than the configured maximum.
    #[error("cell is longer than the maximum of {max} bytes")]
    CellTooLarge {
        /// Configured maximum cell size.
        max: usize,
    },
    /// Bytes left over after a single cell that must stand alone.
    #[error("trailing bytes after the cell")]
    TrailingBytes,
    /// A branch cell's length prefix differs from the length its parse consumed.
    #[error("branch length prefix says {declared} bytes but the cell is {parsed}")]
    BranchLengthMismatch {
        /// Length from the VLQ prefix.
        declared: u64,
        /// Length found by parsing the cell.
        parsed: usize,
    },
    /// A branch cell whose encoding is 140 bytes or less: such a cell is
    /// always embedded inline and never sent as a branch.
    #[error("branch cell is {len} bytes; cells of 140 bytes or less are embedded, not branches")]
    EmbeddedBranch {
        /// Encoding length of the branch cell.
        len: usize,
    },
    /// nil (0x00) as a branch cell.
    #[error("a branch cell may not be nil")]
    NilBranch,
    /// The same branch cell (same value ID) appears twice in one message.
    #[error("duplicate branch cell")]
    DuplicateBranch,
    /// A branch cell that no Ref reachable from the top cell points to.
    #[error("branch cell is not referenced from the top cell")]
    UnreferencedBranch,
    /// More branch cells than the configured maximum.
    #[error("more than {max} branch cells")]
    TooManyBranches {
        /// Configured maximum.
        max: usize,
    },
    /// A message with no bytes at all (no type byte).
    #[error("empty message")]
    EmptyMessage,
    /// A message of a known type whose payload does not have the documented shape.
    #[error("payload of {ty} message: {reason}")]
    BadPayload {
        /// Message type name.
        ty: &'static str,
        /// Which rule of the documented payload shape is broken.
        reason: PayloadError,
    },
    /// A frame whose length prefix exceeds the configured maximum.
    #[error("frame length {len} exceeds the maximum {max}")]
    FrameTooLarge {
        /// Claimed length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
    /// A frame with length 0.
    #[error("empty frame")]
    EmptyFrame,
}

/// How a known message type's payload breaks its documented shape
/// (see `docs/protocol.md`, "Message payloads").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The top cell has the wrong type (e.g. not a Vector).
    #[error("top cell must be {0}")]
    WrongTopCell(&'static str),
    /// The element or field count is not what the type requires.
    #[error("wrong number of elements")]
    WrongCount,
    /// The message ID is not a non-negative Long.
    #[error("message ID must be a non-negative Long")]
    BadId,
    /// The MISSING_DATA hash list is not a Blob of 32·k bytes, 1 <= k <= 128.
    #[error("hash list must be a Blob of 32*k bytes, 1 <= k <= 128")]
    BadHashList,
    /// The RESULT error code is neither nil nor a Keyword.
    #[error("error code must be nil or a Keyword")]
    BadErrorCode,
}

impl From<VlqError> for DecodeErrorKind {
    fn from(e: VlqError) -> Self {
        match e {
            VlqError::Truncated => DecodeErrorKind::Truncated,
            VlqError::LeadingZero => DecodeErrorKind::VlqLeadingZero,
            // TooLarge only arises when encoding; on decode the only other case is overflow.
            VlqError::Overflow | VlqError::TooLarge(_) => DecodeErrorKind::VlqOverflow,
        }
    }
}
