//! Rooms, direct messages and presence between real clients.

use crate::support::{is_msg, request, wait_for, within, TestServer};
use serde_json::json;

#[tokio::test]
async fn two_users_chat_in_a_room() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    assert_eq!((alice.user.as_str(), bob.user.as_str()), ("alice", "bob"));
    assert_ne!(alice.conn, bob.conn);

    assert_eq!(request(&mut alice, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
    assert_eq!(request(&mut bob, json!({"op": "join", "room": "lobby"})).await["ok"], json!(true));
    let joined = wait_for(&mut alice, |e| e["ev"] == json!("join")).await;
    assert_eq!(joined, json!({"ev": "join", "room": "lobby", "user": "bob"}));

    let reply = request(&mut bob, json!({"op": "send", "room": "lobby", "body": {"text": "hi alice"}})).await;
    assert_eq!((reply["ok"].clone(), reply["seq"].clone()), (json!(true), json!(1)));
    let message = wait_for(&mut alice, is_msg).await;
    assert_eq!(message["from"], json!("bob"));
    assert_eq!(message["body"], json!({"text": "hi alice"}));
    assert_eq!(message["seq"], json!(1));
    assert!(message["ts"].as_u64().expect("ts") > 1_600_000_000_000, "ts is Unix milliseconds");
    let echo = wait_for(&mut bob, is_msg).await;
    assert_eq!(echo, message, "the sender receives the same event");
}

#[tokio::test]
async fn the_sender_cannot_be_forged_and_sending_needs_membership() {
    let server = TestServer::start().await;
    let mut mallory = server.client("mallory").await;
    let refused = request(&mut mallory, json!({"op": "send", "room": "lobby", "body": 1})).await;
    assert_eq!((refused["ok"].clone(), refused["code"].clone()), (json!(false), json!("not_member")));
    request(&mut mallory, json!({"op": "join", "room": "lobby"})).await;
    request(&mut mallory, json!({"op": "send", "room": "lobby", "body": "x", "from": "alice"})).await;
    let message = wait_for(&mut mallory, is_msg).await;
    assert_eq!(message["from"], json!("mallory"));
}

#[tokio::test]
async fn a_direct_message_reaches_every_tab_of_its_target() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob_laptop = server.client("bob").await;
    let mut bob_phone = server.client("bob").await;

    let reply = request(&mut alice, json!({"op": "dm", "to": "bob", "body": {"text": "psst"}})).await;
    assert_eq!(reply["ok"], json!(true));
    for tab in [&mut bob_laptop, &mut bob_phone] {
        let dm = wait_for(tab, |e| e["ev"] == json!("dm")).await;
        assert_eq!((dm["from"].clone(), dm["to"].clone()), (json!("alice"), json!("bob")));
        assert_eq!((dm["seq"].clone(), dm["body"].clone()), (reply["seq"].clone(), json!({"text": "psst"})));
    }
}

#[tokio::test]
async fn presence_counts_users_not_tabs() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    request(&mut alice, json!({"op": "join", "room": "r"})).await;
    let mut bob_one = server.client("bob").await;
    let mut bob_two = server.client("bob").await;
    request(&mut bob_one, json!({"op": "join", "room": "r"})).await;
    request(&mut bob_two, json!({"op": "join", "room": "r"})).await;

    let listed = request(&mut alice, json!({"op": "presence", "room": "r"})).await;
    assert_eq!(listed["users"], json!(["alice", "bob"]));

    let left = request(&mut bob_one, json!({"op": "leave", "room": "r"})).await;
    assert_eq!((left["ok"].clone(), left["room"].clone()), (json!(true), json!("r")), "{left}");
    request(&mut bob_two, json!({"op": "leave", "room": "r"})).await;
    // A marker published after both leaves: every presence event for bob
    // is queued before it, so alice's events up to it are the whole story.
    request(&mut alice, json!({"op": "send", "room": "r", "body": "marker"})).await;
    let mut seen = Vec::new();
    within(async {
        loop {
            let event = alice.next_event().await.expect("event");
            if is_msg(&event) {
                break;
            }
            seen.push(event);
        }
    })
    .await;
    let presence: Vec<_> = seen.iter().filter(|e| e["user"] == json!("bob")).collect();
    assert_eq!(
        presence,
        [&json!({"ev": "join", "room": "r", "user": "bob"}), &json!({"ev": "leave", "room": "r", "user": "bob"})],
        "one join for the first tab, one leave for the last"
    );
    let listed = request(&mut alice, json!({"op": "presence", "room": "r"})).await;
    assert_eq!(listed["users"], json!(["alice"]));
}

#[tokio::test]
async fn a_disconnect_counts_as_leaving_every_room() {
    let server = TestServer::start().await;
    let rooms = ["r1", "r2", "r3"];
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    for room in rooms {
        request(&mut alice, json!({"op": "join", "room": room})).await;
        request(&mut bob, json!({"op": "join", "room": room})).await;
    }
    within(bob.close()).await.expect("close");
    let mut left = Vec::new();
    while left.len() < rooms.len() {
        let event = wait_for(&mut alice, |e| e["ev"] == json!("leave")).await;
        assert_eq!(event["user"], json!("bob"), "{event}");
        left.push(event["room"].as_str().expect("room").to_owned());
    }
    left.sort();
    assert_eq!(left, rooms, "one leave per room");
    for room in rooms {
        let listed = request(&mut alice, json!({"op": "presence", "room": room})).await;
        assert_eq!(listed["users"], json!(["alice"]), "{room}");
    }
}

#[tokio::test]
async fn two_hundred_clients_receive_every_message_in_order() {
    let server = TestServer::start().await;
    let mut subscribers = Vec::new();
    for index in 0..200 {
        let mut client = server.client(&format!("user{index}")).await;
        request(&mut client, json!({"op": "join", "room": "crowd"})).await;
        subscribers.push(client);
    }
    let mut publisher = server.client("publisher").await;
    request(&mut publisher, json!({"op": "join", "room": "crowd"})).await;
    for n in 0..50 {
        request(&mut publisher, json!({"op": "send", "room": "crowd", "body": {"n": n}})).await;
    }
    let readers = subscribers.into_iter().map(|mut client| {
        tokio::spawn(async move {
            let mut bodies = Vec::new();
            while bodies.len() < 50 {
                let message = wait_for(&mut client, |e| is_msg(e) && e["from"] == json!("publisher")).await;
                assert_eq!(message["seq"], json!(bodies.len() + 1), "seq has no gap");
                bodies.push(message["body"]["n"].as_u64().expect("n"));
            }
            bodies
        })
    });
    for reader in readers {
        let bodies = reader.await.expect("reader");
        assert_eq!(bodies, (0..50).collect::<Vec<u64>>());
    }
}

#[tokio::test]
async fn the_echo_endpoint_returns_every_message_unchanged() {
    use futures_util::{SinkExt, StreamExt};
    use switchboard_client::tungstenite::Message;
    let server = TestServer::start().await;
    let url = format!("ws://{}/ws/echo", server.addr);
    let (mut socket, _) = within(tokio_tungstenite::connect_async(url)).await.expect("connect");
    let messages = [Message::text("{not json at all"), Message::binary(vec![0u8, 255, 7]), Message::text("")];
    for message in messages {
        socket.send(message.clone()).await.expect("send");
        let echoed = within(socket.next()).await.expect("open").expect("frame");
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn rooms_over_the_presence_limit_stop_sending_join_and_leave_events() {
    let server = TestServer::with(|config| config.limits.presence_events_max_members = 2).await;
    let mut alice = server.client("alice").await;
    assert_eq!(request(&mut alice, json!({"op": "join", "room": "big"})).await["presence_events"], json!(true));
    let mut bob = server.client("bob").await;
    request(&mut bob, json!({"op": "join", "room": "big"})).await;
    let mut carol = server.client("carol").await;
    let reply = request(&mut carol, json!({"op": "join", "room": "big"})).await;
    assert_eq!(reply["presence_events"], json!(false), "the joiner is told");
    request(&mut carol, json!({"op": "send", "room": "big", "body": "marker"})).await;
    let mut seen = Vec::new();
    while seen.last().is_none_or(|e| !is_msg(e)) {
        seen.push(within(alice.next_event()).await.expect("event"));
    }
    let joins: Vec<_> = seen.iter().filter(|e| e["ev"] == json!("join")).map(|e| e["user"].clone()).collect();
    assert_eq!(joins, [json!("bob")], "carol's join went over the limit and was not announced");
    let listed = request(&mut alice, json!({"op": "presence", "room": "big"})).await;
    assert_eq!(listed["users"], json!(["alice", "bob", "carol"]), "the presence query still lists everyone");
}

#[tokio::test]
async fn every_frame_queued_for_a_member_is_counted_as_a_delivery() {
    let server = TestServer::start().await;
    let mut members = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let mut client = server.client(name).await;
        request(&mut client, json!({"op": "join", "room": "lobby"})).await;
        members.push(client);
    }
    let before = server.metric("switchboard_deliveries_total").await;
    // Without ids: no replies, so only the two messages' copies count.
    for volatile in [true, false] {
        let send = json!({"op": "send", "room": "lobby", "volatile": volatile, "body": volatile});
        members[0].send_text(send.to_string()).await.expect("send");
        for member in &mut members {
            wait_for(member, |e| is_msg(e) && e["body"] == json!(volatile)).await;
        }
    }
    let after = server.metric_reaching("switchboard_deliveries_total", before + 6.0).await;
    assert_eq!(after - before, 6.0, "two messages, three members");
}
