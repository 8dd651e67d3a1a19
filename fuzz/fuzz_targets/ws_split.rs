//! Decoding must not depend on how the stream is cut into reads: the whole
//! stream at once, one byte per read and reads of pseudo-random sizes must
//! give the same messages, the same first error (if any) and, without an
//! error, the same undecoded tail and fragmentation state.
//!
//! Input: byte 0 = seed for the read sizes (also bounds them: 1..=byte0/8+1),
//! byte 1 = `max_message` selector, the rest = the byte stream (the same
//! layout as `ws_decoder`, so the two corpora can be shared).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{feed, max_message, Reads};

fuzz_target!(|data: &[u8]| {
    let [seed, selector, stream @ ..] = data else { return };
    let max = max_message(*selector);
    let whole = feed(max, stream, || usize::MAX);
    let bytewise = feed(max, stream, || 1);
    assert_eq!(whole, bytewise, "whole stream vs one byte per read");
    let mut reads = Reads::new(*seed, usize::from(seed >> 3) + 1);
    let split = feed(max, stream, || reads.next_len());
    assert_eq!(whole, split, "whole stream vs random reads");
});
