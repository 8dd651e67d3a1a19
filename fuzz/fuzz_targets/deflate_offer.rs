//! `deflate::negotiate` and `deflate::parse_offer` on arbitrary
//! `Sec-WebSocket-Extensions` values.
//!
//! Input: header values separated by newlines (invalid UTF-8 is replaced).
//!
//! Checks: never panics. An agreement has a window of 9 to 15 bits; its
//! answer starts with `permessage-deflate; server_no_context_takeover`, names
//! the window whenever it is under 15, and, read back as an offer, gives the
//! same agreement. The agreement is the first offer, across the values in
//! order, that `parse_offer` accepts; without one, every permessage-deflate
//! offer was declined with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::deflate::{self, parse_offer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let agreed = deflate::negotiate(values.iter().map(|value| value.as_bytes()));
    // The offers one by one, split as plainly as the grammar allows: only
    // values without quotes, where a comma always separates offers.
    let unquoted = !text.contains('"');
    let first = unquoted
        .then(|| values.iter().flat_map(|value| value.split(',')).find_map(|offer| parse_offer(offer)?.ok()))
        .flatten();
    if unquoted {
        assert_eq!(agreed, first, "the first acceptable offer wins");
    }
    let Some(agreed) = agreed else { return };
    assert!((9..=15).contains(&agreed.server_window_bits), "window of {} bits", agreed.server_window_bits);
    let response = agreed.response();
    assert!(response.starts_with("permessage-deflate; server_no_context_takeover"), "{response}");
    if agreed.server_window_bits < 15 {
        assert!(response.ends_with(&format!("server_max_window_bits={}", agreed.server_window_bits)), "{response}");
    }
    assert_eq!(deflate::negotiate([response.as_bytes()]), Some(agreed), "the answer read back: {response}");
});
