//! The human text mode of raw TCP (telnet, nc): the typed commands of
//! docs/PROTOCOL.md that raw.rs does not use (`/leave`, `/msg`, `/rooms`,
//! `/history`), as a person would see them.

use crate::support::{is_msg, request, wait_for, Lines, TestServer};
use serde_json::json;

#[tokio::test]
async fn leave_msg_rooms_and_history_in_text_mode() {
    let server = TestServer::start().await;
    let mut web = server.client("webby").await;
    request(&mut web, json!({"op": "join", "room": "lobby"})).await;
    let mut human = Lines::connect(server.tcp).await;
    human.send("/nick tom\n/rooms\n").await;
    human.until("you are now tom").await;
    assert_eq!(human.until("* rooms").await, "* rooms: lobby\n");
    human.send("/join lobby\n/join games\n/rooms\n").await;
    human.until("you joined lobby").await;
    human.until("you joined games").await;
    assert_eq!(human.until("* rooms").await, "* rooms: games, lobby\n");

    human.send("/msg webby psst\n").await;
    assert_eq!(human.until("sent").await, "* sent\n");
    let dm = wait_for(&mut web, |e| e["ev"] == json!("dm")).await;
    assert_eq!(
        (dm["from"].clone(), dm["to"].clone(), dm["body"].clone()),
        (json!("tom"), json!("webby"), json!("psst"))
    );

    // /leave leaves the current room; the one joined before becomes current.
    human.send("/leave\n").await;
    assert_eq!(human.until("you left").await, "* you left games\n");
    human.send("said in the lobby\n/rooms\n").await;
    let said = wait_for(&mut web, is_msg).await;
    assert_eq!((said["room"].clone(), said["body"].clone()), (json!("lobby"), json!("said in the lobby")));
    assert_eq!(human.until("* rooms").await, "* rooms: lobby\n", "games went with its last member");

    for text in ["one", "two", "three"] {
        request(&mut web, json!({"op": "send", "room": "lobby", "body": text})).await;
    }
    human.until("webby: three").await;
    human.send("/history 2\n").await;
    assert_eq!([human.line().await, human.line().await], ["[lobby] webby: two\n", "[lobby] webby: three\n"]);
    human.send("/history\n").await;
    assert_eq!(human.line().await, "[lobby] tom: said in the lobby\n", "the default reaches back to the first");
    human.until("webby: three").await;
    human.send("/leave\n/leave\nhello?\n").await;
    human.until("you left lobby").await;
    assert_eq!(human.line().await, "! join a room first: /join ROOM\n", "/leave outside any room");
    assert_eq!(human.line().await, "! join a room first: /join ROOM\n", "a line said outside any room");
}
