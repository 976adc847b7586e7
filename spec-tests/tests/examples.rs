//! The files in `examples/` against the real binary: every Myelin config there passes
//! `myelin config check`, and the Grafana dashboard charts exactly the metrics a running
//! server exposes, at the address the Prometheus config scrapes; every example
//! docs/self-hosting.md names exists. (The systemd unit and the
//! proxy configs are checked by their own tools in `scripts/check-examples`; the bot runs
//! in `client_echo_bot.rs`.)

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use spec_tests::{push_gateway::PushGateway, rooms::PASSWORD, *};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn read(relative: &str) -> String {
    let path = examples_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.toml` under `dir` except Cargo manifests (the bot's).
fn myelin_configs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && path.file_name().is_some_and(|name| name != "target") {
            myelin_configs(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "toml")
            && path.file_name().is_some_and(|name| name != "Cargo.toml")
        {
            found.push(path);
        }
    }
}

#[test]
fn every_example_config_passes_myelin_config_check() {
    let mut configs = vec![];
    myelin_configs(&examples_dir(), &mut configs);
    let names: Vec<String> =
        configs.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
    for expected in ["small-server.toml", "federating.toml", "myelin.toml"] {
        assert!(names.iter().any(|n| n == expected), "examples/ has {expected}: {names:?}");
    }
    for config in &configs {
        let output = myelin_command().args(["config", "check"]).arg(config).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", config.display());
        assert!(stderr.is_empty(), "{}: no warnings expected: {stderr}", config.display());
    }
}

/// The sample names a `/metrics` page promises, from its `# TYPE` lines (a family that has
/// seen nothing yet still has one): family → the names its samples take.
fn exposed_samples(metrics: &str) -> Vec<(String, Vec<String>)> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (family, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let samples = match kind {
                "counter" => vec![format!("{family}_total")],
                "histogram" => ["bucket", "sum", "count"].iter().map(|s| format!("{family}_{s}")).collect(),
                _ => vec![family.to_owned()],
            };
            (family.to_owned(), samples)
        })
        .collect()
}

/// Every `myelin_…` name in any string of the dashboard (queries and variables).
fn dashboard_metrics(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            for (start, _) in text.match_indices("myelin_") {
                let before = text[..start].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                found.insert(name);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dashboard_metrics(item, found)),
        Value::Object(fields) => fields.values().for_each(|field| dashboard_metrics(field, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_charts_exactly_the_metrics_myelin_exposes() {
    // Loopback opened for the test's push gateway.
    let server = Server::start_with_config(
        "[rate_limits]\nenabled = false\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
         [outbound]\nallowed_networks = [\"127.0.0.0/8\"]\n",
    )
    .await;
    // A family appears on /metrics once it has a sample: a message Bob's phone is told
    // about gives every one of them one.
    let gateway = PushGateway::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    bob.join_room(&room).await.expect(200);
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone", "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": {"url": gateway.url()},
    });
    bob.post("/_matrix/client/v3/pushers/set", &pusher).await.expect(200);
    alice.send_text(&room, "hello").await;
    gateway.wait_for_events(1, std::time::Duration::from_secs(10)).await;
    let metrics =
        reqwest::get(format!("{}/metrics", server.metrics_url())).await.unwrap().text().await.unwrap();
    let exposed = exposed_samples(&metrics);
    assert!(exposed.len() >= 5, "{metrics}");
    let all_samples: BTreeSet<&String> = exposed.iter().flat_map(|(_, samples)| samples).collect();

    let dashboard: Value = serde_json::from_str(&read("monitoring/grafana-dashboard.json")).unwrap();
    let mut used = BTreeSet::new();
    dashboard_metrics(&dashboard, &mut used);
    for name in &used {
        assert!(
            all_samples.contains(name),
            "the dashboard charts {name}, which Myelin does not expose:\n{metrics}"
        );
    }
    for (family, samples) in &exposed {
        assert!(
            samples.iter().any(|sample| used.contains(sample)),
            "Myelin exposes {family}, which no dashboard panel charts: add one"
        );
    }
}

#[test]
fn prometheus_scrapes_the_metrics_listener_of_the_example_configs() {
    let prometheus = read("monitoring/prometheus.yml");
    for config in ["config/federating.toml", "docker/myelin.toml"] {
        let text = read(config);
        let metrics = text.split("[metrics]").nth(1).unwrap_or_else(|| panic!("{config} turns metrics on"));
        assert!(metrics.contains("enabled = true"), "{config}");
        let port = metrics
            .lines()
            .find_map(|line| line.strip_prefix("listen = \""))
            .and_then(|rest| rest.trim_end_matches('"').rsplit(':').next())
            .unwrap_or_else(|| panic!("{config} names a metrics listen address"))
            .to_owned();
        assert!(prometheus.contains(&format!("\"127.0.0.1:{port}\"")), "prometheus.yml scrapes port {port}");
    }
}

#[test]
fn every_example_the_self_hosting_guide_names_exists() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/self-hosting.md"))
            .expect("docs/self-hosting.md");
    let mut named = BTreeSet::new();
    for (start, _) in guide.match_indices("examples/") {
        let path: String = guide[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_'))
            .collect();
        named.insert(path.trim_end_matches('.').to_owned());
    }
    assert!(named.len() >= 8, "the guide installs the examples: {named:?}");
    for path in &named {
        let full = examples_dir().join(path.trim_start_matches("examples/"));
        assert!(full.exists(), "docs/self-hosting.md names {path}, which does not exist");
    }
}
