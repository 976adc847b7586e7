//! Just enough of the client-server API to drive load: register, rooms, send, sync.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

static TXN: AtomicU64 = AtomicU64::new(0);

/// A logged-in user.
#[derive(Clone)]
pub struct User {
    pub http: Client,
    pub base: String,
    pub token: String,
}

pub fn http_client(pool: usize) -> Client {
    Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn check(response: reqwest::Response, what: &str) -> Result<Value, String> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err(format!("{what}: {status} {body}"));
    }
    Ok(body)
}

/// Registers `name` with the dummy stage (open registration on the server under test).
pub async fn register(http: &Client, base: &str, name: &str, password: &str) -> Result<User, String> {
    let url = format!("{base}/_matrix/client/v3/register");
    let body = json!({"username": name, "password": password, "auth": {"type": "m.login.dummy"}, "inhibit_login": false});
    let reply =
        check(http.post(&url).json(&body).send().await.map_err(|e| e.to_string())?, "register").await?;
    Ok(User {
        http: http.clone(),
        base: base.to_owned(),
        token: reply["access_token"].as_str().ok_or("no access_token")?.to_owned(),
    })
}

impl User {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        check(request.send().await.map_err(|e| format!("{what}: {e}"))?, what).await
    }

    pub async fn post(&self, path: &str, body: &Value, what: &str) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, Some(body), what).await
    }

    pub async fn create_room(&self) -> Result<String, String> {
        let reply = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&json!({"preset": "public_chat"})),
                "createRoom",
            )
            .await?;
        Ok(reply["room_id"].as_str().ok_or("no room_id")?.to_owned())
    }

    pub async fn join(&self, room: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room)),
            Some(&json!({})),
            "join",
        )
        .await
        .map(|_| ())
    }

    /// Sends a text message; returns its event id.
    pub async fn send(&self, room: &str, body: &str) -> Result<String, String> {
        let txn = TXN.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/b{}-{txn}",
            enc(room),
            std::process::id()
        );
        let reply = self
            .call(reqwest::Method::PUT, &path, Some(&json!({"msgtype": "m.text", "body": body})), "send")
            .await?;
        Ok(reply["event_id"].as_str().unwrap_or_default().to_owned())
    }

    /// One `/sync`; `since` None is an initial sync.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Result<Value, String> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&set_presence=offline");
        if let Some(since) = since {
            path.push_str(&format!("&since={}", enc(since)));
        }
        self.call(reqwest::Method::GET, &path, None, "sync").await
    }
}

/// Message bodies of a room's timeline events in a sync response.
pub fn timeline_bodies<'a>(sync: &'a Value, room: &str) -> impl Iterator<Item = &'a str> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str())
}
