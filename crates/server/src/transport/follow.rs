//! A Server-Sent Events request at the front door (`super::front` parses it
//! with `switchboard_protocol::sse`). It gets the checks an upgrade gets
//! (shutting down, the per-address limits of a client behind a trusted
//! proxy, its origin, its token) and two of its own (the rooms per stream,
//! and in token mode the token's `join` permission for every room), each
//! refusal answered with `{"code","error"}` and counted. Then the `200`
//! goes out and the connection becomes a follower: registered in the hub
//! as transport `sse` (so it counts against the connection limits and
//! shows in the connection table), joined to its rooms (replaying what
//! `Last-Event-ID` or `since` missed), and driven by the stream driver with
//! [`SseCodec`].

use super::front::{self, admit_caller, identity};
use super::http::HttpState;
use super::socket::Accepted;
use super::sse::{Cursor, SseCodec};
use super::stream::Connection;
use crate::auth::Permission;
use crate::guard::{self, reason};
use crate::hub::conn::Transport;
use crate::policy::Admission;
use crate::session::{Followed, Session};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_protocol::sse::render::{refusal, response_head};
use switchboard_protocol::sse::{Follow, Position};
use switchboard_protocol::{CloseCode, ErrorCode};

/// Answers a follow request and, once admitted, starts the follower.
/// `early`: bytes that came after the request head.
pub(crate) async fn serve<'a, S: Accepted>(
    mut stream: S,
    mut follow: Follow,
    early: Bytes,
    peer: SocketAddr,
    slot: &mut guard::Slot<'a>,
    state: &'a Arc<HttpState>,
) {
    // Behind a trusted proxy the client is the one its headers name.
    let client = match guard::admit_forwarded(&state.hub, peer, follow.caller.forwarded.as_ref(), slot) {
        Ok(client) => client,
        Err(answer) => return front::refuse(stream, &answer).await,
    };
    let admission = match admit(state, &mut follow, client) {
        Ok(admission) => admission,
        Err(answer) => return front::refuse(stream, &answer).await,
    };
    // The page's origin passed the check: a cross-origin page may read on.
    let head = response_head(follow.caller.origin.as_deref(), state.hub.limits().sse.retry);
    if !front::answer(&mut stream, &head, client).await {
        return;
    }
    start(stream, &follow, early, client, admission, state);
    slot.keep();
}

/// Decides whether the request may follow its rooms and as whom, or the
/// answer that refuses it.
fn admit(state: &HttpState, follow: &mut Follow, peer: SocketAddr) -> Result<Admission, String> {
    let hub = &state.hub;
    if hub.is_shutting_down() {
        hub.metrics.refused("shutting_down");
        return Err(refusal(503, "Service Unavailable", ErrorCode::ShuttingDown.as_str(), "server is shutting down"));
    }
    let max_rooms = hub.limits().sse.max_rooms;
    if follow.rooms.len() > max_rooms {
        hub.metrics.refused("handshake");
        hub.metrics.limit_hit(reason::SSE_ROOMS);
        let why =
            format!("{} rooms asked for; a stream follows at most {max_rooms} (sse.max_rooms)", follow.rooms.len());
        return Err(refusal(400, "Bad Request", ErrorCode::BadRequest.as_str(), &why));
    }
    let admission = admit_caller(hub, &mut follow.caller, peer, "event stream")?;
    if let Admission::Verified(identity) = &admission {
        if let Some(room) = follow.rooms.iter().find(|room| !identity.profile.allows(room, Permission::Join)) {
            hub.metrics.refused("forbidden");
            tracing::info!(%peer, user = %identity.user, room, "event stream refused: the token does not allow the room");
            let why = format!("your token does not allow `join` in room `{room}`");
            return Err(refusal(403, "Forbidden", ErrorCode::Forbidden.as_str(), &why));
        }
    }
    Ok(admission)
}

/// Registers the follower, joins its rooms and starts its task.
fn start<S: Accepted>(
    stream: S,
    follow: &Follow,
    early: Bytes,
    peer: SocketAddr,
    admission: Admission,
    state: &HttpState,
) {
    let Some((socket, early, fd)) = front::take_socket(stream, early, peer) else { return };
    let hub = Arc::clone(&state.hub);
    let id = hub.next_conn_id();
    let (user, profile) = identity(admission, id);
    let conn = hub.register(id, user, peer, Transport::Sse);
    conn.set_fd(fd);
    if let Some(profile) = profile {
        hub.identify(&conn, profile);
    }
    let session = Session::silent(hub, conn);
    session.greet_follower();
    let rooms: Vec<(String, Option<Position>)> =
        follow.rooms.iter().cloned().zip(follow.resume.iter().copied()).collect();
    state.tracker.spawn(async move {
        let (session, cursors) = follow_rooms(session, rooms).await;
        tracing::debug!(conn = id, %peer, user = %session.conn().user, rooms = cursors.len(), "event stream open");
        Connection::new(socket, session, SseCodec::new(cursors)).run(early).await
    });
}

/// Joins the follower to its rooms, each with its recovery, and returns
/// where each room's stream starts. In a cluster a room may first wait for
/// the broker to know where it stands.
async fn follow_rooms(mut session: Session, rooms: Vec<(String, Option<Position>)>) -> (Session, Vec<Cursor>) {
    let mut starts = Vec::with_capacity(rooms.len());
    for (room, resume) in &rooms {
        let (since, epoch) = (resume.map(|at| at.seq), resume.and_then(|at| at.epoch));
        let plan = match session.follow(room, since, epoch) {
            Ok(Followed::Planned(plan)) => plan,
            Ok(Followed::Pending { wait, presence_events }) => {
                wait.await;
                session.follow_planned(room, since, epoch, presence_events)
            }
            Err(error) => {
                tracing::debug!(conn = session.conn().id, room, %error, "event stream could not follow its room, closing");
                session.conn().close(CloseCode::GoingAway, false);
                break;
            }
        };
        // Replayed messages move the position on from where the replay starts.
        starts.push((plan.epoch, plan.replay.map_or(plan.seq, |(_, after, _)| after)));
    }
    let cursors = session
        .room_names()
        .zip(starts)
        .map(|(room, (epoch, seq))| Cursor { room: Arc::clone(room), epoch, seq })
        .collect();
    (session, cursors)
}
