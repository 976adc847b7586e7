//! Backups of the whole server and the checks that prove them: `myelin db backup`,
//! `restore` and `verify`.
//!
//! A backup is a folder: `db.snapshot` (every tree of the database as of one moment, see
//! `storage::snapshot`), the signing key, the uploaded files, and `manifest.json`, written
//! last, so that a folder without it is a backup that did not finish. It is taken while the
//! server runs: the database is copied beside the writers, which wait only while what changed
//! meanwhile is read again (see `storage::snapshot`); reads and syncs go on. Files uploaded while the backup runs may or may not be in it; each one in
//! the snapshot's records is, since a file is stored before its record.
//!
//! Restoring ([`restore`]) needs the server stopped: it builds the database anew beside the
//! old one, verifies it, and only then swaps it in, keeping the old one.

mod files;
mod restore;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

pub use restore::{Restored, restore};

use crate::{
    error::{Error, Result},
    media::Media,
    signing_key,
    storage::{SnapshotSummary, Store, VerifyReport},
};

const MANIFEST: &str = "manifest.json";
const SNAPSHOT: &str = "db.snapshot";
const MEDIA: &str = "media";
/// Thumbnails are made again on demand: a backup leaves them out.
const THUMBNAILS: &str = "thumbnails";

/// What a backup folder holds, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup format; a Myelin that does not know it refuses to restore.
    pub format: u32,
    pub myelin_version: String,
    pub server_name: String,
    pub created_ms: u64,
    pub trees: u64,
    pub entries: u64,
    pub bytes: u64,
    pub media_files: u64,
    pub media_bytes: u64,
}

const FORMAT: u32 = 1;

/// What a finished backup took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupSummary {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// How long writes waited for the snapshot, in milliseconds.
    pub writes_paused_ms: u64,
    pub took_ms: u64,
}

/// What `verify` found: the database's references and the files its records name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verified {
    pub store: VerifyReport,
    /// Local files with a record and no bytes on disk.
    pub missing_media: Vec<String>,
}

impl Verified {
    pub fn is_clean(&self) -> bool {
        self.store.is_clean() && self.missing_media.is_empty()
    }
}

pub struct Archive {
    store: Arc<Store>,
    media: Arc<Media>,
    data_dir: PathBuf,
    server_name: String,
}

impl Archive {
    pub fn new(store: Arc<Store>, media: Arc<Media>, data_dir: &Path, server_name: String) -> Self {
        Self { store, media, data_dir: data_dir.to_owned(), server_name }
    }

    /// Writes a backup into `dir`, which must be absent or empty.
    pub async fn backup(&self, dir: &Path) -> Result<BackupSummary> {
        let started = std::time::Instant::now();
        files::create_private_dir(dir)?;
        let store = self.store.clone();
        let snapshot_path = dir.join(SNAPSHOT);
        let (snapshot, paused) = tokio::task::spawn_blocking(move || snapshot_to(&store, &snapshot_path))
            .await
            .map_err(|e| Error::Internal(format!("the snapshot task failed: {e}")))??;
        let key = signing_key::FILE_NAME;
        files::copy_file(&self.data_dir.join(key), &dir.join(key))?;
        let media_from = self.data_dir.join(MEDIA);
        let media_to = dir.join(MEDIA);
        let (media_files, media_bytes) =
            tokio::task::spawn_blocking(move || files::copy_tree(&media_from, &media_to, &[THUMBNAILS]))
                .await
                .map_err(|e| Error::Internal(format!("copying media failed: {e}")))??;
        let manifest = Manifest {
            format: FORMAT,
            myelin_version: env!("CARGO_PKG_VERSION").to_owned(),
            server_name: self.server_name.clone(),
            created_ms: crate::now_ms(),
            trees: snapshot.trees,
            entries: snapshot.entries,
            bytes: snapshot.bytes,
            media_files,
            media_bytes,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialise");
        files::write_durably(&dir.join(MANIFEST), &json)?;
        tracing::info!(dir = %dir.display(), entries = snapshot.entries, media_files, "backup written");
        Ok(BackupSummary {
            dir: dir.to_owned(),
            manifest,
            writes_paused_ms: paused.as_millis() as u64,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Checks the database's references and the media files; `repair` fixes what can be
    /// rebuilt (see `storage::verify`) and must only be asked for with the server stopped.
    pub async fn verify(&self, repair: bool) -> Result<Verified> {
        let store = self.store.clone();
        let report =
            tokio::task::spawn_blocking(move || store.verify(repair, &mut log_progress("verifying")))
                .await
                .map_err(|e| Error::Internal(format!("the verify task failed: {e}")))??;
        Ok(Verified { store: report, missing_media: self.media.missing_files()? })
    }
}

/// Writes the database snapshot to `path` and syncs it; returns what it holds and how long
/// writes waited.
fn snapshot_to(store: &Store, path: &Path) -> Result<(SnapshotSummary, std::time::Duration)> {
    let file = std::fs::File::create(path).map_err(|e| files::io_error(path, e))?;
    let mut progress = log_progress("backing up");
    let (summary, paused) = store.write_snapshot(&file, &mut |entries| progress("entries", entries))?;
    file.sync_all().map_err(|e| files::io_error(path, e))?;
    Ok((summary, paused))
}

/// Progress as log lines (the CLI shows this module's at `info`).
fn log_progress(doing: &'static str) -> impl FnMut(&str, u64) {
    move |what, done| tracing::info!(what, done, "{doing}")
}
