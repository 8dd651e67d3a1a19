//! Every code docs/PROTOCOL.md documents has a test that provokes it over a
//! real socket and checks its wire value. [`TESTED`] says which tests; this
//! file's test fails when a documented code has none, when a listed code is
//! no longer documented, when a listed test does not exist or does not
//! mention the code's wire value, and when the protocol crate's codes and
//! the document's differ.

use std::collections::BTreeSet;
use switchboard_protocol::{CloseCode, ErrorCode};

/// What kind of code, as the document's tables and raw TCP section name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// An HTTP status answering a refused upgrade.
    Status,
    /// `code` of an error reply or event.
    Error,
    /// A WebSocket close code.
    Close,
    /// `code` of the last line raw TCP sends before it closes.
    TcpClose,
    /// An HTTP status the HTTP API answers with `{"code", "error"}`.
    HttpStatus,
    /// An HTTP status refusing a Server-Sent Events request.
    SseStatus,
    /// `code` of the `close` event that ends an event stream.
    SseClose,
}

use Kind::{Close, Error, HttpStatus, SseClose, SseStatus, Status, TcpClose};

/// (kind, code, the tests that provoke it: `module::function` in tests/it).
const TESTED: &[(Kind, &str, &[&str])] = &[
    (Status, "400", &["limits::an_upgrade_without_a_key_is_refused_with_400", REFUSED]),
    (Status, "405", &[REFUSED]),
    (Status, "408", &["limits::a_silent_connection_is_answered_408_at_the_handshake_timeout"]),
    (Status, "426", &[REFUSED]),
    (Status, "431", &[REFUSED]),
    (Status, "401", &[TOKENS, METRICS_KEY]),
    (Status, "403", &[ORIGINS]),
    (Status, "429", &["abuse_ip::connections_per_address_are_limited_and_released_on_close"]),
    (Status, "503", &[LIMIT, "shutdown::an_upgrade_that_arrives_while_shutting_down_is_answered_503"]),
    (Error, "bad_json", &[BAD_INPUT]),
    (Error, "unknown_op", &[BAD_INPUT]),
    (Error, "bad_request", &[BAD_INPUT]),
    (Error, "bad_room", &["codes::bad_room_answers_names_too_long_empty_or_with_control_characters"]),
    (Error, "bad_user", &["codes::bad_user_answers_names_too_long_or_outside_the_alphabet"]),
    (Error, "not_member", &["chat::the_sender_cannot_be_forged_and_sending_needs_membership"]),
    (Error, "storage_failed", &["codes::storage_failed_answers_a_send_a_dm_and_a_history_read_that_storage_refused"]),
    (
        Error,
        "overloaded",
        &[
            "codes::overloaded_answers_sends_past_the_storage_queue",
            "codes::overloaded_answers_a_request_past_4096_waiting_on_one_connection",
        ],
    ),
    (Error, "shutting_down", &[DRAIN]),
    (
        Error,
        "unavailable",
        &["cluster::redis_killed_and_restarted_loses_no_acked_message_and_publishes_meanwhile_are_refused"],
    ),
    (Error, "too_large", &[OVERSIZE]),
    (Error, "no_session", &["raw::udp_sessions_expire_and_unknown_sources_get_a_short_error"]),
    (
        Error,
        "rate_limited",
        &[
            "raw::a_udp_flood_is_rate_limited",
            "abuse::a_command_over_the_rate_is_refused_with_rate_limited_and_the_connection_survives",
        ],
    ),
    (Error, "forbidden", &["auth::a_token_opens_only_the_rooms_it_names_for_each_command"]),
    (Error, "token_required", &[TOKENS, TCP_TOKENS, UDP_TOKENS]),
    (Error, "name_not_allowed", &[TOKENS, TCP_TOKENS, UDP_TOKENS]),
    (Error, "token_malformed", &[TOKENS, TCP_TOKENS]),
    (Error, "token_invalid_signature", &[TOKENS]),
    (Error, "token_expired", &[TOKENS, TCP_TOKENS, UDP_TOKENS, REFRESH]),
    (Error, "token_not_yet_valid", &[TOKENS]),
    (Error, "token_wrong_audience", &[TOKENS]),
    (Error, "token_wrong_issuer", &[TOKENS]),
    (Error, "token_invalid_claims", &[TOKENS]),
    (Error, "token_user_mismatch", &[REFRESH]),
    (Error, "origin_not_allowed", &[ORIGINS]),
    (Error, "api_key_required", &[METRICS_KEY]),
    (Error, "api_key_invalid", &[METRICS_KEY, API_KEYS]),
    (Error, "not_found", &[API_ROUTES]),
    (Error, "method_not_allowed", &[API_ROUTES]),
    (Error, "unsupported_media_type", &[API_BODIES]),
    (Error, "not_ready", &[READY_DIRECTORY, READY_STORAGE]),
    (HttpStatus, "400", &[API_BODIES]),
    (HttpStatus, "401", &[API_KEYS]),
    (HttpStatus, "403", &[API_ORIGINS]),
    (HttpStatus, "404", &[API_ROUTES]),
    (HttpStatus, "405", &[API_ROUTES]),
    (HttpStatus, "413", &["api_access::bodies_over_the_limit_get_413_whether_declared_or_chunked"]),
    (HttpStatus, "415", &[API_BODIES]),
    (HttpStatus, "429", &["api_access::requests_over_the_rate_get_429_with_retry_after"]),
    (HttpStatus, "503", &[API_STORAGE, READY_DIRECTORY, READY_STORAGE]),
    (Close, "1000", &["closes::a_client_s_close_is_echoed_and_the_server_then_closes_the_connection"]),
    (
        Close,
        "1001",
        &[
            "lifecycle::graceful_shutdown_closes_clients_with_1001",
            "shutdown::shutdown_ends_as_soon_as_every_client_has_closed",
        ],
    ),
    (
        Close,
        "1002",
        &[PROTOCOL_ERRORS, "compression::a_server_with_compression_off_declines_and_refuses_compressed_frames"],
    ),
    (Close, "1007", &[PROTOCOL_ERRORS, BOMB]),
    (Close, "1009", &["limits::an_oversize_message_closes_with_1009", BOMB]),
    (Close, "4001", &["lifecycle::silent_clients_are_pinged_then_closed_with_4001"]),
    (
        Close,
        "1008",
        &[
            "abuse::a_flood_of_large_messages_closes_the_flooder_not_the_room",
            "abuse::pings_from_a_client_that_does_not_read_close_it_with_1008",
            "abuse::an_unfinished_fragmented_message_is_closed_at_its_deadline_even_with_pings",
        ],
    ),
    (Close, "4003", &[TCP_TOKENS]),
    (Close, "4005", &[REFRESH]),
    (Close, "4008", &["limits::a_client_that_stops_reading_gets_4008_while_others_keep_receiving"]),
    (Close, "4010", &[KICK]),
    (
        Close,
        "4012",
        &["cluster::members_of_a_room_whose_history_redis_lost_are_closed_with_4012_and_then_told_recovered_false"],
    ),
    (TcpClose, "1000", &["closes::quit_closes_a_text_mode_connection_with_1000"]),
    (TcpClose, "1001", &["raw::shutdown_is_announced_on_tcp_and_udp_too"]),
    (TcpClose, "1009", &[OVERSIZE]),
    (TcpClose, "1013", &["closes::raw_tcp_at_the_connection_limit_gets_a_1013_close_line"]),
    (TcpClose, "4008", &["raw::a_tcp_client_that_stops_reading_is_closed_as_a_slow_consumer"]),
    (TcpClose, "4003", &[TCP_TOKENS]),
    (TcpClose, "4010", &[KICK]),
    (TcpClose, "1008", &["abuse_raw::silent_and_trickling_tcp_sockets_are_closed_at_the_first_line_deadline"]),
    (SseStatus, "400", &[SSE_REFUSED]),
    (SseStatus, "401", &[SSE_TOKENS]),
    (
        SseStatus,
        "403",
        &[SSE_TOKENS, "sse_auth::cross_origin_pages_are_refused_and_listed_ones_are_told_they_may_read"],
    ),
    (SseStatus, "406", &[SSE_REFUSED]),
    (SseStatus, "408", &[SSE_REFUSED]),
    (SseStatus, "429", &["sse_auth::followers_count_against_their_address_s_connections"]),
    (SseStatus, "431", &[SSE_REFUSED]),
    (SseStatus, "503", &[SSE_SHUTDOWN, "sse::followers_count_against_the_connection_limit"]),
    (SseClose, "1001", &[SSE_SHUTDOWN]),
    (SseClose, "1008", &["sse::a_follower_that_sends_data_is_closed_with_1008"]),
    (SseClose, "4005", &["sse_auth::an_expiring_token_is_announced_and_closes_the_stream_with_4005"]),
    (SseClose, "4008", &["sse::a_follower_that_stops_reading_is_closed_as_a_slow_consumer"]),
];

const KICK: &str = "api_connections::a_kick_closes_with_4010_and_the_reason_on_every_transport";
const SSE_REFUSED: &str = "sse::bad_follow_requests_are_refused_with_their_status_and_counted";
const SSE_TOKENS: &str = "sse_auth::token_mode_followers_need_a_token_that_allows_every_room";
const SSE_SHUTDOWN: &str = "sse::shutdown_closes_followers_with_1001_and_refuses_new_ones_with_503";

const REFUSED: &str = "closes::refused_upgrades_get_400_405_426_and_431";
const LIMIT: &str = "limits::the_connection_limit_refuses_extras_and_the_server_keeps_serving";
const BAD_INPUT: &str = "limits::bad_json_and_unknown_ops_get_error_replies_and_the_connection_survives";
const DRAIN: &str = "shutdown::requests_during_the_storage_drain_are_refused_with_shutting_down_and_the_rest_acked";
const OVERSIZE: &str = "raw::oversize_lines_and_datagrams_are_refused_and_counted";
const PROTOCOL_ERRORS: &str = "limits::invalid_utf8_closes_with_1007_and_protocol_violations_with_1002";
const BOMB: &str = "compression::a_compression_bomb_closes_with_1009_and_is_counted";
const TOKENS: &str = "auth::a_valid_token_names_the_connection_and_each_bad_one_is_refused_with_its_code";
const TCP_TOKENS: &str = "auth_raw::a_tcp_client_without_a_valid_token_is_told_why_and_closed_with_4003";
const UDP_TOKENS: &str = "auth_raw::a_udp_client_authenticates_with_hellos_token_and_names_are_refused";
const REFRESH: &str = "auth::a_fresh_token_extends_the_connection_and_may_not_change_its_user";
const ORIGINS: &str = "auth::browser_upgrades_from_other_origins_are_refused_and_listed_ones_accepted";
const METRICS_KEY: &str = "auth::in_token_mode_metrics_need_an_api_key_unless_made_public";
const API_KEYS: &str = "api_access::the_api_is_open_in_open_mode_without_keys_and_needs_a_valid_key_otherwise";
const API_ORIGINS: &str = "api_access::preflights_from_allowed_origins_are_answered_and_other_origins_get_403";
const API_ROUTES: &str = "api_access::unknown_routes_get_404_and_other_methods_405_with_allow";
const API_BODIES: &str = "api_access::bodies_that_are_not_json_get_415_and_malformed_ones_400_saying_where";
const API_STORAGE: &str = "api_publish::storage_that_fails_or_is_full_gets_503_and_nothing_is_delivered";
const READY_DIRECTORY: &str = "api_health::readyz_fails_while_the_data_directory_is_unusable";
const READY_STORAGE: &str = "api_health::readyz_fails_when_storage_cannot_write_or_does_not_answer_in_time";

const PROTOCOL_MD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/PROTOCOL.md"));

/// The lines of the section that starts with the heading `title`.
fn section<'a>(document: &'a str, title: &'a str) -> impl Iterator<Item = &'a str> {
    document.lines().skip_while(move |line| *line != title).skip(1).take_while(|line| !line.starts_with("## "))
}

/// The first cells of a section's table rows, without backticks, header
/// and rule rows left out.
fn first_cells<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    lines
        .filter_map(|line| line.strip_prefix("| ")?.split(" |").next())
        .map(|cell| cell.trim_matches('`').to_owned())
        .filter(|cell| {
            cell.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && cell != "code" && cell != "status"
        })
        .collect()
}

/// The four-digit codes raw TCP's section says its close line carries
/// ("1009 for a line too long", "a close line with code 1013").
fn tcp_close_codes(document: &str) -> Vec<String> {
    let text: String = section(document, "## Raw TCP (default 127.0.0.1:7070)").collect::<Vec<_>>().join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut codes: Vec<String> = words
        .windows(2)
        .filter(|pair| pair[0].len() == 4 && pair[0].chars().all(|c| c.is_ascii_digit()))
        .filter(|pair| matches!(pair[1], "for" | "after" | "and"))
        .map(|pair| pair[0].to_owned())
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// Every (kind, code) the document names.
fn documented() -> BTreeSet<(Kind, String)> {
    let doc = PROTOCOL_MD;
    let statuses = first_cells(section(doc, "## Connecting")).into_iter().map(|code| (Status, code));
    let errors = first_cells(section(doc, "## Error codes")).into_iter().map(|code| (Error, code));
    let closes = first_cells(section(doc, "## Close codes")).into_iter().map(|code| (Close, code));
    let tcp = tcp_close_codes(doc).into_iter().map(|code| (TcpClose, code));
    let http = first_cells(section(doc, "## HTTP API"))
        .into_iter()
        .filter(|cell| cell.len() == 3 && cell.chars().all(|c| c.is_ascii_digit()))
        .map(|code| (HttpStatus, code));
    // The event stream section's tables: its statuses (three digits) and
    // its close event's codes (four); its table of events is not codes.
    let sse = first_cells(section(doc, "## Server-Sent Events")).into_iter().filter_map(|code| {
        match (code.len(), code.chars().all(|c| c.is_ascii_digit())) {
            (3, true) => Some((SseStatus, code)),
            (4, true) => Some((SseClose, code)),
            _ => None,
        }
    });
    statuses.chain(errors).chain(closes).chain(tcp).chain(http).chain(sse).collect()
}

/// The body of test `module::function` in tests/it, if it exists.
fn test_body(path: &str) -> Option<String> {
    let (module, function) = path.split_once("::")?;
    let file = format!("{}/tests/it/{module}.rs", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(file).ok()?;
    let start =
        source.find(&format!("\nasync fn {function}(")).or_else(|| source.find(&format!("\nfn {function}(")))?;
    let end = source[start..].find("\n}\n").map_or(source.len(), |end| start + end);
    Some(source[start..end].to_owned())
}

#[test]
fn every_documented_code_is_provoked_by_a_test_that_checks_its_wire_value() {
    let documented = documented();
    assert!(documented.len() >= 25, "the document's tables were not found: {documented:?}");
    let listed: BTreeSet<(Kind, String)> = TESTED.iter().map(|(kind, code, _)| (*kind, (*code).to_owned())).collect();
    let untested: Vec<_> = documented.difference(&listed).collect();
    assert!(untested.is_empty(), "documented in docs/PROTOCOL.md with no test listed in TESTED: {untested:?}");
    let stale: Vec<_> = listed.difference(&documented).collect();
    assert!(stale.is_empty(), "listed in TESTED but no longer documented: {stale:?}");
    for (kind, code, tests) in TESTED {
        assert!(!tests.is_empty(), "{kind:?} {code}: no test");
        for test in *tests {
            let body = test_body(test).unwrap_or_else(|| panic!("{kind:?} {code}: no test `{test}` in tests/it"));
            let wire = if *kind == Error { format!("\"{code}\"") } else { (*code).to_owned() };
            assert!(body.contains(&wire), "{kind:?} {code}: `{test}` never mentions {wire}");
        }
    }
}

#[test]
fn the_protocol_crate_has_exactly_the_documented_codes() {
    let documented = documented();
    let of_kind = |kind: Kind| -> BTreeSet<String> {
        documented.iter().filter(|(k, _)| *k == kind).map(|(_, code)| code.clone()).collect()
    };
    let errors: BTreeSet<String> = ErrorCode::ALL.iter().map(|code| code.as_str().to_owned()).collect();
    assert_eq!(errors, of_kind(Error), "ErrorCode::ALL against docs/PROTOCOL.md");
    let closes: BTreeSet<String> = CloseCode::NAMED.iter().map(|code| code.as_u16().to_string()).collect();
    assert_eq!(closes, of_kind(Close), "CloseCode::NAMED against docs/PROTOCOL.md");
}
