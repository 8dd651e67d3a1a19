//! Compressing server messages into frames and inflating client messages
//! under a size limit (RFC 7692 section 7.2), on flate2's raw deflate.
//!
//! Compressors: one per thread and window size, created on first use and
//! reset before every message (we never take context over). Inflaters: one
//! per thread for clients that compress every message on its own
//! ([`inflate_alone`]), and a [`Window`] per connection, kept while it is
//! open, for clients that keep context.

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, TAIL};
use crate::ws::{self, OpCode};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// zlib's default level: the lead's measurements may tune it. A message is
/// compressed once however many subscribers receive it.
const LEVEL: u32 = 6;
/// Compressors by window size, `MIN_WINDOW_BITS..=MAX_WINDOW_BITS`.
const WINDOWS: usize = (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1) as usize;

thread_local! {
    static COMPRESSORS: RefCell<[Option<Compress>; WINDOWS]> = RefCell::new(Default::default());
    static SHARED_INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Why a compressed client message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("inflated message is over the limit of {limit} bytes")]
    TooBig { limit: usize },
    #[error("compressed message is not valid deflate data: {0}")]
    Invalid(String),
}

/// The window a message of `len` bytes is compressed with for a client
/// that allows `window_bits`. Without context takeover no match reaches back
/// further than the message's start, so a message no longer than the
/// client's window is the same valid stream at any window: it is compressed
/// with the largest, and one compressed frame serves every client.
pub fn effective_window(len: usize, window_bits: u8) -> u8 {
    let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    if len <= 1 << bits {
        MAX_WINDOW_BITS
    } else {
        bits
    }
}

/// `payload` compressed with a `window_bits` window into a final frame with
/// RSV1 set, or `None` when that would not be smaller than the plain frame
/// (RFC 7692 lets every message choose).
pub fn compress_frame(opcode: OpCode, payload: &[u8], window_bits: u8) -> Option<Bytes> {
    let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let mut compressed = true;
    let frame = ws::encode_compressed(opcode, |out| {
        compressed = with_compressor(bits, |compressor| compress_into(compressor, payload, out)).is_ok();
    });
    (compressed && frame.len() < ws::frame_len(payload.len())).then_some(frame)
}

fn with_compressor<T>(bits: u8, use_it: impl FnOnce(&mut Compress) -> T) -> T {
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let slot = &mut compressors[usize::from(bits - MIN_WINDOW_BITS)];
        let compressor =
            slot.get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(LEVEL), false, bits));
        use_it(compressor)
    })
}

/// Appends `payload`, deflated on its own and sync-flushed, to `out`,
/// without the flush's 00 00 ff ff (section 7.2.1).
fn compress_into(compressor: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> Result<(), InflateError> {
    compressor.reset();
    let (start, base) = (out.len(), compressor.total_in());
    out.reserve(payload.len() / 2 + 64);
    loop {
        let read = (compressor.total_in() - base) as usize;
        let input = payload.get(read..).unwrap_or_default();
        compressor
            .compress_vec(input, out, FlushCompress::Sync)
            .map_err(|error| InflateError::Invalid(error.to_string()))?;
        // A sync flush is complete when it returns with output room left.
        if (compressor.total_in() - base) as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.len() < start + TAIL.len() || out[out.len() - TAIL.len()..] != TAIL {
        return Err(InflateError::Invalid("sync flush did not end with 00 00 ff ff".into()));
    }
    out.truncate(out.len() - TAIL.len());
    Ok(())
}

/// Inflates one message that was compressed on its own (the client offered
/// `client_no_context_takeover`), with the thread's inflater. `payload` is
/// the message's frames' payloads joined; at most `limit` bytes once inflated.
pub fn inflate_alone(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    SHARED_INFLATER.with(|cell| {
        let mut shared = cell.borrow_mut();
        let inflater = shared.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        inflate_message(inflater, payload, limit).map(|(data, _)| data)
    })
}

/// The inflate state of a client that keeps its LZ77 context between
/// messages: its last 32 KiB, needed to read its next message.
#[derive(Debug)]
pub struct Window(Decompress);

impl Window {
    pub fn new() -> Self {
        Window(Decompress::new(false))
    }

    /// Inflates the client's next message, as [`inflate_alone`] does.
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
        let (data, ended) = inflate_message(&mut self.0, payload, limit)?;
        if ended {
            // A final block ends the client's stream; the next message starts a new one.
            self.0.reset(false);
        }
        Ok(data)
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::new()
    }
}

/// Inflates `payload` followed by the tail of section 7.2.2. Returns the
/// data and whether the deflate stream ended (a block with BFINAL set).
fn inflate_message(inflater: &mut Decompress, payload: &[u8], limit: usize) -> Result<(Vec<u8>, bool), InflateError> {
    let mut out = Vec::with_capacity(payload.len().saturating_mul(2).max(256).min(limit.saturating_add(1)));
    let ended = feed(inflater, payload, &mut out, limit)? || feed(inflater, &TAIL, &mut out, limit)?;
    Ok((out, ended))
}

/// Inflates all of `input` into `out`, never letting `out` grow past
/// `limit + 1` bytes. Returns whether the stream ended.
fn feed(inflater: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<bool, InflateError> {
    let too_big = InflateError::TooBig { limit };
    loop {
        if out.len() == out.capacity() {
            let room = limit.saturating_add(1).saturating_sub(out.len());
            if room == 0 {
                return Err(too_big);
            }
            out.reserve_exact(out.capacity().max(256).min(room));
        }
        let (read_before, wrote_before) = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|error| InflateError::Invalid(error.to_string()))?;
        let read = (inflater.total_in() - read_before) as usize;
        input = input.get(read..).unwrap_or_default();
        if out.len() > limit {
            return Err(too_big);
        }
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(true),
            _ if input.is_empty() && room_left => return Ok(false),
            _ if read == 0 && out.len() == wrote_before && room_left => {
                return Err(InflateError::Invalid("inflate made no progress".into()));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
