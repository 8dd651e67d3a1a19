//! permessage-deflate (RFC 7692), with no IO: which client offer to accept
//! ([`negotiate`], in `offer`), and the compression of server messages and
//! inflation of client messages (in `codec`).
//!
//! The server always answers `server_no_context_takeover`: every server
//! message is compressed on its own, so one compressed frame is the same
//! bytes for every subscriber that negotiated the same window, and no
//! connection owns a compressor. Compressors live one per thread and window
//! size and are reset before each message.
//!
//! Client messages are inflated whole, once the message is complete (its
//! compressed size is bounded by the decoder's message limit, its inflated
//! size by the same limit). A client that keeps its LZ77 context between
//! messages needs an inflater of its own for as long as it is connected; one
//! that offered `client_no_context_takeover` borrows its thread's.

mod codec;
mod offer;

pub use codec::{compress_frame, effective_window, inflate_alone, InflateError, Window};
pub use offer::{negotiate, parse_offer, Agreed, OfferError};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";
/// The smallest LZ77 window we compress with. RFC 7692 allows 8, but zlib
/// (and zlib-rs) cannot compress raw deflate with a 256-byte window, so an
/// offer that limits us to 8 bits is declined.
pub const MIN_WINDOW_BITS: u8 = 9;
/// The largest LZ77 window: 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The bytes a sync flush ends with, which RFC 7692 section 7.2.1 removes
/// from a compressed message and section 7.2.2 appends before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
