//! File operations for backups: private folders, durable copies.

use std::{
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

use crate::error::{Error, Result};

pub fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{}: {e}", path.display()))
}

/// Creates `dir` readable by this user only (a backup holds the signing key), or accepts
/// it empty.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidParam(format!(
                    "{} is not empty: give a new folder for the backup",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_error(dir, e))
        }
        Err(e) => Err(io_error(dir, e)),
    }
}

/// Writes `bytes` to `path` and syncs the file and its folder.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io_error(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Copies one file and syncs the copy; a missing source is an error.
pub fn copy_file(from: &Path, to: &Path) -> Result<u64> {
    let bytes = std::fs::copy(from, to).map_err(|e| io_error(from, e))?;
    std::fs::File::open(to).and_then(|f| f.sync_all()).map_err(|e| io_error(to, e))?;
    Ok(bytes)
}

/// Copies the files under `from` into `to` (created as needed), leaving out the top-level
/// entries named in `skip`, and syncs them. A missing `from` copies nothing. Returns the
/// files and bytes copied.
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) -> Result<(u64, u64)> {
    let mut totals = (0, 0);
    if !from.exists() {
        return Ok(totals);
    }
    copy_dir(from, to, skip, &mut totals)?;
    Ok(totals)
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str], totals: &mut (u64, u64)) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).map_err(|e| io_error(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io_error(from, e))? {
        let entry = entry.map_err(|e| io_error(from, e))?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_dir(&entry.path(), &target, &[], totals)?;
        } else if kind.is_file() {
            // A file being written (`.partial`) is not a file yet.
            if Path::new(&name).extension().is_some_and(|e| e == "partial") {
                continue;
            }
            totals.1 += copy_file(&entry.path(), &target)?;
            totals.0 += 1;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}
