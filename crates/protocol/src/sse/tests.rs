use super::render::{self, Head};
use super::*;
use crate::event::{Presence, RoomMessage};
use serde_json::value::RawValue;

fn request(target: &str, headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
}

fn follow(target: &str, headers: &str) -> Follow {
    match parse_request(request(target, headers).as_bytes(), 8192) {
        Ok(Parsed::Follow(follow)) => follow,
        other => panic!("{target}: {other:?}"),
    }
}

fn refused(target: &str, headers: &str) -> FollowError {
    match parse_request(request(target, headers).as_bytes(), 8192) {
        Err(error) => error,
        other => panic!("{target}: {other:?}"),
    }
}

#[test]
fn both_routes_are_recognised_and_everything_else_is_passed_on() {
    let one = follow("/api/rooms/lobby/events", "");
    assert_eq!((one.rooms, one.resume), (vec!["lobby".to_owned()], vec![None]));
    let many = follow("/api/events?rooms=a,b&rooms=c,,a", "Accept: text/event-stream\r\n");
    assert_eq!(many.rooms, ["a", "b", "c"], "repeats and empty items dropped, order kept");
    assert_eq!(many.head_len, request("/api/events?rooms=a,b&rooms=c,,a", "Accept: text/event-stream\r\n").len());
    let encoded = follow("/api/rooms/team%2Fa%20b/events", "");
    assert_eq!(encoded.rooms, ["team/a b"]);
    for other in ["/api/rooms", "/api/rooms/a/b/events", "/api/rooms/a/messages", "/metrics", "/api/eventsx"] {
        assert_eq!(parse_request(request(other, "").as_bytes(), 8192), Ok(Parsed::Other), "{other}");
    }
    let post = "POST /api/rooms/a/events HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(parse_request(post.as_bytes(), 8192), Ok(Parsed::Other), "other methods are the router's");
    let head = "HEAD /api/events?rooms=a HTTP/1.1\r\n\r\n";
    assert_eq!(parse_request(head.as_bytes(), 8192), Ok(Parsed::Other));
}

#[test]
fn partial_heads_wait_within_the_limit() {
    let full = request("/api/rooms/lobby/events", "Accept: text/event-stream\r\n");
    for cut in [3, 10, 30, full.len() - 1] {
        assert_eq!(parse_request(&full.as_bytes()[..cut], 8192), Ok(Parsed::Incomplete), "{cut} bytes");
    }
    assert_eq!(parse_request(&full.as_bytes()[..30], 20), Err(FollowError::HeadTooLarge(20)));
    assert_eq!(parse_request(full.as_bytes(), 20), Err(FollowError::HeadTooLarge(20)));
    assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n", 8192), Ok(Parsed::Other));
    let bad = refused("/api/events?rooms=a", "Bad Header\r\n");
    assert!(matches!(bad, FollowError::Malformed(_)), "{bad:?}");
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(refused("/api/events?rooms=a", &many).status().0, 431);
}

#[test]
fn each_defect_has_its_status_and_code() {
    let status = |target: &str, headers: &str| {
        let error = refused(target, headers);
        (error.status().0, error.code().as_str())
    };
    assert_eq!(status("/api/events", ""), (400, "bad_request"), "no rooms");
    assert_eq!(status("/api/events?rooms=,", ""), (400, "bad_request"));
    assert_eq!(status("/api/rooms/a/events?rooms=b", ""), (400, "bad_request"));
    assert_eq!(status("/api/rooms//events", ""), (400, "bad_room"));
    assert_eq!(status("/api/rooms/%FF/events", ""), (400, "bad_room"));
    assert_eq!(status(&format!("/api/events?rooms={}", "r".repeat(129)), ""), (400, "bad_room"));
    assert_eq!(status("/api/events?rooms=a%01", ""), (400, "bad_room"));
    assert_eq!(status("/api/rooms/a/events?name=al%20ice", ""), (400, "bad_user"));
    assert_eq!(status("/api/rooms/a/events", "Accept: application/json\r\n"), (406, "bad_request"));
    assert_eq!(status("/api/rooms/a/events", "Content-Length: 5\r\n"), (400, "bad_request"));
    assert_eq!(status("/api/rooms/a/events", "Transfer-Encoding: chunked\r\n"), (400, "bad_request"));
    for accept in ["text/event-stream", "text/*;q=0.5", "*/*", "application/json, TEXT/EVENT-STREAM"] {
        follow("/api/rooms/a/events", &format!("Accept: {accept}\r\nContent-Length: 0\r\n"));
    }
}

#[test]
fn names_tokens_origins_and_proxies_are_read() {
    let named = follow("/api/rooms/a/events?name=alice&token=t%2E1", "Authorization: Bearer other\r\n").caller;
    assert_eq!((named.name.as_deref(), named.token.as_deref()), (Some("alice"), Some("t.1")), "the query wins");
    let bearer = follow("/api/rooms/a/events", "Authorization: Bearer abc\r\nOrigin: https://app.test\r\n").caller;
    assert_eq!((bearer.token.as_deref(), bearer.origin.as_deref()), (Some("abc"), Some("https://app.test")));
    assert_eq!(bearer.host.as_deref(), Some("x"));
    let proxied = follow("/api/rooms/a/events", "X-Forwarded-For: 203.0.113.7\r\n").caller;
    assert_eq!(proxied.forwarded, Some(crate::handshake::Forwarded::XForwardedFor("203.0.113.7".into())));
}

#[test]
fn the_last_event_id_beats_since_and_resumes_each_room_it_names() {
    let at = |epoch, seq| Some(Position { epoch, seq });
    let since = follow("/api/events?rooms=a,b&since=7&epoch=42", "");
    assert_eq!(since.resume, [at(Some(42), 7), at(Some(42), 7)], "a bare seq is every room's");
    assert_eq!(follow("/api/rooms/a/events?since=0", "").resume, [at(None, 0)]);
    let id = follow("/api/events?rooms=a,b,c&since=7", "Last-Event-ID: b:9:12,a::3\r\n");
    assert_eq!(id.resume, [at(None, 3), at(Some(9), 12), None], "c starts live");
    let id_in_query = follow("/api/events?rooms=a,b&since=b%3A9%3A12", "");
    assert_eq!(id_in_query.resume, [None, at(Some(9), 12)]);
    assert_eq!(follow("/api/rooms/a/events?since=3", "Last-Event-ID:  \r\n").resume, [at(None, 3)], "blank id");
    for (target, id) in [
        ("/api/rooms/a/events?since=x", ""),
        ("/api/rooms/a/events?since=%2B3", ""),
        ("/api/rooms/a/events?since=3&epoch=9007199254740992", ""),
        ("/api/rooms/a/events", "Last-Event-ID: a:1\r\n"),
        ("/api/rooms/a/events", "Last-Event-ID: a:1:2:3\r\n"),
        ("/api/rooms/a/events", "Last-Event-ID: b:1:2\r\n"),
        ("/api/rooms/a/events", "Last-Event-ID: a:1:2,a:1:3\r\n"),
        ("/api/rooms/a/events", "Last-Event-ID: a:-1:2\r\n"),
    ] {
        assert!(matches!(refused(target, id), FollowError::BadResume(_)), "{target} {id}");
    }
}

#[test]
fn ids_name_every_room_and_read_back_whatever_the_room_is_called() {
    let rooms = ["lobby", "a,b:c%", "ünï code", "x y"];
    let mut out = Vec::new();
    render::write_id(&mut out, rooms.iter().enumerate().map(|(i, room)| (*room, (i > 0).then_some(9), i as u64)));
    let line = String::from_utf8(out).expect("utf8");
    assert!(line.is_ascii() && line.starts_with("id: lobby::0,a%2Cb%3Ac%25:9:1,") && line.ends_with("x%20y:9:3\n"));
    let parsed = parse_id(line.trim_start_matches("id: ").trim_end()).expect("parses");
    let expected: Vec<(String, Position)> = rooms
        .iter()
        .enumerate()
        .map(|(i, room)| ((*room).to_owned(), Position { epoch: (i > 0).then_some(9), seq: i as u64 }))
        .collect();
    assert_eq!(parsed, expected);
}

#[test]
fn the_writer_reads_what_the_server_serializes() {
    let body = RawValue::from_string(r#"{"t":"a \"quoted\" ,\"seq\":9"}"#.into()).expect("raw");
    let json = |room: &str, seq, volatile| {
        let message = RoomMessage { ev: "msg", room, seq, from: "bob", ts: 1, body: &body, volatile };
        serde_json::to_vec(&message).expect("json")
    };
    let plain = json("lobby", Some(17), None);
    assert_eq!(render::head(&plain), Head::Message { room: "lobby".into(), seq: Some(17) });
    let odd = json("say \"hi\" \\ 🙂", Some(3), None);
    assert_eq!(render::head(&odd), Head::Message { room: "say \"hi\" \\ 🙂".into(), seq: Some(3) });
    let volatile = json("lobby", None, Some(true));
    assert_eq!(render::head(&volatile), Head::Message { room: "lobby".into(), seq: None });
    let presence = serde_json::to_vec(&Presence { ev: "join", room: "r", user: "u", info: None }).expect("json");
    assert_eq!(render::head(&presence), Head::Named("join"));
    for unknown in [&b"{\"re\":1,\"ok\":true}"[..], b"", b"{\"ev\":\"ms", b"{\"ev\":\"msg\",\"room\":\"unterminated"] {
        assert_eq!(render::head(unknown), Head::Unknown, "{:?}", String::from_utf8_lossy(unknown));
    }
}

#[test]
fn events_keep_their_json_on_one_data_line() {
    let mut out = Vec::new();
    render::write_event(&mut out, Some("join"), br#"{"ev":"join"}"#);
    render::write_event(&mut out, None, b"{\"body\":[1,\r\n2]}");
    assert_eq!(out, b"event: join\ndata: {\"ev\":\"join\"}\n\ndata: {\"body\":[1,  2]}\n\n");
    let head = render::response_head(Some("https://app.test"), std::time::Duration::from_millis(1500));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
    assert!(head.contains("\r\nAccess-Control-Allow-Origin: https://app.test\r\nVary: Origin\r\n"));
    assert!(head.ends_with("\r\n\r\nretry: 1500\n\n"));
    assert!(!render::response_head(None, std::time::Duration::ZERO).contains("Access-Control"));
}
