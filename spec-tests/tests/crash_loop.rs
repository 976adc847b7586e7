//! Crash loop (issue #27): server A is killed with SIGKILL again and again while its users
//! send messages, upload media, send each other to-device messages, upload and claim
//! one-time keys and long-poll `/sync`, and a user on server B sends messages, to-device
//! messages and key claims over federation. After every restart, everything a `200`
//! acknowledged is there:
//!
//! - every acknowledged event is readable on A (`GET /rooms/{id}/event/{id}`), and
//!   `/messages` lists each exactly once, each sender's in the order they were acknowledged;
//! - every acknowledged upload downloads with the same bytes;
//! - every acknowledged to-device message reaches its device's chain of syncs exactly once.
//!   The client syncs from the `next_batch` of the last response it *received* (a response
//!   lost to the kill does not move it on, so its messages may come again, as the server
//!   promises); over that chain each message appears once, never twice;
//! - every acknowledged one-time key is claimed exactly once: either by a claim during the
//!   load, or by draining the device's keys after the restart. A claim whose reply was lost
//!   (or that B could not forward) may have used a key up, so a device may miss at most as
//!   many keys as claims of its keys were lost;
//! - what B acknowledged (messages, to-device messages for A's users) reaches A after the
//!   restart, and at the end every message A acknowledged has reached B.
//!
//! After every kill, with the server down, `myelin db verify` finds the store clean (its
//! events, indexes, state snapshots, short ids and counters agree, and every uploaded file
//! is on disk), and after some of the kills the store's users are listed offline.
//!
//! `CRASH_LOOP_CYCLES` sets the number of kills (default 10), `CRASH_LOOP_SEED` replays a
//! run's random load durations and payload sizes.

mod e2ee_support;
mod federation_support;
mod sync_support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use e2ee_support::{Device, OTK, upload_device_keys};
use federation_support::{RETRY, shared_room};
use spec_tests::{rooms::*, *};

/// Users on A besides Alice (who `shared_room` makes).
const MORE_LOCAL_USERS: [&str; 2] = ["carol", "dave"];
/// Every this many cycles (and after the last), check everything acknowledged so far
/// one by one, not only what the cycle added (`/messages` covers all events every cycle).
const FULL_CHECK_EVERY: usize = 10;
/// After every this many kills, read the store offline before restarting.
const OFFLINE_READ_EVERY: usize = 5;
/// How long a to-device message from a device on A may take to show up after the restart.
const LOCAL_DELIVERY: Duration = Duration::from_secs(30);
const TO_DEVICE_TYPE: &str = "org.myelin.crash_loop";

// ---------------------------------------------------------------------------------------
// HTTP that may fail: a request the kill cut off is not acknowledged.

struct Reply {
    status: u16,
    bytes: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

enum Body {
    Empty,
    Json(Value),
    Bytes(&'static str, Vec<u8>),
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap())
}

/// `method path` as `client`; `None` when the connection failed or the reply was cut off.
async fn call(client: &Client, method: &str, path: &str, body: Body) -> Option<Reply> {
    let mut request = http().request(method.parse().unwrap(), format!("{}{path}", client.base));
    if let Some(token) = &client.access_token {
        request = request.bearer_auth(token);
    }
    request = match body {
        Body::Empty => request,
        Body::Json(value) => request.json(&value),
        Body::Bytes(content_type, bytes) => request.header("content-type", content_type).body(bytes),
    };
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.ok()?.to_vec();
    Some(Reply { status, bytes })
}

/// Like [`call`], for the checks after a restart, where the server must answer.
async fn must(client: &Client, method: &str, path: &str, body: Body) -> Reply {
    call(client, method, path, body).await.unwrap_or_else(|| panic!("{method} {path}: no reply"))
}

/// xorshift64*: enough randomness for load timings and sizes, replayable from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

// ---------------------------------------------------------------------------------------
// What was acknowledged

/// `user|device`.
type DeviceKey = String;

fn device_key(client: &Client) -> DeviceKey {
    format!("{}|{}", client.user_id(), client.device_id.as_deref().unwrap())
}

#[derive(Default)]
struct Ledger {
    /// Per sender (on A or B), its acknowledged message ids in the order acknowledged.
    events: BTreeMap<String, Vec<String>>,
    /// Acknowledged uploads: `mxc://` URI and the bytes.
    uploads: Vec<(String, Vec<u8>)>,
    /// Acknowledged to-device message ids per target device.
    to_device: BTreeMap<DeviceKey, BTreeSet<String>>,
    /// Acknowledged one-time key ids per device.
    keys_uploaded: BTreeMap<DeviceKey, BTreeSet<String>>,
    /// Key ids handed out by claims that were answered, per device, as often as handed out.
    keys_claimed: BTreeMap<DeviceKey, Vec<String>>,
    /// Claims of a device's keys whose outcome is unknown (reply lost, or B reported A
    /// unreachable): each may have used up one key.
    lost_claims: BTreeMap<DeviceKey, usize>,
    /// Replies during the load that were neither a 200 nor a lost connection.
    unexpected: Vec<String>,
    to_device_total: usize,
    keys_uploaded_total: usize,
}

type Shared = Arc<Mutex<Ledger>>;

/// A device's `/sync` chain: where it has got to and the to-device message ids received.
#[derive(Default)]
struct Inbox {
    since: Option<String>,
    received: Vec<String>,
}

type SharedInbox = Arc<Mutex<Inbox>>;

fn note(ledger: &Shared, what: &str, reply: &Reply) {
    let text = String::from_utf8_lossy(&reply.bytes);
    ledger.lock().unwrap().unexpected.push(format!("{what}: {} {text}", reply.status));
}

/// One load task's request loop: runs `step` with 0, 1, … until `stop` is set or a step
/// reports that the server is gone.
async fn repeat<F, Fut>(stop: Arc<AtomicBool>, pause_ms: u64, mut step: F)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for n in 0.. {
        if stop.load(Ordering::Relaxed) || !step(n).await {
            return;
        }
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Load

async fn send_message(client: Client, room: String, tag: String, n: u64, ledger: Shared) -> bool {
    let path = room_path(&room, &format!("send/m.room.message/{tag}-{n}"));
    let body = json!({"msgtype": "m.text", "body": format!("{tag} {n}")});
    let Some(reply) = call(&client, "PUT", &path, Body::Json(body)).await else { return false };
    match reply.status {
        200 => {
            let id = reply.json()["event_id"].as_str().expect("event_id").to_owned();
            ledger.lock().unwrap().events.entry(client.user_id().to_owned()).or_default().push(id);
        }
        _ => note(&ledger, &path, &reply),
    }
    true
}

async fn upload(client: Client, bytes: Vec<u8>, ledger: Shared) -> bool {
    let body = Body::Bytes("application/octet-stream", bytes.clone());
    let Some(reply) = call(&client, "POST", "/_matrix/media/v3/upload", body).await else { return false };
    match reply.status {
        200 => {
            let mxc = reply.json()["content_uri"].as_str().expect("content_uri").to_owned();
            ledger.lock().unwrap().uploads.push((mxc, bytes));
        }
        _ => note(&ledger, "upload", &reply),
    }
    true
}

async fn send_to_device(client: Client, target: DeviceKey, id: String, ledger: Shared) -> bool {
    let (user, device) = target.split_once('|').unwrap();
    let path = format!("/_matrix/client/v3/sendToDevice/{TO_DEVICE_TYPE}/{}", enc(&id));
    let body = json!({"messages": {user: {device: {"id": id}}}});
    let Some(reply) = call(&client, "PUT", &path, Body::Json(body)).await else { return false };
    match reply.status {
        200 => {
            let mut ledger = ledger.lock().unwrap();
            ledger.to_device.entry(target).or_default().insert(id);
            ledger.to_device_total += 1;
        }
        _ => note(&ledger, &path, &reply),
    }
    true
}

async fn upload_keys(client: Client, keys: Value, ledger: Shared) -> bool {
    let ids: Vec<String> = keys.as_object().unwrap().keys().cloned().collect();
    let body = Body::Json(json!({"one_time_keys": keys}));
    let Some(reply) = call(&client, "POST", "/_matrix/client/v3/keys/upload", body).await else {
        return false;
    };
    match reply.status {
        200 => {
            let mut ledger = ledger.lock().unwrap();
            ledger.keys_uploaded_total += ids.len();
            ledger.keys_uploaded.entry(device_key(&client)).or_default().extend(ids);
        }
        _ => note(&ledger, "keys/upload", &reply),
    }
    true
}

/// Claims one key of `target`; returns whether a reply came and whether it carried a key.
async fn claim_key(client: &Client, target: &DeviceKey, ledger: &Shared) -> (bool, bool) {
    let (user, device) = target.split_once('|').unwrap();
    let body = Body::Json(json!({"one_time_keys": {user: {device: OTK}}}));
    let reply = call(client, "POST", "/_matrix/client/v3/keys/claim", body).await;
    let mut ledger = ledger.lock().unwrap();
    let Some(reply) = reply.filter(|r| r.status == 200) else {
        *ledger.lost_claims.entry(target.clone()).or_default() += 1;
        return (false, false);
    };
    let body = reply.json();
    let keys = body["one_time_keys"][user][device].as_object().cloned().unwrap_or_default();
    if keys.is_empty() && body["failures"].as_object().is_some_and(|f| !f.is_empty()) {
        *ledger.lost_claims.entry(target.clone()).or_default() += 1;
    }
    let claimed = ledger.keys_claimed.entry(target.clone()).or_default();
    claimed.extend(keys.keys().cloned());
    (true, !keys.is_empty())
}

/// One long-poll of a device's sync chain; `false` once the server is gone.
async fn poll(client: &Client, inbox: &SharedInbox, timeout_ms: u64) -> bool {
    let since = inbox.lock().unwrap().since.clone();
    let mut path =
        format!("/_matrix/client/v3/sync?timeout={timeout_ms}&set_presence=offline&filter={}", enc(FILTER));
    if let Some(since) = &since {
        path.push_str(&format!("&since={}", enc(since)));
    }
    let Some(reply) = call(client, "GET", &path, Body::Empty).await else { return false };
    assert_eq!(reply.status, 200, "{path}: {}", String::from_utf8_lossy(&reply.bytes));
    let body = reply.json();
    let mut inbox = inbox.lock().unwrap();
    assert_eq!(inbox.since, since, "one poller per device");
    inbox.since = Some(body["next_batch"].as_str().expect("next_batch").to_owned());
    for event in body["to_device"]["events"].as_array().into_iter().flatten() {
        if event["type"] == TO_DEVICE_TYPE {
            inbox.received.push(event["content"]["id"].as_str().expect("id").to_owned());
        }
    }
    true
}

/// A small timeline keeps the long-poll responses short; to-device messages are all kept.
const FILTER: &str = r#"{"room":{"timeline":{"limit":5}}}"#;

// ---------------------------------------------------------------------------------------
// The test

struct World {
    room: String,
    /// Alice, Carol, Dave on A (one device each).
    locals: Vec<Client>,
    devices: Vec<Device>,
    inboxes: Vec<SharedInbox>,
    bob: Client,
    ledger: Shared,
}

impl World {
    fn target(&self, i: usize) -> DeviceKey {
        device_key(&self.locals[(i + 1) % self.locals.len()])
    }

    /// Starts the cycle's load; A's tasks end when A dies or `stop_a` is set, B's when
    /// `stop_b` is.
    fn start_load(
        &self,
        cycle: usize,
        rng: &mut Rng,
        stop_a: &Arc<AtomicBool>,
        stop_b: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (i, client) in self.locals.iter().enumerate() {
            let (c, room, ledger) = (client.clone(), self.room.clone(), self.ledger.clone());
            let tag = format!("c{cycle}u{i}");
            tasks.push(tokio::spawn(repeat(stop_a.clone(), 0, move |n| {
                send_message(c.clone(), room.clone(), tag.clone(), n, ledger.clone())
            })));
            let (c, ledger) = (client.clone(), self.ledger.clone());
            let sizes: Vec<usize> = (0..1000).map(|_| 1 + rng.below(2048) as usize).collect();
            let seed = (cycle * 31 + i) as u8;
            tasks.push(tokio::spawn(repeat(stop_a.clone(), 10, move |n| {
                let size = sizes[n as usize % sizes.len()];
                let bytes =
                    (0..size).map(|k| seed.wrapping_add((k as u8).wrapping_mul(n as u8 | 1))).collect();
                upload(c.clone(), bytes, ledger.clone())
            })));
            let (c, target, ledger) = (client.clone(), self.target(i), self.ledger.clone());
            let sender = client.user_id().to_owned();
            tasks.push(tokio::spawn(repeat(stop_a.clone(), 5, move |n| {
                send_to_device(c.clone(), target.clone(), format!("{sender}-c{cycle}-{n}"), ledger.clone())
            })));
            let (c, target, ledger) = (client.clone(), self.target(i), self.ledger.clone());
            let keys: Vec<Value> =
                (0..60).map(|n| self.devices[i].one_time_keys(&format!("c{cycle}n{n}k"), 2)).collect();
            tasks.push(tokio::spawn(repeat(stop_a.clone(), 5, move |n| {
                let (c, target, ledger) = (c.clone(), target.clone(), ledger.clone());
                let keys = keys.get(n as usize / 2).cloned();
                async move {
                    match keys {
                        Some(keys) if n % 2 == 0 => upload_keys(c, keys, ledger).await,
                        _ => claim_key(&c, &target, &ledger).await.0,
                    }
                }
            })));
            let (c, inbox) = (client.clone(), self.inboxes[i].clone());
            tasks.push(tokio::spawn(repeat(stop_a.clone(), 0, move |_| {
                let (c, inbox) = (c.clone(), inbox.clone());
                async move { poll(&c, &inbox, 1000).await }
            })));
        }
        // Bob keeps going while A is down: B must hold on to it and deliver after the restart.
        let (bob, room, ledger) = (self.bob.clone(), self.room.clone(), self.ledger.clone());
        let alice = device_key(&self.locals[0]);
        let targets: Vec<DeviceKey> = self.locals.iter().map(device_key).collect();
        tasks.push(tokio::spawn(repeat(stop_b.clone(), 20, move |n| {
            let (bob, room, ledger, alice) = (bob.clone(), room.clone(), ledger.clone(), alice.clone());
            let target = targets[n as usize % targets.len()].clone();
            async move {
                match n % 3 {
                    0 => send_message(bob, room, format!("c{cycle}b"), n, ledger).await,
                    1 => {
                        let id = format!("{}-c{cycle}-{n}", bob.user_id());
                        send_to_device(bob, alice, id, ledger).await
                    }
                    _ => {
                        claim_key(&bob, &target, &ledger).await;
                        true
                    }
                }
            }
        })));
        tasks
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_acknowledged_survives_repeated_sigkill_under_mixed_load() {
    let cycles = env_number("CRASH_LOOP_CYCLES", 10) as usize;
    let seed = env_number("CRASH_LOOP_SEED", std::process::id() as u64 * 0x9e37_79b9 + 1);
    eprintln!("crash loop: {cycles} cycles, CRASH_LOOP_SEED={seed}");
    let mut rng = Rng(seed.max(1));
    let started = Instant::now();

    let mut a = Server::start_federating_with("", UNLIMITED_CONFIG).await;
    let b = Server::start_federating_with("", UNLIMITED_CONFIG).await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut locals = vec![alice.clone()];
    for name in MORE_LOCAL_USERS {
        let user = a.client().register(name, PASSWORD).await;
        alice.membership_action(&room, "invite", user.user_id()).await.expect(200);
        user.join_room(&room).await.expect(200);
        locals.push(user);
    }
    let mut devices = Vec::new();
    for client in &locals {
        let device = Device::of(client);
        upload_device_keys(client, &device).await;
        devices.push(device);
    }
    let inboxes = locals.iter().map(|_| SharedInbox::default()).collect();
    let world = World { room, locals, devices, inboxes, bob, ledger: Shared::default() };
    let mut checked = Checked::default();

    for cycle in 1..=cycles {
        let (stop_a, stop_b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let tasks = world.start_load(cycle, &mut rng, &stop_a, &stop_b);
        tokio::time::sleep(Duration::from_millis(200 + rng.below(600))).await;
        a.kill9();
        stop_a.store(true, Ordering::Relaxed);
        let verified = cli_ok(&a.cli(&["db", "verify"], None));
        assert!(verified.contains("verifies clean"), "after kill {cycle}: {verified}");
        if cycle % OFFLINE_READ_EVERY == 0 {
            let listed = cli_ok(&a.cli(&["user", "list"], None));
            assert!(listed.contains(alice.user_id()), "the crashed store lists its users offline: {listed}");
        }
        a.restart().await;
        stop_b.store(true, Ordering::Relaxed);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task).await.expect("a load task hung").unwrap();
        }
        let full = cycle % FULL_CHECK_EVERY == 0 || cycle == cycles;
        let failures = verify(&world, &a, &mut checked, full).await;
        assert!(failures.is_empty(), "cycle {cycle} (CRASH_LOOP_SEED={seed}):\n{}", failures.join("\n"));
        eprintln!("cycle {cycle}/{cycles} ok after {:?}: {}", started.elapsed(), summary(&world.ledger));
    }

    let failures = messages_reached(&world).await;
    assert!(failures.is_empty(), "A's messages on B:\n{}", failures.join("\n"));
    let unexpected = world.ledger.lock().unwrap().unexpected.clone();
    assert!(unexpected.is_empty(), "unexpected replies during the load:\n{}", unexpected.join("\n"));
    eprintln!("crash loop done: {cycles} kills in {:?}; {}", started.elapsed(), summary(&world.ledger));
}

fn summary(ledger: &Shared) -> String {
    let ledger = ledger.lock().unwrap();
    let events: usize = ledger.events.values().map(Vec::len).sum();
    let claimed: usize = ledger.keys_claimed.values().map(Vec::len).sum();
    let lost: usize = ledger.lost_claims.values().sum();
    format!(
        "{events} events ({} from B), {} uploads, {} to-device messages, {} one-time keys uploaded, \
         {claimed} claimed, {lost} claims with a lost reply",
        ledger.events.iter().filter(|(s, _)| s.starts_with("@bob:")).map(|(_, e)| e.len()).sum::<usize>(),
        ledger.uploads.len(),
        ledger.to_device_total,
        ledger.keys_uploaded_total,
    )
}

// ---------------------------------------------------------------------------------------
// Checks after a restart

/// How far the one-by-one checks have got, so that a cycle checks only what it added.
#[derive(Default)]
struct Checked {
    events: BTreeMap<String, usize>,
    uploads: usize,
}

/// Everything acknowledged so far, checked against the restarted A; the failures found.
async fn verify(world: &World, a: &Server, checked: &mut Checked, full: bool) -> Vec<String> {
    let mut failures = Vec::new();
    let alice = &world.locals[0];
    // A message from A gets B to retry at once instead of waiting out its backoff.
    let probe =
        alice.send_event(&world.room, "m.room.message", &json!({"msgtype": "m.text", "body": "probe"})).await;
    let probe = probe.expect(200)["event_id"].as_str().unwrap().to_owned();
    world.ledger.lock().unwrap().events.entry(alice.user_id().to_owned()).or_default().push(probe);

    let events = world.ledger.lock().unwrap().events.clone();
    for (sender, ids) in &events {
        let from = if full { 0 } else { checked.events.get(sender).copied().unwrap_or(0) };
        let remote = server_name_of(sender) != a.server_name();
        let deadline = Instant::now() + if remote { RETRY } else { Duration::ZERO };
        for id in &ids[from..] {
            let path = room_path(&world.room, &format!("event/{}", enc(id)));
            loop {
                let reply = must(alice, "GET", &path, Body::Empty).await;
                if reply.status == 200 {
                    break;
                }
                if Instant::now() >= deadline {
                    failures.push(format!("event {id} from {sender}: GET on A gave {}", reply.status));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        checked.events.insert(sender.clone(), ids.len());
    }
    failures.extend(timeline_check(alice, &world.room, &events).await);

    let uploads = world.ledger.lock().unwrap().uploads.clone();
    let from = if full { 0 } else { checked.uploads };
    for (mxc, bytes) in &uploads[from..] {
        let path = format!("/_matrix/client/v1/media/download/{}", mxc.strip_prefix("mxc://").unwrap());
        let reply = must(alice, "GET", &path, Body::Empty).await;
        if reply.status != 200 || &reply.bytes != bytes {
            failures.push(format!(
                "upload {mxc} ({} bytes): {} with {} bytes",
                bytes.len(),
                reply.status,
                reply.bytes.len()
            ));
        }
    }
    checked.uploads = uploads.len();

    for (client, inbox) in world.locals.iter().zip(&world.inboxes) {
        failures.extend(to_device_check(client, inbox, &world.ledger).await);
    }
    for client in &world.locals {
        failures.extend(keys_check(alice, &device_key(client), &world.ledger).await);
    }
    failures
}

/// Every message event of the room on A, oldest first, from `/messages`.
async fn timeline(client: &Client, room: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut query = "dir=b&limit=100".to_owned();
    loop {
        let page = must(client, "GET", &room_path(room, &format!("messages?{query}")), Body::Empty).await;
        assert_eq!(page.status, 200, "/messages?{query}");
        let page = page.json();
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        ids.extend(
            chunk
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| e["event_id"].as_str().unwrap().to_owned()),
        );
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => query = format!("dir=b&limit=100&from={}", enc(end)),
            _ => break,
        }
    }
    ids.reverse();
    ids
}

/// `/messages` lists every acknowledged event once, each sender's in acknowledgement order.
async fn timeline_check(client: &Client, room: &str, events: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let ids = timeline(client, room).await;
    let mut failures = Vec::new();
    let mut position = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        if position.insert(id.clone(), i).is_some() {
            failures.push(format!("/messages lists {id} twice"));
        }
    }
    for (sender, sent) in events {
        let mut last = None;
        for id in sent {
            match position.get(id) {
                None => failures.push(format!("/messages lacks {id} from {sender}")),
                Some(&at) if last.is_some_and(|last| at < last) => failures
                    .push(format!("/messages has {sender}'s {id} before the message acknowledged before it")),
                Some(&at) => last = Some(at),
            }
        }
    }
    failures
}

/// Syncs the device's chain on until every acknowledged message has come; each must come once.
async fn to_device_check(client: &Client, inbox: &SharedInbox, ledger: &Shared) -> Vec<String> {
    let target = device_key(client);
    let expected = ledger.lock().unwrap().to_device.get(&target).cloned().unwrap_or_default();
    // Ids are `{sender}-c{cycle}-{n}`: those of the sender on B took federation to come.
    let local_suffix = format!(":{}-", server_name_of(client.user_id()));
    let from_b = |id: &String| !id.contains(&local_suffix);
    let started = Instant::now();
    loop {
        let missing: Vec<String> = {
            let inbox = inbox.lock().unwrap();
            let received: BTreeSet<&String> = inbox.received.iter().collect();
            expected.iter().filter(|id| !received.contains(id)).cloned().collect()
        };
        let limit = if missing.iter().any(from_b) { RETRY } else { LOCAL_DELIVERY };
        if missing.is_empty() || started.elapsed() > limit {
            let mut failures: Vec<String> =
                missing.iter().map(|id| format!("to-device {id} for {target} never came")).collect();
            let mut seen = BTreeSet::new();
            for id in &inbox.lock().unwrap().received {
                if !seen.insert(id) {
                    failures.push(format!("to-device {id} for {target} came twice"));
                }
            }
            return failures;
        }
        assert!(poll(client, inbox, 500).await, "A went away");
    }
}

/// Claims the device's remaining keys; every acknowledged key must be claimed once in all.
async fn keys_check(claimer: &Client, target: &DeviceKey, ledger: &Shared) -> Vec<String> {
    loop {
        let (answered, got) = claim_key(claimer, target, ledger).await;
        assert!(answered, "claiming {target}'s keys after the restart failed");
        if !got {
            break;
        }
    }
    let ledger = ledger.lock().unwrap();
    let uploaded = ledger.keys_uploaded.get(target).cloned().unwrap_or_default();
    let claimed = ledger.keys_claimed.get(target).cloned().unwrap_or_default();
    let lost = ledger.lost_claims.get(target).copied().unwrap_or(0);
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for id in &claimed {
        if !seen.insert(id) {
            failures.push(format!("one-time key {id} of {target} was handed out twice"));
        }
    }
    let missing: Vec<&String> = uploaded.iter().filter(|id| !seen.contains(id)).collect();
    if missing.len() > lost {
        failures.push(format!(
            "{} acknowledged one-time keys of {target} are gone though only {lost} claims were lost: {missing:?}",
            missing.len()
        ));
    }
    failures
}

/// After the loop: every message A acknowledged has reached B.
async fn messages_reached(world: &World) -> Vec<String> {
    let local: BTreeSet<String> = {
        let ledger = world.ledger.lock().unwrap();
        ledger
            .events
            .iter()
            .filter(|(s, _)| !s.starts_with("@bob:"))
            .flat_map(|(_, ids)| ids.clone())
            .collect()
    };
    let deadline = Instant::now() + RETRY;
    loop {
        let on_b: BTreeSet<String> = timeline(&world.bob, &world.room).await.into_iter().collect();
        let missing: Vec<&String> = local.difference(&on_b).collect();
        if missing.is_empty() {
            return Vec::new();
        }
        if Instant::now() > deadline {
            return vec![format!(
                "{} of A's {} acknowledged messages never reached B: {missing:?}",
                missing.len(),
                local.len()
            )];
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The smallest case of what the crash loop found

/// A federation receiver that behaves as Myelin's does (a transaction id seen before is
/// answered 200 without applying it again), except that it "crashes" after applying the
/// first transaction: it drops the connection without answering. Records the ids of the
/// to-device messages it applied.
async fn receiver_that_crashes_once(listener: tokio::net::TcpListener, applied: Arc<Mutex<Vec<String>>>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (cert, key) = spec_tests::federation::self_signed_certificate();
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("certificate")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen_txns = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    loop {
        let Ok((tcp, _)) = listener.accept().await else { return };
        let (acceptor, applied, seen_txns) = (acceptor.clone(), applied.clone(), seen_txns.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0usize);
                    break (end + 4, length);
                }
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            while buf.len() < head_end + length {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let line = String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_owned();
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let Some(txn) = path.strip_prefix("/_matrix/federation/v1/send/") else {
                let reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
                let _ = tls.write_all(reply.as_bytes()).await;
                return;
            };
            let body: Value =
                serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
            let first = {
                let mut seen = seen_txns.lock().unwrap();
                let (first, new) = (seen.is_empty(), seen.insert(txn.to_owned()));
                if new {
                    for edu in body["edus"].as_array().into_iter().flatten() {
                        for devices in
                            edu["content"]["messages"].as_object().into_iter().flat_map(|m| m.values())
                        {
                            for message in devices.as_object().into_iter().flat_map(|d| d.values()) {
                                applied.lock().unwrap().push(message["id"].as_str().unwrap_or("").to_owned());
                            }
                        }
                    }
                }
                first
            };
            if first {
                return; // Applied, then "killed" before answering.
            }
            let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"pdus\":{}}";
            let _ = tls.write_all(reply.as_bytes()).await;
            let _ = tls.shutdown().await;
        });
    }
}

/// The receiver applied a transaction but its answer was lost (it was killed). The sender
/// retries under the same transaction id, but the retry also carries what was queued
/// since; the receiver rightly drops a transaction id it has seen, and the newer items are
/// lost though the sender counted them delivered. Found by the crash loop as a to-device
/// message from B that never reached A; the sender now names both ends of what it carries.
#[tokio::test]
async fn a_retried_transaction_id_never_carries_items_the_first_attempt_did_not() {
    let b = Server::start_federating_with("", UNLIMITED_CONFIG).await;
    let bob = b.client().register("bob", PASSWORD).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remote = listener.local_addr().unwrap().to_string();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let receiver = tokio::spawn(receiver_that_crashes_once(listener, applied.clone()));
    let send = |id: &'static str| {
        let (bob, remote) = (bob.clone(), remote.clone());
        async move {
            let body = json!({"messages": {format!("@x:{remote}"): {"DEVICE": {"id": id}}}});
            bob.put(&format!("/_matrix/client/v3/sendToDevice/{TO_DEVICE_TYPE}/{id}"), &body)
                .await
                .expect(200);
        }
    };

    send("first").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while applied.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "B never sent the first transaction");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // B is backing off (1 s) after the lost answer; this is queued behind "first".
    send("second").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !applied.lock().unwrap().contains(&"second".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the second message never arrived; applied: {:?}; B's log:\n{}",
            applied.lock().unwrap(),
            b.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.abort();
}
