//! Server-Sent Events followers as pure functions over bytes: the request
//! (`GET /api/rooms/{room}/events`, `GET /api/events?rooms=a,b`) with the
//! resume position it carries (`Last-Event-ID` or `?since=`), and, in
//! [`render`], what the server writes back (the response head, event ids,
//! events).
//!
//! Like [`crate::handshake`], a request for any other path, or with a
//! method other than GET, is [`Parsed::Other`]: not ours to parse, it goes
//! untouched to the general HTTP server.

pub mod render;

use crate::codes::ErrorCode;
use crate::command::validate_room;
use crate::handshake::{header_values, query_value, Caller, MAX_HEADERS};

/// The largest epoch: epochs are below 2^53.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;
/// `/api/rooms/{room}/events`: one room, named in the path.
const ROOM_PREFIX: &str = "/api/rooms/";
const ROOM_SUFFIX: &str = "/events";
/// `/api/events?rooms=a,b`: the rooms in the query.
const EVENTS: &str = "/api/events";
/// How much of a bad value an error message quotes.
const QUOTED: usize = 64;

/// Where a followed room's stream resumes: after `seq`, in `epoch` (when
/// known: a room with no history yet has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: Option<u64>,
    pub seq: u64,
}

/// A valid follow request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    /// The rooms to follow, each a valid room name, without repeats, in the
    /// order asked for.
    pub rooms: Vec<String>,
    /// Where each room resumes, aligned with `rooms`; `None`: live only.
    pub resume: Vec<Option<Position>>,
    /// Who asks: the name or token, the page, behind proxies the client.
    pub caller: Caller,
    /// Length of the request head.
    pub head_len: usize,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Incomplete,
    /// A request for another path, or not a GET: not ours to parse.
    Other,
    Follow(Follow),
}

/// Why a follow request was refused; each maps to an HTTP status and a wire
/// error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    #[error("request head is over {0} bytes")]
    HeadTooLarge(usize),
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    #[error("no room to follow: use /api/rooms/ROOM/events or /api/events?rooms=a,b")]
    NoRooms,
    #[error("invalid room `{room}`: {why}")]
    BadRoom { room: String, why: String },
    #[error("invalid name: {0}")]
    BadName(String),
    #[error("invalid resume position: {0}; send an event's id as it came (room:epoch:seq,...) or a seq")]
    BadResume(String),
    #[error("`rooms` is for /api/events; /api/rooms/ROOM/events follows the room in its path")]
    RoomsOnRoomPath,
    #[error("this endpoint sends text/event-stream, which the request's Accept header does not allow")]
    NotAcceptable,
}

impl FollowError {
    /// The HTTP status line's code and reason.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            FollowError::HeadTooLarge(_) => (431, "Request Header Fields Too Large"),
            FollowError::NotAcceptable => (406, "Not Acceptable"),
            _ => (400, "Bad Request"),
        }
    }

    /// The wire error code the answer's body carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            FollowError::BadRoom { .. } => ErrorCode::BadRoom,
            FollowError::BadName(_) => ErrorCode::BadUser,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Which follow route a path names.
enum Route<'a> {
    /// `/api/rooms/{room}/events`, with the room as it appears in the path.
    Room(&'a str),
    /// `/api/events`.
    Rooms,
}

/// Parses the start of a connection whose request is not a WebSocket
/// upgrade. `max_head` bounds the request head.
pub fn parse_request(input: &[u8], max_head: usize) -> Result<Parsed, FollowError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(input);
    // The request line is read before the headers, so the path is known
    // even when a header then turns out to be malformed.
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return match parsed {
            Err(error) => Err(FollowError::Malformed(error.to_string())),
            Ok(_) => incomplete(input, max_head),
        };
    };
    let path = target.split('?').next().unwrap_or_default();
    let Some(route) = route(path) else { return Ok(Parsed::Other) };
    if method != "GET" {
        return Ok(Parsed::Other);
    }
    let head_len = match parsed {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return incomplete(input, max_head),
        Err(httparse::Error::TooManyHeaders) => return Err(FollowError::HeadTooLarge(max_head)),
        Err(error) => return Err(FollowError::Malformed(error.to_string())),
    };
    if head_len > max_head {
        return Err(FollowError::HeadTooLarge(max_head));
    }
    let headers = &*request.headers;
    if has_body(headers) {
        return Err(FollowError::Malformed("a request for events has no body".into()));
    }
    if !accepts_event_stream(headers) {
        return Err(FollowError::NotAcceptable);
    }
    let rooms = rooms(route, target)?;
    let last_event_id = header_values(headers, "last-event-id")
        .next()
        .map(|value| {
            std::str::from_utf8(value).map_err(|_| FollowError::BadResume("Last-Event-ID is not UTF-8".into()))
        })
        .transpose()?
        .map(str::trim)
        .filter(|value| !value.is_empty());
    // The browser resends the URL it first opened, `since` included: the
    // id of the last event it received is newer.
    let resume = match last_event_id {
        Some(id) => resume(&rooms, Some(id), None)?,
        None => resume(&rooms, query_value(target, "since").as_deref(), query_value(target, "epoch").as_deref())?,
    };
    let caller = Caller::read(target, headers).map_err(FollowError::BadName)?;
    Ok(Parsed::Follow(Follow { rooms, resume, caller, head_len }))
}

fn incomplete(input: &[u8], max_head: usize) -> Result<Parsed, FollowError> {
    if input.len() > max_head {
        return Err(FollowError::HeadTooLarge(max_head));
    }
    Ok(Parsed::Incomplete)
}

/// Whether `path` (without its query) is an event stream's.
pub fn is_stream_path(path: &str) -> bool {
    route(path).is_some()
}

/// The follow route `path` names, if any.
fn route(path: &str) -> Option<Route<'_>> {
    if path == EVENTS {
        return Some(Route::Rooms);
    }
    let room = path.strip_prefix(ROOM_PREFIX)?.strip_suffix(ROOM_SUFFIX)?;
    (!room.contains('/')).then_some(Route::Room(room))
}

/// Whether the request declares a body (an event stream request has none).
fn has_body(headers: &[httparse::Header<'_>]) -> bool {
    let declared =
        header_values(headers, "content-length").any(|value| value.iter().any(|b| !matches!(b, b'0' | b' ')));
    declared || header_values(headers, "transfer-encoding").next().is_some()
}

/// Whether `Accept` (when sent) allows `text/event-stream`. Quality values
/// are not weighed: a range that names the type allows it.
fn accepts_event_stream(headers: &[httparse::Header<'_>]) -> bool {
    let mut values = header_values(headers, "accept").peekable();
    if values.peek().is_none() {
        return true;
    }
    values.filter_map(|value| std::str::from_utf8(value).ok()).flat_map(|value| value.split(',')).any(|range| {
        let range = range.split(';').next().unwrap_or_default().trim();
        ["text/event-stream", "text/*", "*/*"].iter().any(|allowed| range.eq_ignore_ascii_case(allowed))
    })
}

/// The rooms a request follows: the one in the path, or those of every
/// `rooms` parameter (comma-separated; empty items skipped), validated and
/// without repeats.
fn rooms(route: Route<'_>, target: &str) -> Result<Vec<String>, FollowError> {
    let query = target.split_once('?').map(|(_, query)| query).unwrap_or_default();
    let mut listed = form_urlencoded::parse(query.as_bytes()).filter(|(key, _)| key == "rooms").peekable();
    let rooms_listed = listed.peek().is_some();
    let names: Vec<String> = match route {
        Route::Room(_) if rooms_listed => return Err(FollowError::RoomsOnRoomPath),
        Route::Room(encoded) => {
            let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8().map_err(|_| {
                FollowError::BadRoom { room: quote(encoded), why: "not UTF-8 once percent-decoded".into() }
            })?;
            vec![decoded.into_owned()]
        }
        Route::Rooms => listed
            .flat_map(|(_, value)| {
                value.split(',').filter(|room| !room.is_empty()).map(str::to_owned).collect::<Vec<_>>()
            })
            .collect(),
    };
    let mut rooms: Vec<String> = Vec::with_capacity(names.len());
    for room in names {
        validate_room(&room).map_err(|why| FollowError::BadRoom { room: quote(&room), why })?;
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }
    if rooms.is_empty() {
        return Err(FollowError::NoRooms);
    }
    Ok(rooms)
}

/// Where each of `rooms` resumes: from an event id (`room:epoch:seq,...`;
/// rooms it does not name start live), or from a bare `seq` (with `epoch`,
/// if given) for every room.
fn resume(rooms: &[String], value: Option<&str>, epoch: Option<&str>) -> Result<Vec<Option<Position>>, FollowError> {
    let mut resume = vec![None; rooms.len()];
    let Some(value) = value else { return Ok(resume) };
    if !value.contains(':') {
        let seq = number(value, "seq")?;
        let epoch = epoch.map(self::epoch).transpose()?;
        resume.fill(Some(Position { epoch, seq }));
        return Ok(resume);
    }
    for (room, position) in parse_id(value)? {
        let index = rooms.iter().position(|followed| *followed == room).ok_or_else(|| {
            FollowError::BadResume(format!("it names room `{}`, which this request does not follow", quote(&room)))
        })?;
        if resume[index].replace(position).is_some() {
            return Err(FollowError::BadResume(format!("it names room `{}` twice", quote(&room))));
        }
    }
    Ok(resume)
}

/// Reads an event id as [`render::write_id`] writes it.
pub fn parse_id(id: &str) -> Result<Vec<(String, Position)>, FollowError> {
    id.split(',')
        .map(|entry| {
            let mut parts = entry.rsplitn(3, ':');
            let (Some(seq), Some(epoch), Some(room)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(FollowError::BadResume(format!("`{}` is not room:epoch:seq", quote(entry))));
            };
            let room = percent_encoding::percent_decode_str(room)
                .decode_utf8()
                .map_err(|_| FollowError::BadResume(format!("room `{}` is not UTF-8", quote(room))))?;
            let epoch = if epoch.is_empty() { None } else { Some(self::epoch(epoch)?) };
            Ok((room.into_owned(), Position { epoch, seq: number(seq, "seq")? }))
        })
        .collect()
}

fn number(text: &str, what: &str) -> Result<u64, FollowError> {
    // `u64::from_str` takes a leading `+`: the id's numbers are plain digits.
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let parsed = if digits { text.parse().ok() } else { None };
    parsed.ok_or_else(|| FollowError::BadResume(format!("{what} `{}` is not a whole number", quote(text))))
}

fn epoch(text: &str) -> Result<u64, FollowError> {
    number(text, "epoch").and_then(|epoch| {
        if epoch <= MAX_EPOCH {
            Ok(epoch)
        } else {
            Err(FollowError::BadResume(format!("epoch {epoch} is past 2^53")))
        }
    })
}

/// The start of `text`, for an error message.
fn quote(text: &str) -> String {
    text.chars().take(QUOTED).collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
