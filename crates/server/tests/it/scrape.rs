//! `/metrics` as Prometheus scrapes it: fetched with an HTTP client, parsed
//! by a Prometheus text-format parser (`prometheus-parse`), and each
//! counter compared with what the test did on every
//! transport: connections accepted, messages published and stored,
//! deliveries, a dropped message and the reason, auth failures.

use crate::auth::{now, signed, token_for, token_server, upgrade};
use crate::support::{is_msg, request, wait_for, within, Datagrams, Lines, TestServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_parse::Value;
use serde_json::json;
use switchboard_client::Connection;
use tokio::net::TcpStream;

/// What `/metrics` answers `key`: status, content type and body.
async fn scrape(server: &TestServer, key: &str) -> (StatusCode, String, String) {
    within(async {
        let stream = TcpStream::connect(server.addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("http");
        tokio::spawn(connection);
        let request = Request::get("/metrics")
            .header("host", server.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {key}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("answer");
        let status = response.status();
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, content_type, String::from_utf8(body.to_vec()).expect("UTF-8"))
    })
    .await
}

/// A parsed scrape, read by family and label.
struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    async fn take(server: &TestServer) -> Scrape {
        let key = server.config.auth.api_keys[0].key.clone();
        let (status, content_type, body) = scrape(server, &key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        assert!(body.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
        let lines = body.lines().map(|line| Ok(line.to_owned()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("a Prometheus text exposition"))
    }

    /// The sample `name` whose `label` is `value` (`None`: the family's one
    /// sample); 0 when there is no such sample yet.
    fn sample(&self, name: &str, label: Option<(&str, &str)>) -> Option<&Value> {
        let matches = |sample: &&prometheus_parse::Sample| {
            sample.metric == name && label.is_none_or(|(label, value)| sample.labels.get(label) == Some(value))
        };
        self.0.samples.iter().find(matches).map(|sample| &sample.value)
    }

    /// A counter family's `_total` sample (OpenMetrics names the family
    /// without the suffix, so the parser leaves the sample untyped).
    fn counter(&self, family: &str, label: Option<(&str, &str)>) -> f64 {
        assert!(self.0.docs.contains_key(family), "no HELP for {family}");
        match self.sample(&format!("{family}_total"), label) {
            None => 0.0,
            Some(Value::Counter(value) | Value::Untyped(value)) => *value,
            Some(other) => panic!("{family}: not a counter: {other:?}"),
        }
    }

    fn gauge(&self, family: &str, label: Option<(&str, &str)>) -> f64 {
        match self.sample(family, label) {
            None => 0.0,
            Some(Value::Gauge(value)) => *value,
            Some(other) => panic!("{family}: not a gauge: {other:?}"),
        }
    }
}

/// Scrapes until `family{label}` reaches `at_least` (counts made on the
/// storage thread land after the frames they count).
async fn reaching(server: &TestServer, family: &str, label: Option<(&str, &str)>, at_least: f64) -> Scrape {
    within(async {
        loop {
            let scrape = Scrape::take(server).await;
            if scrape.counter(family, label) >= at_least {
                return scrape;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// One member of room `r` on each transport: two WebSocket users, a JSON
/// lines device, a person in text mode and a UDP player.
struct Members {
    alice: Connection,
    bob: Connection,
    device: Lines,
    person: Lines,
    player: Datagrams,
}

async fn join_everyone(server: &TestServer) -> Members {
    let mut alice = server.client_with_token(&token_for("alice")).await;
    let mut bob = server.client_with_token(&token_for("bob")).await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(request(client, json!({"op": "join", "room": "r"})).await["ok"], json!(true));
    }
    let mut device = Lines::connect(server.tcp).await;
    device
        .send(&format!(
            "{}\n{}\n",
            json!({"op": "hello", "token": token_for("dev")}),
            json!({"op": "join", "room": "r", "id": 1})
        ))
        .await;
    device.json_until(|v| v["re"] == json!(1)).await;
    let mut person = Lines::connect(server.tcp).await;
    person.send(&format!("/auth {}\n/join r\n", token_for("ada"))).await;
    person.until("you joined r").await;
    let (player, hello) = Datagrams::hello_with(server.udp, json!({"op": "hello", "token": token_for("player")})).await;
    assert_eq!(hello["user"], json!("player"));
    player.send(json!({"op": "join", "room": "r", "id": 1})).await;
    player.until(|v| v["re"] == json!(1)).await;
    Members { alice, bob, device, person, player }
}

#[tokio::test]
async fn metrics_parse_as_openmetrics_and_count_what_happened_on_every_transport() {
    let server = token_server(|_| {}).await;
    let mut members = join_everyone(&server).await;
    let accepted = "switchboard_connections_accepted";
    let before = Scrape::take(&server).await;
    for (transport, count) in [("websocket", 2.0), ("tcp_json", 1.0), ("tcp_text", 1.0), ("udp", 1.0)] {
        assert_eq!(before.counter(accepted, Some(("transport", transport))), count, "{transport}");
        assert_eq!(before.gauge("switchboard_connections_open", Some(("transport", transport))), count, "{transport}");
    }

    // Three stored messages, without ids (no acks): five members each.
    let deliveries = before.counter("switchboard_deliveries", None);
    for n in 0..3 {
        members.alice.send_text(json!({"op": "send", "room": "r", "body": {"n": n}}).to_string()).await.expect("send");
    }
    for _ in 0..3 {
        wait_for(&mut members.bob, is_msg).await;
        members.device.json_until(is_msg).await;
        members.person.until("[r] alice:").await;
        members.player.until(is_msg).await;
    }
    let after = reaching(&server, "switchboard_messages_stored", None, 3.0).await;
    assert_eq!(after.counter("switchboard_messages_published", None), 3.0);
    assert_eq!(after.counter("switchboard_messages_stored", None), 3.0);
    let after = reaching(&server, "switchboard_deliveries", None, deliveries + 15.0).await;
    assert_eq!(after.counter("switchboard_deliveries", None), deliveries + 15.0, "5 members x 3 messages, no more");

    // A message too large for a UDP datagram: four deliveries, one drop, its reason.
    let big = "x".repeat(1300);
    members.alice.send_text(json!({"op": "send", "room": "r", "body": big}).to_string()).await.expect("send");
    wait_for(&mut members.bob, is_msg).await;
    let dropped = reaching(&server, "switchboard_messages_dropped", Some(("reason", "udp_oversize")), 1.0).await;
    assert_eq!(dropped.counter("switchboard_messages_dropped", Some(("reason", "udp_oversize"))), 1.0);
    let dropped = reaching(&server, "switchboard_deliveries", None, deliveries + 19.0).await;
    assert_eq!(dropped.counter("switchboard_deliveries", None), deliveries + 19.0);

    // Auth failures: a token signed with another secret, a wrong API key.
    let forged = signed(&json!({"sub": "mallory", "exp": now() + 60}), b"a-secret-this-server-never-had");
    assert_eq!(upgrade(server.addr, &format!("/ws?token={forged}"), "").await.0, 401);
    assert_eq!(scrape(&server, "not-the-key-at-all").await.0, StatusCode::UNAUTHORIZED);
    let last = Scrape::take(&server).await;
    let failures = "switchboard_auth_failures";
    assert_eq!(last.counter(failures, Some(("code", "token_invalid_signature"))), 1.0);
    assert_eq!(last.counter(failures, Some(("code", "api_key_invalid"))), 1.0);
    assert_eq!(last.counter("switchboard_connections_refused", Some(("reason", "auth"))), 1.0);
    assert_eq!(last.counter(accepted, Some(("transport", "websocket"))), 2.0, "a refused upgrade is not accepted");
}
