//! Choosing a permessage-deflate offer from `Sec-WebSocket-Extensions` and
//! writing the answer (RFC 7692 section 7.1).
//!
//! Clients may send several offers, in one header (comma-separated) or in
//! several headers; the first acceptable one wins. An offer we cannot accept
//! (an unknown or repeated parameter, an invalid value, a window under
//! [`MIN_WINDOW_BITS`]) is declined, as section 7.1 requires, and the next
//! one is tried: a bad offer never fails the handshake.

use super::{EXTENSION, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use std::borrow::Cow;

/// The parameters agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The LZ77 window our messages use, in bits (9..=15).
    pub server_window_bits: u8,
    /// The client said it compresses every message on its own, so its
    /// messages need no inflate state kept between them.
    pub client_no_context_takeover: bool,
    /// The offer limited our window: the answer must name the value.
    server_window_named: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the answer.
    pub fn response(&self) -> String {
        let mut out = format!("{EXTENSION}; server_no_context_takeover");
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_window_named {
            out.push_str(&format!("; server_max_window_bits={}", self.server_window_bits));
        }
        out
    }
}

/// Why one permessage-deflate offer was declined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("parameter `{0}` is not defined for a permessage-deflate offer")]
    UnknownParameter(String),
    #[error("parameter `{0}` appears more than once")]
    Repeated(&'static str),
    #[error("parameter `{name}` has an invalid value `{value}`")]
    InvalidValue { name: &'static str, value: String },
    #[error("server_max_window_bits={0} is below the {MIN_WINDOW_BITS} bits zlib can compress with")]
    WindowTooSmall(u8),
}

/// The first acceptable permessage-deflate offer among the values of every
/// `Sec-WebSocket-Extensions` header, in order; `None` when there is none.
pub fn negotiate<'a>(header_values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreed> {
    header_values
        .into_iter()
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| split_unquoted(value, ','))
        .find_map(|extension| parse_offer(extension)?.ok())
}

/// One extension of an offer list: `None` when it is not permessage-deflate,
/// else whether we accept it.
pub fn parse_offer(extension: &str) -> Option<Result<Agreed, OfferError>> {
    let mut parts = split_unquoted(extension, ';').into_iter();
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    Some(accept(parts))
}

/// What the parameters of one offer said.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: bool,
}

fn accept<'a>(parts: impl Iterator<Item = &'a str>) -> Result<Agreed, OfferError> {
    let mut params = Params::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (part.trim(), None),
        };
        params.set(name, value)?;
    }
    // server_no_context_takeover is what we do anyway; client_max_window_bits
    // needs no answer: our inflater has a 32 KiB window and reads any client.
    let _ = (params.server_no_context_takeover, params.client_max_window_bits);
    let server_window_bits = params.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
    if server_window_bits < MIN_WINDOW_BITS {
        return Err(OfferError::WindowTooSmall(server_window_bits));
    }
    Ok(Agreed {
        server_window_bits,
        client_no_context_takeover: params.client_no_context_takeover,
        server_window_named: params.server_max_window_bits.is_some(),
    })
}

impl Params {
    fn set(&mut self, name: &str, value: Option<Cow<'_, str>>) -> Result<(), OfferError> {
        let no_value = |name: &'static str, seen: bool| match (&value, seen) {
            (_, true) => Err(OfferError::Repeated(name)),
            (Some(value), _) => Err(OfferError::InvalidValue { name, value: value.to_string() }),
            (None, false) => Ok(true),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => {
                self.server_no_context_takeover =
                    no_value("server_no_context_takeover", self.server_no_context_takeover)?
            }
            "client_no_context_takeover" => {
                self.client_no_context_takeover =
                    no_value("client_no_context_takeover", self.client_no_context_takeover)?
            }
            "server_max_window_bits" => {
                const NAME: &str = "server_max_window_bits";
                if self.server_max_window_bits.is_some() {
                    return Err(OfferError::Repeated(NAME));
                }
                let value = value.ok_or(OfferError::InvalidValue { name: NAME, value: String::new() })?;
                self.server_max_window_bits = Some(window_bits(NAME, &value)?);
            }
            "client_max_window_bits" => {
                const NAME: &str = "client_max_window_bits";
                if self.client_max_window_bits {
                    return Err(OfferError::Repeated(NAME));
                }
                if let Some(value) = &value {
                    window_bits(NAME, value)?;
                }
                self.client_max_window_bits = true;
            }
            _ => return Err(OfferError::UnknownParameter(name.to_owned())),
        }
        Ok(())
    }
}

/// A window size: `%x31-39 *DIGIT` with a value from 8 to 15 (section 7.1.2).
fn window_bits(name: &'static str, value: &str) -> Result<u8, OfferError> {
    let invalid = || OfferError::InvalidValue { name, value: value.to_owned() };
    if value.starts_with('0') || value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) => Ok(bits),
        _ => Err(invalid()),
    }
}

/// A parameter value with the quotes of a quoted-string and its escapes removed.
fn unquote(value: &str) -> Cow<'_, str> {
    let Some(inner) = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) else {
        return Cow::Borrowed(value);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    Cow::Owned(out)
}

/// Splits at `separator` outside double-quoted strings, skipping empty items
/// (RFC 9110's list rule allows them).
fn split_unquoted(value: &str, separator: char) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                items.push(&value[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.retain(|item| !item.trim().is_empty());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(headers: &[&str]) -> Option<Agreed> {
        negotiate(headers.iter().map(|value| value.as_bytes()))
    }

    #[test]
    fn a_plain_offer_gets_window_15_and_a_minimal_answer() {
        let agreed = agree(&["permessage-deflate"]).expect("accepted");
        assert_eq!(agreed.server_window_bits, 15);
        assert!(!agreed.client_no_context_takeover);
        assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn a_browser_offer_is_accepted_without_limiting_the_client() {
        let agreed = agree(&["permessage-deflate; client_max_window_bits"]).expect("accepted");
        assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn offered_parameters_are_honoured_in_the_answer() {
        let offer = "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; \
                     client_max_window_bits=12; server_no_context_takeover";
        let agreed = agree(&[offer]).expect("accepted");
        assert_eq!(agreed.server_window_bits, 10);
        assert!(agreed.client_no_context_takeover);
        assert_eq!(
            agreed.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
        let quoted = agree(&[r#"permessage-deflate; server_max_window_bits="9""#]).expect("quoted value");
        assert_eq!(quoted.server_window_bits, 9);
    }

    #[test]
    fn the_first_acceptable_offer_wins_across_lists_and_headers() {
        let agreed = agree(&["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8", "foo"]);
        assert_eq!(agreed, None, "8 bits is declined and nothing else is offered");
        let agreed = agree(&[
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        ])
        .expect("the third offer");
        assert_eq!(agreed.server_window_bits, 12);
    }

    #[test]
    fn invalid_offers_are_declined_with_their_reason() {
        let reason = |offer: &str| parse_offer(offer).expect("a permessage-deflate offer").expect_err("declined");
        assert_eq!(reason("permessage-deflate; mystery"), OfferError::UnknownParameter("mystery".into()));
        assert_eq!(
            reason("permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
            OfferError::Repeated("client_no_context_takeover")
        );
        assert_eq!(reason("permessage-deflate; server_max_window_bits=8"), OfferError::WindowTooSmall(8));
        for bad in ["16", "7", "010", "", "abc", "1x", "100"] {
            let offer = format!("permessage-deflate; server_max_window_bits={bad}");
            assert!(matches!(reason(&offer), OfferError::InvalidValue { .. }), "{offer}");
            let offer = format!("permessage-deflate; client_max_window_bits={bad}");
            assert!(matches!(reason(&offer), OfferError::InvalidValue { .. }), "{offer}");
        }
        assert!(matches!(reason("permessage-deflate; server_max_window_bits"), OfferError::InvalidValue { .. }));
        assert!(matches!(reason("permessage-deflate; server_no_context_takeover=1"), OfferError::InvalidValue { .. }));
        assert!(parse_offer("other-extension; a=b").is_none());
    }

    #[test]
    fn quoted_commas_do_not_split_offers() {
        assert_eq!(split_unquoted(r#"a; b="x,y", c"#, ','), vec![r#"a; b="x,y""#, " c"]);
        assert_eq!(split_unquoted(",, a ,", ','), vec![" a "]);
        assert_eq!(unquote(r#""1\5""#), "15");
        assert_eq!(agree(&["permessage-deflate; client_max_window_bits=\"1,5\""]), None);
        assert_eq!(agree(&["PerMessage-Deflate; Server_Max_Window_Bits=11"]).map(|a| a.server_window_bits), Some(11));
    }
}
