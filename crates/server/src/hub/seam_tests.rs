//! The hub against test doubles of its two seams, with no storage thread:
//! a broker that only records what the hub asks of it (the test then
//! delivers and settles by hand), and a presence manager whose answer the
//! test chooses.

use super::*;
use crate::broker::presence::LocalPresence;
use crate::broker::{Delivery, Publication, PublishError, Unstored};
use crate::config::Config;
use crate::store::{LogKind, LogMeta, ProbeAnswer, Reader};
use serde_json::value::RawValue;

/// A broker that stores nothing: it keeps what it was given.
#[derive(Debug, Default)]
struct RecordingBroker {
    published: Mutex<Vec<Publication<Ticket>>>,
    /// `+room` for each subscription, `-room` for each unsubscription.
    subscriptions: Mutex<Vec<String>>,
    /// `(user, seq)` of each inbox delivery cursor moved.
    delivered: Mutex<Vec<(String, u64)>>,
    /// While set and closed, every log is pending until it opens.
    gate: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
}

impl Broker<Ticket> for RecordingBroker {
    fn publish(&self, publication: Publication<Ticket>, _idempotency: Option<&str>) -> Result<(), PublishError> {
        lock(&self.published).push(publication);
        Ok(())
    }
    fn subscribe(&self, kind: LogKind, name: &Arc<str>) {
        lock(&self.subscriptions).push(format!("+{}{name}", if kind == LogKind::Inbox { "@" } else { "" }));
    }
    fn unsubscribe(&self, kind: LogKind, name: &str) {
        lock(&self.subscriptions).push(format!("-{}{name}", if kind == LogKind::Inbox { "@" } else { "" }));
    }
    fn pending(&self, _kind: LogKind, _name: &str) -> Option<crate::broker::Pending> {
        let mut gate = lock(&self.gate).clone().filter(|gate| !*gate.borrow())?;
        Some(Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
        }))
    }
    fn lookup(&self, _kind: LogKind, _name: &str) -> crate::broker::Lookup {
        crate::broker::Lookup::Here
    }
    fn meta(&self, _kind: LogKind, _name: &str) -> Option<LogMeta> {
        None
    }
    fn mark_fanned_out(&self, _kind: LogKind, _name: &str, _seq: u64) {}
    fn mark_delivered(&self, user: &str, seq: u64) {
        lock(&self.delivered).push((user.to_owned(), seq));
    }
    fn reader(&self) -> Arc<dyn Reader> {
        crate::store::Backend::reader(&crate::store::memory::Memory::new())
    }
    fn probe(&self, answer: ProbeAnswer) -> Result<(), PublishError> {
        answer(Ok(()));
        Ok(())
    }
    fn log_count(&self) -> usize {
        0
    }
    fn relay(&self, _room: &str, _event: &[u8]) {}
    fn close(&self) {}
}

/// Answers every transition with the same [`Announce`], and counts them.
#[derive(Debug)]
struct FixedPresence(Announce, Mutex<Vec<String>>);

impl Presence for FixedPresence {
    fn arrived(&self, room: &Arc<str>, user: &Arc<str>, _info: Option<&RawValue>) -> Announce {
        lock(&self.1).push(format!("+{user}@{room}"));
        self.0
    }
    fn departed(&self, room: &Arc<str>, user: &Arc<str>) -> Announce {
        lock(&self.1).push(format!("-{user}@{room}"));
        self.0
    }
    fn members(&self, _room: &str) -> crate::broker::presence::Members {
        crate::broker::presence::Members::Here
    }
}

fn hub_over(broker: Arc<RecordingBroker>, presence: Arc<dyn Presence>) -> Arc<Hub> {
    let config = Config::default();
    let policy = Arc::new(PolicyCell::new(Policy::build(&config, &[]).expect("policy")));
    let limits = crate::server::hub_limits(&config);
    Hub::start(limits, Arc::default(), policy, |_| crate::broker::Seams { broker, presence })
}

fn member(hub: &Hub, user: &str) -> Arc<Conn> {
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    hub.register(hub.next_conn_id(), Arc::from(user), peer, Transport::TcpJson)
}

/// The JSON lines queued for `conn`, taken out of its queue.
fn lines(conn: &Conn) -> Vec<serde_json::Value> {
    let mut frames = vec![Bytes::new(); 64];
    let queued = conn.peek(&mut frames);
    let bytes: usize = frames[..queued].iter().map(Bytes::len).sum();
    conn.consume(bytes);
    let parse = |frame: &Bytes| serde_json::from_slice(frame.strip_suffix(b"\n").expect("a JSON line")).expect("JSON");
    frames[..queued].iter().map(parse).collect()
}

fn body(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("JSON")
}

/// Delivers what `alice` published in `lobby` as the broker would, stored
/// with `seq`.
fn deliver_and_settle(hub: &Hub, publication: Publication<Ticket>, seq: u64, outcome: Result<(), Unstored>) {
    let (epoch, ts) = (7, 1_000 + seq);
    if outcome.is_ok() {
        let delivery = Delivery {
            key: &publication.key,
            log: 1,
            epoch,
            seq,
            ts,
            from: &publication.from,
            body: &publication.body,
        };
        Deliveries::deliver(hub, &delivery);
    }
    Deliveries::settle(hub, publication.ticket, outcome.map(|()| Stored { seq, epoch, ts }));
}

#[test]
fn a_stored_message_reaches_the_members_when_the_broker_delivers_it_and_its_sender_is_answered_after() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = hub_over(Arc::clone(&broker), Arc::new(LocalPresence));
    let (alice, bob) = (member(&hub, "alice"), member(&hub, "bob"));
    let room = hub.join(&alice, "lobby").expect("join").room.expect("new member");
    hub.join(&bob, "lobby").expect("join");
    assert_eq!(lines(&alice)[0]["ev"], "join", "alice saw bob arrive");

    let id = body("1");
    let message = Outgoing { body: &body(r#"{"text":"hi"}"#), id: Some(&id), idempotency_key: None };
    hub.publish(&alice, &room, message).expect("accepted");
    let publication = lock(&broker.published).pop().expect("handed to the broker");
    assert_eq!((publication.key.kind, &*publication.key.name, &*publication.from), (LogKind::Room, "lobby", "alice"));
    assert!(lines(&alice).is_empty() && lines(&bob).is_empty(), "nothing before the broker delivers");

    deliver_and_settle(&hub, publication, 1, Ok(()));
    let bob_got = lines(&bob);
    assert_eq!(bob_got.len(), 1);
    assert_eq!(
        (&bob_got[0]["ev"], &bob_got[0]["seq"], &bob_got[0]["body"]["text"]),
        (&"msg".into(), &1.into(), &"hi".into())
    );
    let alice_got = lines(&alice);
    assert_eq!(alice_got.len(), 2, "her own message, then the answer: {alice_got:?}");
    assert_eq!((&alice_got[0]["ev"], &alice_got[1]["re"], &alice_got[1]["seq"]), (&"msg".into(), &1.into(), &1.into()));
}

#[test]
fn a_message_the_broker_could_not_store_reaches_nobody_and_its_sender_is_told() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = hub_over(Arc::clone(&broker), Arc::new(LocalPresence));
    let (alice, bob) = (member(&hub, "alice"), member(&hub, "bob"));
    hub.join(&bob, "lobby").expect("join");
    let room = hub.join(&alice, "lobby").expect("join").room.expect("new member");
    let id = body("\"a\"");
    hub.publish(&alice, &room, Outgoing { body: &body("1"), id: Some(&id), idempotency_key: None }).expect("accepted");
    let publication = lock(&broker.published).pop().expect("handed to the broker");
    let _ = lines(&bob);
    deliver_and_settle(&hub, publication, 1, Err(Unstored::StorageFailed));
    assert!(lines(&bob).is_empty());
    let alice_got = lines(&alice);
    assert_eq!((&alice_got[0]["re"], &alice_got[0]["code"]), (&"a".into(), &"storage_failed".into()), "{alice_got:?}");
}

#[test]
fn the_broker_is_told_when_a_room_or_an_inbox_gets_its_first_member_here_and_loses_its_last() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = hub_over(Arc::clone(&broker), Arc::new(LocalPresence));
    let (alice, bob) = (member(&hub, "alice"), member(&hub, "bob"));
    let room = hub.join(&alice, "lobby").expect("join").room.expect("new member");
    hub.join(&bob, "lobby").expect("join");
    assert_eq!(*lock(&broker.subscriptions), ["+@alice", "+@bob", "+lobby"], "inboxes on connect, the room once");
    hub.leave(&alice, &room);
    assert_eq!(lock(&broker.subscriptions).len(), 3);
    hub.leave(&bob, &room);
    assert_eq!(lock(&broker.subscriptions)[3..], ["-lobby"]);
    hub.join(&bob, "lobby").expect("join again");
    assert_eq!(lock(&broker.subscriptions)[3..], ["-lobby", "+lobby"]);
    let bob_tab = member(&hub, "bob");
    hub.unregister(&bob_tab);
    assert_eq!(lock(&broker.subscriptions)[3..], ["-lobby", "+lobby"], "bob's second tab changes nothing");
    hub.leave(&alice, &room);
    hub.unregister(&alice);
    assert_eq!(lock(&broker.subscriptions)[5..], ["-@alice"], "alice's last connection went");
}

#[test]
fn a_dm_the_broker_delivers_reaches_every_connection_of_its_user_and_moves_the_inbox_cursor() {
    let broker = Arc::new(RecordingBroker::default());
    let hub = hub_over(Arc::clone(&broker), Arc::new(LocalPresence));
    let (alice, bob_phone, bob_laptop) = (member(&hub, "alice"), member(&hub, "bob"), member(&hub, "bob"));
    hub.direct(&alice, "bob", Outgoing { body: &body("\"psst\""), id: None, idempotency_key: None }).expect("accepted");
    let publication = lock(&broker.published).pop().expect("handed to the broker");
    assert_eq!((publication.key.kind, &*publication.key.name), (LogKind::Inbox, "bob"));
    deliver_and_settle(&hub, publication, 4, Ok(()));
    for conn in [&bob_phone, &bob_laptop] {
        let got = lines(conn);
        assert_eq!((&got[0]["ev"], &got[0]["seq"], &got[0]["from"]), (&"dm".into(), &4.into(), &"alice".into()));
    }
    assert!(lines(&alice).is_empty(), "no id: no answer");
    assert_eq!(*lock(&broker.delivered), [("bob".to_owned(), 4)]);
}

#[test]
fn presence_changes_are_announced_here_only_when_the_manager_says_now_and_only_for_a_users_first_and_last_tab() {
    for announce in [Announce::Now, Announce::Later] {
        let presence = Arc::new(FixedPresence(announce, Mutex::default()));
        let hub = hub_over(Arc::default(), Arc::clone(&presence) as Arc<dyn Presence>);
        let (alice, bob_tab1, bob_tab2) = (member(&hub, "alice"), member(&hub, "bob"), member(&hub, "bob"));
        let room = hub.join(&alice, "lobby").expect("join").room.expect("new member");
        hub.join(&bob_tab1, "lobby").expect("join");
        hub.join(&bob_tab2, "lobby").expect("join");
        hub.leave(&bob_tab1, &room);
        hub.leave(&bob_tab2, &room);
        assert_eq!(*lock(&presence.1), ["+alice@lobby", "+bob@lobby", "-bob@lobby"], "node-level transitions only");
        let seen: Vec<serde_json::Value> = lines(&alice).iter().map(|event| event["ev"].clone()).collect();
        let expected: Vec<serde_json::Value> = match announce {
            Announce::Now => vec!["join".into(), "leave".into()],
            Announce::Later => vec![],
        };
        assert_eq!(seen, expected, "{announce:?}");
    }
}

#[tokio::test]
async fn a_join_the_broker_cannot_answer_for_yet_is_answered_once_it_can_and_before_what_arrived_meanwhile() {
    let broker = Arc::new(RecordingBroker::default());
    let (open, gate) = tokio::sync::watch::channel(false);
    *lock(&broker.gate) = Some(gate);
    let hub = hub_over(Arc::clone(&broker), Arc::new(LocalPresence));
    let alice = member(&hub, "alice");
    let mut session = crate::session::Session::silent(Arc::clone(&hub), Arc::clone(&alice));
    session.handle(r#"{"id":1,"op":"join","room":"lobby"}"#);
    tokio::task::yield_now().await;
    assert!(lines(&alice).is_empty(), "no answer while the broker does not know where the room stands");

    let key = crate::store::LogKey { kind: LogKind::Room, name: Arc::from("lobby") };
    let delivery = Delivery { key: &key, log: 1, epoch: 7, seq: 1, ts: 5, from: "bob", body: &body("2") };
    Deliveries::deliver(&*hub, &delivery);
    assert!(lines(&alice).is_empty(), "a message that arrives meanwhile is held");

    open.send(true).expect("gate");
    let mut got = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while got.len() < 2 {
            got.extend(lines(&alice));
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the answer and the held message");
    assert_eq!((&got[0]["re"], &got[0]["ok"], &got[0]["room"]), (&1.into(), &true.into(), &"lobby".into()), "{got:?}");
    assert_eq!((&got[1]["ev"], &got[1]["seq"]), (&"msg".into(), &1.into()), "{got:?}");
}
