use super::*;
use proptest::prelude::*;

/// Frames a payload the way a client must: masked.
fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Result<Vec<Message>, FrameError> {
    let mut messages = Vec::new();
    loop {
        let decoded = decoder.decode(input)?;
        if decoded.consumed == 0 {
            return Ok(messages);
        }
        input = &input[decoded.consumed..];
        messages.extend(decoded.message);
    }
}

#[test]
fn the_decoder_remembers_the_peer_s_close_only_once_it_is_valid() {
    let mut decoder = Decoder::new(1024);
    decode_all(&mut decoder, &client_frame(true, 1, b"hi", MASK)).expect("text");
    decode_all(&mut decoder, &client_frame(true, 9, b"", MASK)).expect("ping");
    assert!(!decoder.close_received());
    assert!(decode_all(&mut decoder, &client_frame(true, 8, &[0x03], MASK)).is_err(), "a one-byte close");
    assert!(!decoder.close_received(), "an invalid close is a protocol error, not a close");
    decode_all(&mut decoder, &client_frame(true, 8, &1000u16.to_be_bytes(), MASK)).expect("close");
    assert!(decoder.close_received());
}

#[test]
fn decodes_a_masked_text_frame() {
    let frame = client_frame(true, 1, b"Hello", MASK);
    let decoded = Decoder::new(1024).decode(&frame).expect("valid frame");
    assert_eq!(decoded.consumed, frame.len());
    assert_eq!(decoded.message, Some(Message::Text(Bytes::from_static(b"Hello"))));
}

#[test]
fn waits_for_the_rest_of_a_frame() {
    let frame = client_frame(true, 2, &[7u8; 300], MASK);
    let mut decoder = Decoder::new(1024);
    for cut in [0, 1, 2, 3, 7, 299] {
        let decoded = decoder.decode(&frame[..cut]).expect("partial frame is not an error");
        assert_eq!(decoded.consumed, 0, "cut at {cut}");
    }
}

#[test]
fn rejects_unmasked_reserved_and_oversized_frames() {
    let mut unmasked = client_frame(true, 1, b"x", MASK);
    unmasked[1] &= 0x7F;
    assert_eq!(Decoder::new(10).decode(&unmasked), Err(FrameError::Unmasked));

    let mut rsv = client_frame(true, 1, b"x", MASK);
    rsv[0] |= 0x40;
    assert_eq!(Decoder::new(10).decode(&rsv).map(|_| ()), Err(FrameError::ReservedBits(4)));

    let reserved_opcode = client_frame(true, 3, b"x", MASK);
    assert_eq!(Decoder::new(10).decode(&reserved_opcode), Err(FrameError::ReservedOpcode(3)));

    // The limit applies from the header alone, before the payload arrives.
    let big = client_frame(true, 2, &[0u8; 2000], MASK);
    let error = Decoder::new(1000).decode(&big[..8]).expect_err("too big");
    assert_eq!(error.close_code(), CloseCode::TooBig);
}

#[test]
fn assembles_fragments_with_interleaved_ping() {
    let mut input = client_frame(false, 1, "héllo ".as_bytes(), MASK);
    input.extend(client_frame(true, 9, b"are you there", MASK));
    input.extend(client_frame(false, 0, &"wörld".as_bytes()[..2], MASK));
    input.extend(client_frame(true, 0, &"wörld".as_bytes()[2..], MASK));
    let messages = decode_all(&mut Decoder::new(1024), &input).expect("valid");
    assert_eq!(
        messages,
        vec![Message::Ping(Bytes::from_static(b"are you there")), Message::Text(Bytes::from("héllo wörld")),]
    );
}

#[test]
fn enforces_fragmentation_rules() {
    let continuation = client_frame(true, 0, b"x", MASK);
    assert_eq!(Decoder::new(10).decode(&continuation), Err(FrameError::UnexpectedContinuation));

    let mut input = client_frame(false, 1, b"a", MASK);
    input.extend(client_frame(true, 1, b"b", MASK));
    assert_eq!(decode_all(&mut Decoder::new(10), &input), Err(FrameError::ExpectedContinuation));

    let fragmented_ping = client_frame(false, 9, b"", MASK);
    assert_eq!(Decoder::new(10).decode(&fragmented_ping), Err(FrameError::FragmentedControl));

    let long_ping = client_frame(true, 9, &[0u8; 126], MASK);
    assert_eq!(Decoder::new(1000).decode(&long_ping), Err(FrameError::ControlTooLong(126)));

    let mut growing = client_frame(false, 2, &[0u8; 6], MASK);
    growing.extend(client_frame(true, 0, &[0u8; 6], MASK));
    let error = decode_all(&mut Decoder::new(10), &growing).expect_err("over limit");
    assert_eq!(error, FrameError::TooBig { size: 12, limit: 10 });
}

#[test]
fn fails_fast_on_invalid_utf8_in_a_fragment() {
    let first = client_frame(false, 1, &[0xce, 0xba, 0xe1, 0xbd], MASK);
    let mut decoder = Decoder::new(100);
    assert!(decoder.decode(&first).is_ok(), "a split code point is fine so far");
    let bad = client_frame(false, 0, &[0xff], MASK);
    assert_eq!(decoder.decode(&bad), Err(FrameError::InvalidUtf8));
    assert_eq!(FrameError::InvalidUtf8.close_code(), CloseCode::InvalidPayload);
}

#[test]
fn validates_close_frames() {
    let decode = |payload: &[u8]| Decoder::new(100).decode(&client_frame(true, 8, payload, MASK));
    assert_eq!(decode(&[]).map(|d| d.message), Ok(Some(Message::Close(None))));
    assert_eq!(decode(&[3]), Err(FrameError::CloseOneByte));
    assert_eq!(decode(&1005u16.to_be_bytes()), Err(FrameError::InvalidCloseCode(1005)));
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.push(0xff);
    assert_eq!(decode(&bad_reason), Err(FrameError::InvalidCloseReason));
    let mut good = 4000u16.to_be_bytes().to_vec();
    good.extend_from_slice(b"bye");
    let expected = CloseFrame { code: 4000, reason: "bye".into() };
    assert_eq!(decode(&good).map(|d| d.message), Ok(Some(Message::Close(Some(expected)))));
}

#[test]
fn encodes_each_length_form() {
    for (len, header_len) in [(0usize, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let frame = encode(OpCode::Binary, &vec![1u8; len]);
        assert_eq!(frame.len(), header_len + len, "payload {len}");
        assert_eq!(frame[0], 0x82);
    }
    let close = close_frame(CloseCode::SlowConsumer);
    assert_eq!(&close[..4], &[0x88, 2 + 13, 0x0f, 0xa8]);
    assert_eq!(&close[4..], b"slow consumer");
    // An operator's reason is cut to fit a control frame, never inside a character.
    let long = format!("{}é", "x".repeat(122));
    let close = close_frame_with(CloseCode::Kicked, &long);
    assert_eq!(&close[..4], &[0x88, 2 + 122, 0x0f, 0xaa]);
    assert_eq!(&close[4..], "x".repeat(122).as_bytes());
    assert_eq!(truncate_reason("bye"), "bye");
}

proptest! {
    /// Any split of any sequence of valid frames decodes to the same messages.
    #[test]
    fn decoding_is_independent_of_how_bytes_arrive(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        split in 1usize..64,
        mask in any::<[u8; 4]>(),
    ) {
        let mut input = Vec::new();
        for payload in &payloads {
            input.extend(client_frame(true, 2, payload, mask));
        }
        let mut decoder = Decoder::new(1 << 20);
        let mut pending: Vec<u8> = Vec::new();
        let mut messages = Vec::new();
        for chunk in input.chunks(split) {
            pending.extend_from_slice(chunk);
            let mut start = 0;
            loop {
                let decoded = decoder.decode(&pending[start..]).expect("valid");
                if decoded.consumed == 0 { break; }
                start += decoded.consumed;
                messages.extend(decoded.message);
            }
            pending.drain(..start);
        }
        let expected: Vec<Message> =
            payloads.into_iter().map(|p| Message::Binary(Bytes::from(p))).collect();
        prop_assert_eq!(messages, expected);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = Decoder::new(256);
        let _ = decode_all(&mut decoder, &input);
    }
}

/// A text message compressed by a client that keeps no context.
fn deflated(text: &[u8]) -> Vec<u8> {
    let frame = crate::deflate::compress_frame(OpCode::Text, text, 15).expect("compressible");
    let header = if frame[1] & 0x7F == 126 { 4 } else { 2 };
    frame[header..].to_vec()
}

fn deflate_decoder(max: usize) -> Decoder {
    Decoder::new(max).with_deflate(true)
}

#[test]
fn compressed_messages_are_inflated_whole_or_in_fragments() {
    let text = br#"{"op":"send","room":"lobby","body":"hello hello hello hello hello hello"}"#;
    let data = deflated(text);
    let mut single = client_frame(true, 1, &data, MASK);
    single[0] |= 0x40;
    assert_eq!(deflate_decoder(1024).decode(&single).expect("valid").message, Some(Message::Text(text[..].into())));

    let (head, tail) = data.split_at(data.len() / 2);
    let mut stream = client_frame(false, 1, head, MASK);
    stream[0] |= 0x40;
    stream.extend(client_frame(true, 9, b"ping in between", MASK));
    stream.extend(client_frame(true, 0, tail, MASK));
    let messages = decode_all(&mut deflate_decoder(1024), &stream).expect("valid");
    assert_eq!(messages, vec![Message::Ping("ping in between"[..].into()), Message::Text(text[..].into())]);
    // Uncompressed messages still pass on a compressing connection.
    let plain = client_frame(true, 1, b"plain", MASK);
    assert_eq!(deflate_decoder(1024).decode(&plain).expect("valid").message, Some(Message::Text("plain".into())));
}

#[test]
fn rsv1_is_refused_where_rfc_7692_forbids_it() {
    let mut compressed = client_frame(true, 1, &deflated(b"hello hello hello hello"), MASK);
    compressed[0] |= 0x40;
    assert_eq!(Decoder::new(1024).decode(&compressed), Err(FrameError::ReservedBits(4)), "not negotiated");
    let mut ping = client_frame(true, 9, b"", MASK);
    ping[0] |= 0x40;
    assert_eq!(deflate_decoder(1024).decode(&ping), Err(FrameError::CompressedControl));
    let mut stream = client_frame(false, 1, b"abc", MASK);
    let mut continuation = client_frame(true, 0, b"def", MASK);
    continuation[0] |= 0x40;
    stream.extend(continuation);
    assert_eq!(decode_all(&mut deflate_decoder(1024), &stream), Err(FrameError::CompressedContinuation));
    let mut rsv2 = client_frame(true, 1, b"x", MASK);
    rsv2[0] |= 0x60;
    assert_eq!(deflate_decoder(1024).decode(&rsv2), Err(FrameError::ReservedBits(6)));
    for error in [FrameError::CompressedControl, FrameError::CompressedContinuation, FrameError::ReservedBits(4)] {
        assert_eq!(error.close_code(), CloseCode::Protocol);
    }
}

#[test]
fn inflated_text_is_checked_for_utf8_and_size() {
    let invalid = [&[b'a'; 40][..], &[0xff], &[b'a'; 40]].concat();
    let mut bad_utf8 = client_frame(true, 1, &deflated(&invalid), MASK);
    bad_utf8[0] |= 0x40;
    let error = deflate_decoder(1024).decode(&bad_utf8).expect_err("not UTF-8");
    assert_eq!((error.clone(), error.close_code()), (FrameError::InvalidUtf8, CloseCode::InvalidPayload));

    let mut bomb = client_frame(true, 1, &deflated(&[b'a'; 5000]), MASK);
    bomb[0] |= 0x40;
    assert!(bomb.len() < 100);
    let error = deflate_decoder(1000).decode(&bomb).expect_err("over the limit once inflated");
    assert_eq!(error, FrameError::Inflate(crate::deflate::InflateError::TooBig { limit: 1000 }));
    assert_eq!(error.close_code(), CloseCode::TooBig);

    let mut garbage = client_frame(true, 2, &[0xff, 0xee, 0xdd], MASK);
    garbage[0] |= 0x40;
    let error = deflate_decoder(1000).decode(&garbage).expect_err("not deflate");
    assert!(matches!(error, FrameError::Inflate(crate::deflate::InflateError::Invalid(_))), "{error:?}");
    assert_eq!(error.close_code(), CloseCode::InvalidPayload);
}

#[test]
fn only_a_client_that_keeps_context_gets_a_window_of_its_own() {
    let text = br#"{"op":"send","room":"lobby","body":"hello hello hello hello hello hello"}"#;
    let mut frame = client_frame(true, 1, &deflated(text), MASK);
    frame[0] |= 0x40;
    let mut alone = deflate_decoder(1024);
    alone.decode(&frame).expect("valid");
    assert!(!alone.holds_inflate_window());
    let mut context = Decoder::new(1024).with_deflate(false);
    assert!(!context.holds_inflate_window(), "nothing before the first compressed message");
    context.decode(&client_frame(true, 1, b"plain", MASK)).expect("valid");
    assert!(!context.holds_inflate_window(), "nor for plain messages");
    context.decode(&frame).expect("valid");
    assert!(context.holds_inflate_window(), "kept for the client's next message");
    assert!(!context.in_message());
}

#[test]
fn an_idle_decoder_is_two_words() {
    assert_eq!(std::mem::size_of::<Decoder>(), 16);
}
