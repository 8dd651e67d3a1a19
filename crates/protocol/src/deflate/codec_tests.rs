use super::*;
use proptest::prelude::*;

/// What a client sends for `data` (RFC 7692 section 7.2.1): raw deflate,
/// sync-flushed, the 00 00 ff ff tail removed. `compressor` may keep context.
fn client_deflate(compressor: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    compress_into_keeping(compressor, data, &mut out);
    out
}

fn compress_into_keeping(compressor: &mut Compress, data: &[u8], out: &mut Vec<u8>) {
    let base = compressor.total_in();
    out.reserve(data.len() + 64);
    loop {
        let read = (compressor.total_in() - base) as usize;
        compressor.compress_vec(&data[read..], out, FlushCompress::Sync).expect("compress");
        if (compressor.total_in() - base) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
}

/// A frame's payload, after its 2- or 4-byte header (test frames stay under 64 KiB).
fn payload_of(frame: &[u8]) -> &[u8] {
    match frame[1] & 0x7F {
        126 => &frame[4..],
        _ => &frame[2..],
    }
}

fn json_like(count: usize) -> Vec<u8> {
    (0..count).map(|i| format!(r#"{{"ev":"msg","room":"lobby","seq":{i},"body":"hello"}}"#)).collect::<String>().into()
}

#[test]
fn a_compressed_frame_has_rsv1_and_inflates_to_the_message() {
    let message = json_like(20);
    let frame = compress_frame(OpCode::Text, &message, 15).expect("compressible");
    assert_eq!(frame[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
    assert!(frame.len() < message.len() / 2, "{} bytes from {}", frame.len(), message.len());
    assert!(!payload_of(&frame).ends_with(&TAIL), "the sync tail is removed");
    let inflated = inflate_alone(payload_of(&frame), 1 << 20).expect("valid deflate");
    assert_eq!(inflated, message);
}

#[test]
fn incompressible_or_tiny_messages_stay_plain() {
    assert_eq!(compress_frame(OpCode::Text, b"hi", 15), None);
    let mut state = 0x9E37_79B9u32;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    assert_eq!(compress_frame(OpCode::Binary, &noise, 15), None);
}

#[test]
fn small_windows_only_matter_for_messages_longer_than_the_window() {
    assert_eq!(effective_window(512, 9), 15, "fits a 512-byte window: shared with everyone");
    assert_eq!(effective_window(513, 9), 9);
    assert_eq!(effective_window(40_000, 15), 15);
    assert_eq!(effective_window(2000, 10), 10);
    // A long message compressed for a 9-bit window inflates with any window.
    let message = json_like(200);
    let frame = compress_frame(OpCode::Text, &message, 9).expect("compressible");
    let mut small = Decompress::new_with_window_bits(false, 9);
    let mut out = Vec::with_capacity(message.len() + 16);
    small.decompress_vec(payload_of(&frame), &mut out, FlushDecompress::Sync).expect("9-bit window suffices");
    small.decompress_vec(&TAIL, &mut out, FlushDecompress::Sync).expect("tail");
    assert_eq!(out, message);
}

#[test]
fn a_client_keeping_context_is_inflated_with_its_own_window() {
    let mut client = Compress::new(Compression::default(), false);
    let mut inflater = Window::new();
    let first = json_like(5);
    let data = client_deflate(&mut client, &first);
    assert_eq!(inflater.inflate(&data, 4096).expect("first"), first);
    // The same message again is mostly back-references into the first.
    let again = client_deflate(&mut client, &first);
    assert!(again.len() < 20, "context taken over: {} bytes", again.len());
    assert_eq!(inflater.inflate(&again, 4096).expect("second"), first);
    // A thread-shared inflater would not know the first message.
    assert!(inflate_alone(&again, 4096).is_err());
}

#[test]
fn the_shared_inflater_starts_afresh_for_every_message() {
    for round in 0..3 {
        let message = json_like(round + 1);
        let mut client = Compress::new(Compression::default(), false);
        let data = client_deflate(&mut client, &message);
        assert_eq!(inflate_alone(&data, 4096).expect("inflates"), message);
    }
    assert!(matches!(inflate_alone(&[0xff], 4096), Err(InflateError::Invalid(_))));
    let mut client = Compress::new(Compression::default(), false);
    assert_eq!(inflate_alone(&client_deflate(&mut client, b"after an error"), 4096).expect("fresh"), b"after an error");
}

#[test]
fn a_compression_bomb_stops_at_the_limit() {
    let bomb = {
        let mut client = Compress::new(Compression::best(), false);
        client_deflate(&mut client, &vec![b'a'; 10 << 20])
    };
    assert!(bomb.len() < 20_000, "10 MiB of one byte deflates to {} bytes", bomb.len());
    let limit = 64 * 1024;
    assert_eq!(inflate_alone(&bomb, limit), Err(InflateError::TooBig { limit }));
    assert_eq!(Window::new().inflate(&bomb, limit), Err(InflateError::TooBig { limit }));
    // Exactly at the limit is fine; one byte over is not.
    let mut client = Compress::new(Compression::best(), false);
    let exact = client_deflate(&mut client, &vec![b'a'; limit]);
    assert_eq!(inflate_alone(&exact, limit).map(|data| data.len()), Ok(limit));
    assert_eq!(inflate_alone(&exact, limit - 1), Err(InflateError::TooBig { limit: limit - 1 }));
}

#[test]
fn garbage_is_invalid_deflate_data() {
    // BTYPE 11 is reserved: an invalid block from the first byte.
    assert!(matches!(inflate_alone(&[0xff, 0xff, 0xff], 1024), Err(InflateError::Invalid(_))));
    assert!(matches!(Window::new().inflate(&[0x07, 0x00], 1024), Err(InflateError::Invalid(_))));
}

#[test]
fn a_final_block_ends_the_stream_and_the_next_message_starts_anew() {
    let mut inflater = Window::new();
    for message in [json_like(2), json_like(3)] {
        let mut client = Compress::new(Compression::default(), false);
        let mut data = Vec::with_capacity(message.len() + 64);
        client.compress_vec(&message, &mut data, FlushCompress::Finish).expect("finish");
        assert_eq!(inflater.inflate(&data, 4096).expect("BFINAL message"), message);
    }
}

proptest! {
    #[test]
    /// Random bytes (which rarely compress) and text from a few letters
    /// (which nearly always does): a compressed frame inflates to its
    /// message, and a message is left plain only when deflating it (as
    /// zlib does independently here) would not make the frame smaller.
    fn compressed_frames_always_inflate_to_their_message(
        message in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            proptest::collection::vec(proptest::sample::select(b"ab {}\":,".to_vec()), 0..3000),
        ],
        repeat in 1usize..4,
        bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS,
    ) {
        let message = message.repeat(repeat);
        let bits = effective_window(message.len(), bits);
        match compress_frame(OpCode::Binary, &message, bits) {
            Some(frame) => {
                prop_assert_eq!(frame[0], 0xC2);
                prop_assert!(frame.len() < ws::frame_len(message.len()), "compressed only when smaller");
                let mut out = Vec::with_capacity(message.len() + 16);
                let mut inflater = Decompress::new_with_window_bits(false, bits);
                inflater.decompress_vec(payload_of(&frame), &mut out, FlushDecompress::Sync).expect("payload");
                inflater.decompress_vec(&TAIL, &mut out, FlushDecompress::Sync).expect("tail");
                prop_assert_eq!(&out, &message);
                prop_assert_eq!(inflate_alone(payload_of(&frame), message.len()).expect("inflater"), message);
            }
            None => {
                let mut zlib = Compress::new_with_window_bits(Compression::new(LEVEL), false, bits);
                let deflated = client_deflate(&mut zlib, &message);
                prop_assert!(
                    ws::frame_len(deflated.len()) >= ws::frame_len(message.len()),
                    "{} bytes left plain though they deflate to {}", message.len(), deflated.len()
                );
            }
        }
    }
}
