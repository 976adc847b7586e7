//! A push gateway for tests: an HTTP server on loopback that records every
//! `POST /_matrix/push/v1/notify` body and answers as it is told (accept, fail, reject a
//! push key). It speaks just enough HTTP/1.1, one request per connection.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// How the gateway answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with `{"rejected": []}`.
    Accept,
    /// This HTTP status with an error body; the request is still recorded.
    Fail(u16),
    /// 200 with these push keys rejected.
    Reject(Vec<String>),
}

#[derive(Default)]
struct Shared {
    bodies: Vec<Value>,
    /// Requests answered with an error, not counted in `bodies`.
    failed: usize,
    answer: Option<Answer>,
}

pub struct PushGateway {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl PushGateway {
    /// A gateway accepting everything, on a free loopback port.
    pub async fn start() -> PushGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        Self::serve(listener)
    }

    /// A gateway that is down: its port is reserved by nobody, and [`PushGateway::up`] starts
    /// listening there.
    pub fn down() -> PushGateway {
        let port = crate::federation::free_loopback_port();
        PushGateway { port, shared: Arc::default(), arrived: Arc::default(), task: None }
    }

    fn serve(listener: TcpListener) -> PushGateway {
        let port = listener.local_addr().expect("local address").port();
        let mut gateway = PushGateway { port, shared: Arc::default(), arrived: Arc::default(), task: None };
        gateway.listen(listener);
        gateway
    }

    fn listen(&mut self, listener: TcpListener) {
        let (shared, arrived) = (self.shared.clone(), self.arrived.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (shared, arrived) = (shared.clone(), arrived.clone());
                tokio::spawn(answer(stream, shared, arrived));
            }
        }));
    }

    /// Starts listening on the reserved port (see [`PushGateway::down`]).
    pub async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("push gateway port {} busy ({e}); retrying", self.port);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot listen on port {}: {e}", self.port),
            }
        };
        self.listen(listener);
    }

    /// The pusher URL for this gateway.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/_matrix/push/v1/notify", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the gateway answers from now on.
    pub fn answer(&self, answer: Answer) {
        self.shared.lock().unwrap().answer = Some(answer);
    }

    /// Every notification accepted so far, oldest first (the `notification` objects).
    pub fn received(&self) -> Vec<Value> {
        self.shared.lock().unwrap().bodies.clone()
    }

    /// How many requests were answered with an error.
    pub fn failed(&self) -> usize {
        self.shared.lock().unwrap().failed
    }

    /// Waits until `n` notifications were accepted that `matches` selects, and returns them;
    /// panics after `timeout` with what did arrive.
    pub async fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            let found: Vec<Value> = self.received().into_iter().filter(|n| matches(n)).collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                panic!("expected {n} notifications within {timeout:?}, got {:#?}", self.received());
            }
        }
    }

    /// Waits until `n` event notifications arrived (not badge updates).
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_for(n, timeout, |n| n.get("event_id").is_some()).await
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads one request, records it and answers.
async fn answer(mut stream: TcpStream, shared: Arc<Mutex<Shared>>, arrived: Arc<Notify>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            break (end + 4, length);
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let request_line =
        String::from_utf8_lossy(&data[..head_end]).lines().next().unwrap_or_default().to_owned();
    let body: Value = serde_json::from_slice(&data[head_end..head_end + length]).unwrap_or(Value::Null);
    let (status, reply) = {
        let mut shared = shared.lock().unwrap();
        let answer = shared.answer.clone().unwrap_or(Answer::Accept);
        if request_line != "POST /_matrix/push/v1/notify HTTP/1.1" {
            (404, json!({"errcode": "M_UNRECOGNIZED", "error": request_line}))
        } else {
            match answer {
                Answer::Fail(status) => {
                    shared.failed += 1;
                    (status, json!({"error": "the gateway is having a bad day"}))
                }
                Answer::Accept => {
                    shared.bodies.push(body["notification"].clone());
                    (200, json!({"rejected": []}))
                }
                Answer::Reject(keys) => {
                    shared.bodies.push(body["notification"].clone());
                    (200, json!({"rejected": keys}))
                }
            }
        }
    };
    arrived.notify_waiters();
    let reply = reply.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
