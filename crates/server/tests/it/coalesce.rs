//! The flush clock over real sockets: frames others publish to a connection
//! that already wrote in the current window wait for the next window and go
//! out together; with the window at zero, each goes out on its own.

use crate::support::{is_msg, request, wait_for, TestServer};
use serde_json::json;
use std::time::Duration;
use switchboard_client::Client;

/// Socket writes the server made while `alice` sent ten messages 5 ms apart
/// to a room with two other members, everything delivered.
async fn writes_for_paced_messages(window: Duration) -> f64 {
    let server = TestServer::with(|config| config.delivery.write_window = window).await;
    let mut members: Vec<Client> = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut client = server.client(name).await;
        assert_eq!(request(&mut client, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
        members.push(client);
    }
    let send = |n: u64| json!({"op": "send", "room": "lobby", "volatile": true, "body": {"n": n}}).to_string();
    // Message 0 starts a window in which everyone has written.
    members[0].send_text(send(0)).await.expect("send");
    for member in &mut members {
        wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(0)).await;
    }
    let before = server.metric("switchboard_socket_writes_total").await;
    for n in 1..=10 {
        members[0].send_text(send(n)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for member in &mut members {
        wait_for(member, |event| is_msg(event) && event["body"]["n"] == json!(10)).await;
    }
    server.metric("switchboard_socket_writes_total").await - before
}

#[tokio::test]
async fn fan_out_frames_wait_for_the_next_window_and_go_out_together() {
    // Alice reads each of her sends, so she writes each time (10); Bob and
    // Carol get everything in the next window or the one after: 1–2 each.
    // One more write answers the first /metrics request.
    let coalesced = writes_for_paced_messages(Duration::from_secs(1)).await;
    assert!(coalesced <= 10.0 + 2.0 * 2.0 + 1.0, "{coalesced} writes with a 1 s window");
    let uncoalesced = writes_for_paced_messages(Duration::ZERO).await;
    assert!(uncoalesced >= 10.0 + 2.0 * 9.0, "{uncoalesced} writes with no window");
}
