//! `myelin db restore`: a backup folder back into the data directory, with the server
//! stopped.
//!
//! The database is built in a new folder beside the live one, opened (which migrates an
//! older schema and completes event writes the snapshot caught half done) and verified.
//! Only a clean result replaces the live database, which is kept beside it, renamed, as is
//! a signing key the backup's replaces: restoring never destroys anything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{FORMAT, MANIFEST, MEDIA, Manifest, SNAPSHOT, files};
use crate::{
    signing_key,
    storage::{Store, VerifyReport},
};

/// What a restore did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restored {
    pub manifest: Manifest,
    pub report: VerifyReport,
    /// Where the database that was replaced went, if there was one.
    pub previous_db: Option<PathBuf>,
    pub media_files: u64,
}

/// Restores the backup in `backup` into `data_dir`, for the server `server_name`.
pub fn restore(backup: &Path, data_dir: &Path, server_name: &str, cache_mb: u64) -> Result<Restored, String> {
    let manifest_path = backup.join(MANIFEST);
    let manifest: Manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", manifest_path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{} has no {MANIFEST}: it is not a backup, or one that did not finish",
                backup.display()
            ));
        }
        Err(e) => return Err(format!("{}: {e}", manifest_path.display())),
    };
    if manifest.format != FORMAT {
        return Err(format!("backup format {} is not one this Myelin reads ({FORMAT})", manifest.format));
    }
    if manifest.server_name != server_name {
        return Err(format!(
            "the backup is of server {:?} but the configuration says {server_name:?}",
            manifest.server_name
        ));
    }
    ensure_stopped(data_dir)?;

    let stamp = crate::now_ms();
    let staging = data_dir.join(format!("restore-{stamp}"));
    let report = build_and_verify(backup, &staging, cache_mb).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staging);
    })?;

    let live = data_dir.join("db");
    let previous_db = live.exists().then(|| data_dir.join(format!("db.before-restore-{stamp}")));
    if let Some(previous) = &previous_db {
        std::fs::rename(&live, previous).map_err(|e| format!("moving {} aside: {e}", live.display()))?;
    }
    std::fs::rename(staging.join("db"), &live)
        .map_err(|e| format!("moving the restored database in: {e}"))?;
    let _ = std::fs::remove_dir_all(&staging);

    let key = data_dir.join(signing_key::FILE_NAME);
    let backed_up_key = backup.join(signing_key::FILE_NAME);
    let key_bytes = std::fs::read(&backed_up_key).map_err(|e| format!("{}: {e}", backed_up_key.display()))?;
    if std::fs::read(&key).ok().is_none_or(|current| current != key_bytes) {
        if key.exists() {
            let aside = data_dir.join(format!("{}.before-restore-{stamp}", signing_key::FILE_NAME));
            std::fs::rename(&key, &aside).map_err(|e| format!("moving {} aside: {e}", key.display()))?;
        }
        files::copy_file(&backed_up_key, &key).map_err(|e| e.to_string())?;
    }
    let (media_files, _) =
        files::copy_tree(&backup.join(MEDIA), &data_dir.join(MEDIA), &[]).map_err(|e| e.to_string())?;
    tracing::info!(entries = manifest.entries, media_files, "backup restored");
    Ok(Restored { manifest, report, previous_db, media_files })
}

/// Refuses to restore under a running server: its database would be replaced under it.
fn ensure_stopped(data_dir: &Path) -> Result<(), String> {
    if Store::in_use(data_dir) {
        return Err("the database is in use: stop the server before restoring a backup".to_owned());
    }
    Ok(())
}

/// Builds the database in `staging` and checks it.
fn build_and_verify(backup: &Path, staging: &Path, cache_mb: u64) -> Result<VerifyReport, String> {
    let snapshot_path = backup.join(SNAPSHOT);
    let snapshot =
        std::fs::File::open(&snapshot_path).map_err(|e| format!("{}: {e}", snapshot_path.display()))?;
    let (store, _) =
        Store::restore(staging, cache_mb, snapshot, &mut |entries| tracing::info!(entries, "restoring"))
            .map_err(|e| e.to_string())?;
    let report = store
        .verify(false, &mut |what, done| tracing::info!(what, done, "verifying"))
        .map_err(|e| e.to_string())?;
    store.flush().map_err(|e| e.to_string())?;
    if !report.is_clean() {
        let first = report.findings.first().map(|f| format!("{}: {}", f.check, f.detail)).unwrap_or_default();
        return Err(format!(
            "the restored database does not verify ({} problems; first: {first}); nothing was changed",
            report.problems.iter().map(|(_, n)| n).sum::<u64>()
        ));
    }
    Ok(report)
}
