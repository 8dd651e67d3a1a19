//! Benchmark peer: axum's `examples/chat`, without the HTML page.
//!
//! One `tokio::sync::broadcast` channel of capacity 100 is the room. A client
//! opens a WebSocket at `/websocket`; its first text message is its username
//! (which must be unique among connected users). The server subscribes it to
//! the channel, broadcasts `"{username} joined."`, and from then on every text
//! message it sends is broadcast to all users (itself included) as
//! `"{username}: {text}"`. Two tasks per connection: one forwards the channel to
//! the socket, one reads the socket into the channel. When either ends, the
//! other is aborted, `"{username} left."` is broadcast and the name is freed.
//!
//! A receiver that falls more than 100 messages behind gets
//! `RecvError::Lagged` from `recv()`; like the example, the forwarding loop
//! (`while let Ok(msg) = rx.recv().await`) then ends, which disconnects that
//! client.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::IntoResponse,
    routing::get,
    Router,
};
use futures_util::{sink::SinkExt, stream::StreamExt};
use tokio::sync::broadcast;

/// Shared state: the taken usernames and the room's broadcast channel.
struct AppState {
    user_set: Mutex<HashSet<String>>,
    tx: broadcast::Sender<String>,
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "3000".to_owned())
        .parse()
        .expect("port must be a number");

    let user_set = Mutex::new(HashSet::new());
    let (tx, _rx) = broadcast::channel(100);
    let app_state = Arc::new(AppState { user_set, tx });

    let app = Router::new().route("/websocket", get(websocket_handler)).with_state(app_state);

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    eprintln!("axum-chat listening on {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

async fn websocket_handler(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ws.on_upgrade(|socket| websocket(socket, state))
}

/// One connected client: read its username, then run the two forwarding tasks.
async fn websocket(stream: WebSocket, state: Arc<AppState>) {
    let (mut sender, mut receiver) = stream.split();

    // The first text message names the user; a taken name is refused.
    let mut username = String::new();
    while let Some(Ok(message)) = receiver.next().await {
        if let Message::Text(name) = message {
            check_username(&state, &mut username, name.as_str());
            if username.is_empty() {
                let _ = sender.send(Message::Text("Username already taken.".into())).await;
                return;
            }
            break;
        }
    }
    if username.is_empty() {
        // The client went away before naming itself.
        return;
    }

    // Subscribe before announcing, so the new user sees its own "joined".
    let mut rx = state.tx.subscribe();
    let _ = state.tx.send(format!("{username} joined."));

    // Channel -> socket. Ends on a socket error, or on any receive error from
    // the channel, including `Lagged` (this receiver fell 100+ behind).
    let mut send_task = tokio::spawn(async move {
        while let Ok(msg) = rx.recv().await {
            if sender.send(Message::Text(msg.into())).await.is_err() {
                break;
            }
        }
    });

    // Socket -> channel, prefixed with the username. Ends at the first
    // message that is not text (or on close/error).
    let tx = state.tx.clone();
    let name = username.clone();
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = receiver.next().await {
            let _ = tx.send(format!("{name}: {}", text.as_str()));
        }
    });

    // Whichever finishes first, stop the other.
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    };

    let _ = state.tx.send(format!("{username} left."));
    state.user_set.lock().unwrap().remove(&username);
}

/// Claims `name` for this connection if nobody holds it.
fn check_username(state: &AppState, string: &mut String, name: &str) {
    let mut user_set = state.user_set.lock().unwrap();
    if !user_set.contains(name) {
        user_set.insert(name.to_owned());
        string.push_str(name);
    }
}
