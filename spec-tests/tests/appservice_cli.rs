//! The `myelin appservice` commands on a running server, and registration files that
//! `myelin config check` and `myelin serve` refuse, with the reason and the file.

use std::time::{Duration, Instant};

use spec_tests::{appservice::*, *};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `myelin serve` on `config` until it exits (it must, within the wait), and returns
/// whether it succeeded and its stderr.
async fn serve_until_exit(config: &str) -> (bool, String) {
    let dir = tempfile::Builder::new().prefix("appservice-bad-").tempdir().expect("temp dir");
    let config_path = dir.path().join("myelin.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = myelin_command()
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start myelin");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("myelin kept running with a broken registration");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_broken_registration_file_stops_the_server_with_the_reason() {
    let files = Files::default();
    let good = registration("good", "good");
    let good_path = files.write("good.yaml", &good.yaml());
    let mut short = registration("short", "short");
    short.as_token = "tiny".to_owned();
    let bad_regex = registration("regex", "regex").yaml().replace("'@regex_.*", "'@regex_(");
    let mut twin = registration("twin", "twin");
    twin.as_token = good.as_token.clone();
    let cases = [
        ("short.yaml", short.yaml(), "as_token"),
        ("regex.yaml", bad_regex, "regular expression"),
        ("list.yaml", "- not\n- a registration\n".to_owned(), "registration"),
        ("twin.yaml", twin.yaml(), "share"),
    ];
    for (name, text, reason) in cases {
        let path = files.write(name, &text);
        let config = format!(
            "server_name = \"{SERVER_NAME}\"\n{}{TEST_CONFIG}",
            Files::config_line(&[&good_path, &path])
        );
        let (ok, stderr) = serve_until_exit(&config).await;
        assert!(!ok, "{name}: myelin started; stderr: {stderr}");
        assert!(stderr.contains(reason), "{name}: the reason ({reason}) is not given: {stderr}");
        assert!(stderr.contains(name), "{name}: the file is not named: {stderr}");

        // `config check` finds the same, before anyone restarts a server on it.
        let config_path = files.write("myelin.toml", &config);
        let checked = myelin_command().args(["config", "check"]).arg(&config_path).output().unwrap();
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(!checked.status.success(), "{name}: config check passed");
        assert!(stderr.contains(reason) && stderr.contains(name), "{name}: config check said {stderr}");
    }
    let missing = files.dir.path().join("missing.yaml");
    let config = format!("server_name = \"{SERVER_NAME}\"\n{}{TEST_CONFIG}", Files::config_line(&[&missing]));
    let (ok, stderr) = serve_until_exit(&config).await;
    assert!(!ok && stderr.contains("missing.yaml"), "{stderr}");
}

#[tokio::test]
async fn the_cli_registers_lists_and_removes_services_of_a_running_server() {
    let from_file = registration("from-file", "filed");
    let (mut server, files) = server_with(&[&from_file], "").await;
    let added = registration("added", "added");
    let added_path = files.write("added.yaml", &added.yaml());
    const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

    service_client(&server, &added).get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    cli_ok(&server.cli(&["appservice", "register", added_path.to_str().unwrap()], None));
    let me = service_client(&server, &added).get(WHOAMI).await.expect(200);
    assert_eq!(me["user_id"], user_id("addedbot"), "{me}");

    let list = cli_ok(&server.cli(&["appservice", "list"], None));
    for needle in ["from-file", &from_file.url, "added", &added.url] {
        assert!(list.contains(needle), "{needle} is not listed: {list}");
    }

    // A bad file is refused, saying why.
    let mut bad = registration("bad", "bad");
    bad.hs_token = "short".to_owned();
    let bad_path = files.write("bad.yaml", &bad.yaml());
    let refused = server.cli(&["appservice", "register", bad_path.to_str().unwrap()], None);
    assert!(!refused.status.success(), "a bad registration was accepted");
    let said =
        format!("{}{}", String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
    assert!(said.contains("hs_token"), "{said}");

    // A service of the config file stays.
    let kept = server.cli(&["appservice", "remove", "from-file"], None);
    assert!(!kept.status.success(), "a config file's service was removed");
    service_client(&server, &from_file).get(WHOAMI).await.expect(200);

    // Added at run time: survives a restart, then goes when removed.
    server.stop().await;
    server.restart().await;
    service_client(&server, &added).get(WHOAMI).await.expect(200);
    cli_ok(&server.cli(&["appservice", "remove", "added"], None));
    service_client(&server, &added).get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    let list = cli_ok(&server.cli(&["appservice", "list"], None));
    assert!(list.contains("from-file") && !list.contains(&added.url), "{list}");
    let missing = server.cli(&["appservice", "remove", "added"], None);
    assert!(!missing.status.success(), "removing a service twice succeeded");
}
