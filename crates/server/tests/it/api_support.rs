//! Helpers for the HTTP API tests: a real HTTP client (reqwest) against a
//! [`TestServer`], and a raw one for what reqwest will not send.

use crate::support::{read_until_closed, within, TestServer};
use reqwest::Method;
use serde_json::Value;
use switchboard_server::config::ApiKey;
use switchboard_server::Config;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// An API key the tests configure.
pub const KEY: &str = "backend-key-0123456789";

/// Configures [`KEY`] as the API key named `backend`.
pub fn with_key(config: &mut Config) {
    config.auth.api_keys = vec![ApiKey { name: "backend".into(), key: KEY.into(), ..ApiKey::default() }];
}

/// A client for one server.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    /// Sent as `Authorization: Bearer` when set.
    pub key: Option<String>,
}

/// An answer: its status, headers and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Answer {
    /// The status, as a number (the code registry looks for it in tests).
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

impl Api {
    /// A client for `server`, without a key.
    pub fn new(server: &TestServer) -> Api {
        Api { client: reqwest::Client::new(), base: format!("http://{}", server.addr), key: None }
    }

    /// A client for `server` that presents [`KEY`].
    pub fn keyed(server: &TestServer) -> Api {
        Api { key: Some(KEY.into()), ..Api::new(server) }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = within(request.send()).await.expect("an HTTP answer");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = within(response.text()).await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.request(Method::POST, path).json(body)).await
    }
}

/// Sends `request` (a whole HTTP/1.1 request) on a new connection and
/// returns everything the server sent until it closed.
/// A server that answers before reading the whole body may close (or reset)
/// the connection while it is still being written: what arrived counts.
pub async fn raw(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    read_until_closed(&mut stream).await
}
