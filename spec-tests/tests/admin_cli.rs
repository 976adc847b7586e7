//! The `myelin` admin CLI, through both doors: the admin socket of a running server and the
//! store of a stopped one. Users (create, list, passwd, deactivate, `--admin`, generated
//! passwords), registration tokens (create, list, revoke), the reports users made,
//! `config check`, and the admin socket's file mode.

use std::os::unix::fs::PermissionsExt;

use spec_tests::*;

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const LOGIN: &str = "/_matrix/client/v3/login";

fn json_out(output: &std::process::Output) -> Value {
    let out = cli_ok(output);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn user_create_on_a_running_server_makes_a_user_who_can_log_in() {
    let server = Server::start().await;
    let out = cli_ok(&server.cli(&["user", "create", "alice", "--password-stdin"], Some("s3cret pass\n")));
    assert!(out.contains("@alice:localhost"), "{out}");
    // The running server sees the new user at once: it was made through its socket.
    let alice = server.client().login("alice", "s3cret pass").await;
    assert_eq!(alice.user_id(), "@alice:localhost");
}

#[tokio::test]
async fn user_create_on_a_stopped_server_works_after_restart() {
    let mut server = Server::start().await;
    assert!(server.stop().await.success());
    let out =
        cli_ok(&server.cli(&["user", "create", "@bob:localhost", "--password-stdin"], Some("pw-bob\n")));
    assert!(out.contains("@bob:localhost"), "{out}");
    server.restart().await;
    server.client().login("bob", "pw-bob").await;
}

#[tokio::test]
async fn creating_an_existing_user_fails_and_says_it_exists() {
    let mut server = Server::start().await;
    server.client().register("alice", "pw").await;
    let out = server.cli(&["user", "create", "alice", "--password-stdin"], Some("other\n"));
    assert!(!out.status.success(), "duplicate create succeeded");
    assert!(stderr(&out).contains("exists"), "running server: {}", stderr(&out));

    assert!(server.stop().await.success());
    let out = server.cli(&["user", "create", "alice", "--password-stdin"], Some("other\n"));
    assert!(!out.status.success(), "duplicate create succeeded");
    assert!(stderr(&out).contains("exists"), "stopped server: {}", stderr(&out));
    server.restart().await;
    server.client().login("alice", "pw").await;
}

#[tokio::test]
async fn user_create_refuses_invalid_names_and_empty_passwords() {
    let server = Server::start().await;
    let out = server.cli(&["user", "create", "Not Valid!", "--password-stdin"], Some("pw\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("username"), "{}", stderr(&out));
    let out = server.cli(&["user", "create", "carol", "--password-stdin"], Some("\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    server.client().get("/_matrix/client/v3/register/available?username=carol").await.expect(200);
}

#[tokio::test]
async fn a_generated_password_is_printed_and_works() {
    let server = Server::start().await;
    let out = cli_ok(&server.cli(&["user", "create", "alice"], None));
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed: {out}"))
        .trim();
    assert!(password.len() >= 16, "{password:?}");
    server.client().login("alice", password).await;

    let reply = json_out(&server.cli(&["user", "create", "bob", "--json"], None));
    let password = reply["password"].as_str().unwrap_or_else(|| panic!("no password in {reply}"));
    assert_eq!(reply["user_id"], "@bob:localhost");
    server.client().login("bob", password).await;
}

#[tokio::test]
async fn user_list_shows_users_admins_and_deactivation() {
    let server = Server::start().await;
    server.client().register("alice", "pw").await;
    cli_ok(&server.cli(&["user", "create", "root", "--admin", "--password-stdin"], Some("pw\n")));
    cli_ok(&server.cli(&["user", "create", "carol", "--password-stdin"], Some("pw\n")));
    cli_ok(&server.cli(&["user", "deactivate", "carol"], None));

    let text = cli_ok(&server.cli(&["user", "list"], None));
    for user in ["@alice:localhost", "@root:localhost", "@carol:localhost"] {
        assert!(text.contains(user), "{text}");
    }
    let carol_line = text.lines().find(|l| l.contains("@carol:localhost")).unwrap();
    assert!(carol_line.contains("deactivated"), "{text}");

    let reply = json_out(&server.cli(&["user", "list", "--json"], None));
    let users = reply["users"].as_array().unwrap_or_else(|| panic!("{reply}"));
    assert_eq!(users.len(), 3, "{reply}");
    let find =
        |id: &str| users.iter().find(|u| u["user_id"] == id).unwrap_or_else(|| panic!("{id} in {reply}"));
    assert_eq!(find("@root:localhost")["admin"], true);
    assert_eq!(find("@alice:localhost")["admin"], false);
    assert_eq!(find("@carol:localhost")["deactivated"], true);
    assert_eq!(find("@alice:localhost")["deactivated"], false);
}

#[tokio::test]
async fn user_passwd_sets_the_password_and_logs_out_every_device() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "old-pw").await;
    let out = cli_ok(&server.cli(&["user", "passwd", "alice", "--password-stdin"], Some("new-pw\n")));
    assert!(out.contains("@alice:localhost"), "{out}");
    alice.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    server.client().post(LOGIN, &login_body("alice", "old-pw")).await.expect_error(403, "M_FORBIDDEN");
    server.client().login("alice", "new-pw").await;

    let out = server.cli(&["user", "passwd", "nobody", "--password-stdin"], Some("x\n"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nobody"), "{}", stderr(&out));
}

#[tokio::test]
async fn user_deactivate_ends_sessions_and_logins() {
    let server = Server::start().await;
    let alice = server.client().register("alice", "pw").await;
    let reply = json_out(&server.cli(&["user", "deactivate", "@alice:localhost", "--json"], None));
    assert_eq!(reply["user_id"], "@alice:localhost", "{reply}");
    alice.get(WHOAMI).await.expect_error(401, "M_UNKNOWN_TOKEN");
    server.client().post(LOGIN, &login_body("alice", "pw")).await.expect_error(403, "M_USER_DEACTIVATED");

    let out = server.cli(&["user", "deactivate", "nobody"], None);
    assert!(!out.status.success());
}

#[tokio::test]
async fn registration_tokens_are_created_listed_and_revoked() {
    let server = Server::start().await;
    let created = json_out(&server.cli(&["token", "create", "--uses", "3", "--json"], None));
    let token = created["token"]["token"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    assert_eq!(created["token"]["uses_allowed"], 3);
    assert_eq!(created["token"]["completed"], 0);
    assert_eq!(created["token"]["valid"], true);

    let named = json_out(
        &server.cli(&["token", "create", "--token", "party-2025", "--expires", "1d", "--json"], None),
    );
    assert_eq!(named["token"]["token"], "party-2025");
    assert!(named["token"]["expiry_time"].as_u64().is_some(), "{named}");
    assert!(named["token"]["uses_allowed"].is_null(), "{named}");

    let dup = server.cli(&["token", "create", "--token", "party-2025"], None);
    assert!(!dup.status.success(), "a duplicate token was created");
    let bad = server.cli(&["token", "create", "--token", "no spaces!"], None);
    assert!(!bad.status.success(), "an invalid token was created");

    let list = json_out(&server.cli(&["token", "list", "--json"], None));
    let mut listed: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    listed.sort();
    let mut expected = vec![token.as_str(), "party-2025"];
    expected.sort();
    assert_eq!(listed, expected);
    let text = cli_ok(&server.cli(&["token", "list"], None));
    assert!(text.contains(&token) && text.contains("party-2025"), "{text}");

    let revoked = json_out(&server.cli(&["token", "revoke", &token, "--json"], None));
    assert_eq!(revoked["token"], token.as_str(), "{revoked}");
    let list = json_out(&server.cli(&["token", "list", "--json"], None));
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1, "{list}");
    let again = server.cli(&["token", "revoke", &token], None);
    assert!(!again.status.success(), "revoking a revoked token succeeded");
}

#[tokio::test]
async fn token_commands_work_on_a_stopped_server_too() {
    let mut server = Server::start().await;
    assert!(server.stop().await.success());
    let created = json_out(&server.cli(&["token", "create", "--token", "offline", "--json"], None));
    assert_eq!(created["token"]["token"], "offline");
    let list = json_out(&server.cli(&["token", "list", "--json"], None));
    assert_eq!(list["tokens"][0]["token"], "offline", "{list}");
}

#[tokio::test]
async fn reports_list_shows_every_report_with_or_without_the_server() {
    let mut server = Server::start().await;
    assert_eq!(cli_ok(&server.cli(&["reports", "list"], None)).trim(), "no reports");
    let alice = server.client().register("alice", "pw").await;
    let bob = server.client().register("bob", "pw").await;
    let room = alice.create_room(&json!({"preset": "public_chat"})).await;
    let event = alice.send_text(&room, "offensive").await;
    alice
        .post(&format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room), enc(&event)), &json!({}))
        .await
        .expect(200);
    bob.post(&format!("/_matrix/client/v3/rooms/{}/report", enc(&room)), &json!({"reason": "a spam room"}))
        .await
        .expect(200);
    alice
        .post(
            &format!("/_matrix/client/v3/users/{}/report", enc(bob.user_id())),
            &json!({"reason": "line one\nline two"}),
        )
        .await
        .expect(200);

    let check = |out: &str| {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 7, "{out}");
        assert!(lines[0].contains(&format!("event {event} in {room} reported by @alice:localhost")), "{out}");
        assert_eq!(lines[1].trim(), "(no reason given)", "{out}");
        assert!(lines[2].contains(&format!("room {room} reported by @bob:localhost")), "{out}");
        assert_eq!(lines[3].trim(), "a spam room", "{out}");
        assert!(lines[4].contains("user @bob:localhost reported by @alice:localhost"), "{out}");
        assert!(lines[4].contains(" UTC "), "a readable time: {out}");
        assert_eq!((lines[5].trim(), lines[6].trim()), ("line one", "line two"), "{out}");
    };
    let online = cli_ok(&server.cli(&["reports", "list"], None));
    check(&online);
    let json = json_out(&server.cli(&["--json", "report", "list"], None));
    assert_eq!(json["reply"], "reports", "{json}");
    let reports = json["reports"].as_array().unwrap();
    let kinds: Vec<&str> = reports.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["event", "room", "user"], "{json}");
    assert_eq!(reports[0]["event_id"], event.as_str(), "{json}");
    assert_eq!(reports[0]["reason"], Value::Null, "{json}");
    assert_eq!(reports[2]["user_id"], "@bob:localhost", "{json}");
    assert!(reports.iter().all(|r| r["ts"].as_u64().is_some() && r["id"].as_u64().is_some()), "{json}");

    assert!(server.stop().await.success());
    assert_eq!(cli_ok(&server.cli(&["reports", "list"], None)), online, "the same on the store");
}

#[tokio::test]
async fn config_check_accepts_a_good_file_and_names_the_bad_key() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "server_name = \"example.org\"\n[registration]\nmode = \"token\"\n").unwrap();
    let out = cli_ok(&server.cli(&["config", "check", good.to_str().unwrap()], None));
    assert!(out.contains("ok"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "server_name = \"example.org\"\n[registration]\nmood = \"open\"\n").unwrap();
    let out = server.cli(&["config", "check", bad.to_str().unwrap()], None);
    assert!(!out.status.success(), "a bad config passed the check");
    assert!(stderr(&out).contains("mood"), "{}", stderr(&out));

    let bad_value = dir.path().join("bad-value.toml");
    std::fs::write(&bad_value, "[limits]\nmax_request_bytes = 10\n").unwrap();
    let out = server.cli(&["config", "check", bad_value.to_str().unwrap()], None);
    assert!(!out.status.success(), "a bad value passed the check");
    assert!(stderr(&out).contains("max_request_bytes"), "{}", stderr(&out));
}

#[tokio::test]
async fn the_admin_socket_is_private_to_the_owner() {
    let server = Server::start().await;
    let socket = server.data_dir().join("admin.sock");
    let mode = std::fs::metadata(&socket).expect("admin socket exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
}
