//! Backups (issue #25): `myelin db backup` while the server takes a send load, `myelin db
//! restore` with it stopped, and `myelin db verify` on the result. Every event acknowledged
//! before the backup began is in the restored server, uploads download with their bytes,
//! access tokens still work, and the database the restore replaced is kept. Restores that
//! must not happen (server running, unfinished or damaged backup, another server's backup)
//! are refused and change nothing.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use spec_tests::{rooms::*, *};

const SENDERS: usize = 4;

/// Starts a server with users and a room, and a file uploaded.
async fn server_with_a_room() -> (Server, Client, String, String) {
    let server = Server::start_with_config(UNLIMITED_CONFIG).await;
    let alice = server.client().register("alice", "pw").await;
    let room = alice.create_room(&json!({"name": "backed up"})).await;
    let upload = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload?filename=a.txt", server.base_url()))
        .bearer_auth(alice.access_token.as_deref().unwrap())
        .header("content-type", "text/plain")
        .body("the bytes of a file")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let mxc = upload.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_owned();
    (server, alice, room, mxc)
}

/// Runs the CLI off the async runtime (a backup takes a while).
async fn cli(server: &Server, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (config, data) = (server.config_path(), server.data_dir());
    tokio::task::spawn_blocking(move || {
        let mut command = myelin_command();
        command.arg("--config").arg(config).arg("--data-dir").arg(data).args(&args);
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_event_acknowledged_before_it() {
    let (mut server, alice, room, mxc) = server_with_a_room().await;
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("nightly");

    // Senders keep sending; each acknowledged event is kept with when its answer came.
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (alice, room, acknowledged, stop) =
            (alice.clone(), room.clone(), acknowledged.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"msgtype": "m.text", "body": format!("sender {sender} message {n}")});
                let resp =
                    alice.put(&room_path(&room, &format!("send/m.room.message/{}", txn_id())), &body).await;
                assert_eq!(resp.status, 200, "{}", resp.body);
                let event_id = resp.body["event_id"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push((event_id, Instant::now()));
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let began = Instant::now();
    let output = cli(&server, &["db", "backup", backup.to_str().unwrap()]).await;
    let out = cli_ok(&output);
    assert!(out.contains("backup written to") && out.contains("writes waited"), "{out}");
    // The load goes on past the backup: those events may or may not be in it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let before: Vec<&String> = acknowledged.iter().filter(|(_, at)| *at < began).map(|(id, _)| id).collect();
    let after = acknowledged.len() - before.len();
    assert!(before.len() >= 20 && after > 0, "{} events before the backup, {after} after", before.len());
    assert!(backup.join("manifest.json").exists() && backup.join("db.snapshot").exists());

    // The live server verifies clean, online, under the load's aftermath.
    let verified = cli_ok(&cli(&server, &["db", "verify"]).await);
    assert!(verified.contains("verifies clean"), "{verified}");

    server.stop().await;
    let output = cli(&server, &["db", "restore", backup.to_str().unwrap()]).await;
    let out = cli_ok(&output);
    assert!(out.contains("kept at"), "{out}");
    let kept = std::fs::read_dir(server.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("db.before-restore-"));
    assert!(kept, "the replaced database is kept");
    let verified = cli_ok(&cli(&server, &["db", "verify"]).await);
    assert!(verified.contains("verifies clean"), "{verified}");

    server.restart().await;
    // Alice's token was issued before the backup: it still works.
    for event_id in &before {
        let resp = alice.get(&room_path(&room, &format!("event/{}", enc(event_id)))).await;
        assert_eq!(resp.status, 200, "{event_id} acknowledged before the backup is missing: {}", resp.body);
    }
    let mut listed = std::collections::HashSet::new();
    let mut from = String::new();
    loop {
        let query = if from.is_empty() {
            "dir=b&limit=500".to_owned()
        } else {
            format!("dir=b&limit=500&from={from}")
        };
        let page = alice.messages(&room, &query).await.expect(200);
        for event in page["chunk"].as_array().unwrap() {
            assert!(listed.insert(event["event_id"].as_str().unwrap().to_owned()), "listed twice: {event}");
        }
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    for event_id in &before {
        assert!(listed.contains(*event_id), "{event_id} is not in /messages after the restore");
    }
    let media = mxc.strip_prefix("mxc://").unwrap();
    let download = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v1/media/download/{media}", server.base_url()))
        .bearer_auth(alice.access_token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.text().await.unwrap(), "the bytes of a file");
    // The restored server goes on: new events get new positions after the restored ones.
    let new = alice.send_text(&room, "after the restore").await;
    let page = alice.messages(&room, "dir=b&limit=1").await.expect(200);
    assert_eq!(page["chunk"][0]["event_id"], new.as_str());
}

#[tokio::test]
async fn restores_that_must_not_happen_are_refused_and_change_nothing() {
    let (mut server, alice, room, _) = server_with_a_room().await;
    let dirs = tempfile::tempdir().unwrap();
    let backup = dirs.path().join("backup");
    cli_ok(&cli(&server, &["db", "backup", backup.to_str().unwrap()]).await);

    // Into a folder that holds something: refused.
    let output = cli(&server, &["db", "backup", backup.to_str().unwrap()]).await;
    assert!(!output.status.success() && stderr(&output).contains("not empty"), "{}", stderr(&output));

    // With the server running: refused, and so is repairing it.
    let output = cli(&server, &["db", "restore", backup.to_str().unwrap()]).await;
    assert!(!output.status.success() && stderr(&output).contains("stop the server"), "{}", stderr(&output));
    let output = cli(&server, &["db", "verify", "--repair"]).await;
    assert!(!output.status.success() && stderr(&output).contains("stop the server"), "{}", stderr(&output));

    let later = alice.send_text(&room, "sent after the backup").await;
    server.stop().await;

    // An unfinished backup (no manifest), a damaged snapshot, another server's backup.
    let unfinished = dirs.path().join("unfinished");
    copy_dir(&backup, &unfinished);
    std::fs::remove_file(unfinished.join("manifest.json")).unwrap();
    let damaged = dirs.path().join("damaged");
    copy_dir(&backup, &damaged);
    let snapshot = damaged.join("db.snapshot");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshot, bytes).unwrap();
    let foreign = dirs.path().join("foreign");
    copy_dir(&backup, &foreign);
    let manifest = std::fs::read_to_string(foreign.join("manifest.json")).unwrap();
    let manifest =
        manifest.replace("\"server_name\": \"localhost\"", "\"server_name\": \"elsewhere.example\"");
    std::fs::write(foreign.join("manifest.json"), manifest).unwrap();
    for (dir, expected) in [
        (&unfinished, "did not finish"),
        (&damaged, "damaged"),
        (&foreign, "elsewhere.example"),
        (&dirs.path().join("absent"), "did not finish"),
    ] {
        let output = cli(&server, &["db", "restore", dir.to_str().unwrap()]).await;
        assert!(!output.status.success(), "{} was restored", dir.display());
        assert!(stderr(&output).contains(expected), "{}: {}", dir.display(), stderr(&output));
    }
    let leftovers: Vec<String> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("restore-") || name.starts_with("db.before-restore"))
        .collect();
    assert!(leftovers.is_empty(), "refused restores left {leftovers:?}");

    // The event sent after the backup is still there: nothing was replaced.
    server.restart().await;
    let resp = alice.get(&room_path(&room, &format!("event/{}", enc(&later)))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
