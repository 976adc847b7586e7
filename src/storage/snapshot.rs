//! Snapshots of the whole database, for backups: every tree as of one moment, in a stream
//! that [`restore_snapshot`] turns into a new database.
//!
//! The moment is made by closing the write gate (see [`super::tree`]): writers wait while
//! the trees are read; readers do not. Reading is fast (sled iterates several hundred MB/s
//! here), and the stream goes to a file without waiting for the disk, which its caller
//! syncs after the gate is open again.
//!
//! Format, every integer big-endian:
//! - [`MAGIC`];
//! - per tree, `T`, the name's length (u32) and the name, then per entry `E`, the key's
//!   length (u32), the key, the value's length (u32), the value;
//! - `Z`, the id generator's next value (u64), the number of entries (u64), and the CRC-32
//!   of every byte before the CRC.
//!
//! The id generator is not a tree: stream positions and short ids come from it, so a
//! restored database must hand out only ids above every one the snapshot holds.

use std::{
    io::{Read, Write},
    path::Path,
};

use super::{Result, StorageError, Store};

const MAGIC: &[u8] = b"MYELIN-SNAPSHOT-1\n";

/// Entries inserted per batch when restoring.
const RESTORE_BATCH: usize = 10_000;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub trees: u64,
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

fn io(e: std::io::Error) -> StorageError {
    StorageError::Io(e)
}

fn bad(what: &str) -> StorageError {
    StorageError::BadSnapshot(what.to_owned())
}

/// A writer that keeps the CRC of what went through it.
struct Checksummed<W> {
    out: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Checksummed<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes).map_err(io)
    }

    fn put_sized(&mut self, bytes: &[u8]) -> Result<()> {
        let len = u32::try_from(bytes.len()).map_err(|_| bad("a key or value over 4 GiB"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

impl Store {
    /// Writes every tree to `out` as of one moment; writes to the store wait meanwhile, and
    /// how long they waited is returned beside what was written. `progress` is called with
    /// the entries written so far, every 100 000 and at the end.
    pub fn write_snapshot(
        &self,
        out: impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(SnapshotSummary, std::time::Duration)> {
        let mut out = Checksummed { out: std::io::BufWriter::new(out), crc: crc32fast::Hasher::new() };
        let mut summary = SnapshotSummary { trees: 0, entries: 0, bytes: 0 };
        out.put(MAGIC)?;
        let closed = self.gate.close();
        let closed_at = std::time::Instant::now();
        // Every id in the snapshot is below this one.
        let next_id = self.db.generate_id()?;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name)?;
            out.put(b"T")?;
            out.put_sized(&name)?;
            summary.trees += 1;
            for item in tree.iter() {
                let (key, value) = item?;
                out.put(b"E")?;
                out.put_sized(&key)?;
                out.put_sized(&value)?;
                summary.entries += 1;
                summary.bytes += (key.len() + value.len()) as u64;
                if summary.entries.is_multiple_of(100_000) {
                    progress(summary.entries);
                }
            }
        }
        drop(closed);
        let paused = closed_at.elapsed();
        out.put(b"Z")?;
        out.put(&next_id.to_be_bytes())?;
        out.put(&summary.entries.to_be_bytes())?;
        let crc = out.crc.clone().finalize();
        out.out.write_all(&crc.to_be_bytes()).map_err(io)?;
        out.out.flush().map_err(io)?;
        progress(summary.entries);
        Ok((summary, paused))
    }
}

/// A reader that keeps the CRC of what came through it.
struct Checked<R> {
    input: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Checked<R> {
    fn take(&mut self, buf: &mut [u8]) -> Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("the snapshot ends early (a copy cut short?)"),
            _ => io(e),
        })?;
        self.crc.update(buf);
        Ok(())
    }

    fn byte(&mut self) -> Result<u8> {
        let mut byte = [0u8];
        self.take(&mut byte)?;
        Ok(byte[0])
    }

    fn u64(&mut self) -> Result<u64> {
        let mut bytes = [0u8; 8];
        self.take(&mut bytes)?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn sized(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.take(&mut len)?;
        let len = u64::from(u32::from_be_bytes(len));
        // Read as it comes, so that a damaged length costs no 4 GiB allocation up front.
        let mut bytes = Vec::new();
        (&mut self.input).take(len).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 != len {
            return Err(bad("the snapshot ends early (a copy cut short?)"));
        }
        self.crc.update(&bytes);
        Ok(bytes)
    }
}

impl Store {
    /// Builds a new database in `dir` (which must not exist) from a snapshot and opens it,
    /// as [`Store::open`] does: an older schema is migrated, and event writes the snapshot
    /// caught half done are completed, as after a crash. (Opening the same database again
    /// right after closing it can find sled's lock still held, so it is not closed between.)
    pub fn restore(
        dir: &Path,
        cache_capacity_mb: u64,
        input: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Store, SnapshotSummary)> {
        if dir.exists() {
            return Err(bad(&format!("{} exists already", dir.display())));
        }
        let db = super::open_sled(dir, cache_capacity_mb)?;
        let summary = import(&db, input, progress)?;
        Ok((Store::from_db(db)?, summary))
    }
}

/// Reads a snapshot into an empty database.
fn import(db: &sled::Db, input: impl Read, progress: &mut dyn FnMut(u64)) -> Result<SnapshotSummary> {
    let mut input = Checked { input: std::io::BufReader::new(input), crc: crc32fast::Hasher::new() };
    let mut magic = vec![0u8; MAGIC.len()];
    input.take(&mut magic)?;
    if magic != MAGIC {
        return Err(bad("not a Myelin snapshot"));
    }
    let mut summary = SnapshotSummary { trees: 0, entries: 0, bytes: 0 };
    let mut tree: Option<sled::Tree> = None;
    let mut batch = (sled::Batch::default(), 0usize);
    let next_id = loop {
        match input.byte()? {
            b'T' => {
                if let Some(tree) = &tree {
                    tree.apply_batch(std::mem::take(&mut batch.0))?;
                }
                batch.1 = 0;
                tree = Some(db.open_tree(input.sized()?)?);
                summary.trees += 1;
            }
            b'E' => {
                let target = tree.as_ref().ok_or_else(|| bad("an entry before any tree"))?;
                let (key, value) = (input.sized()?, input.sized()?);
                summary.bytes += (key.len() + value.len()) as u64;
                batch.0.insert(key, value);
                batch.1 += 1;
                summary.entries += 1;
                if batch.1 == RESTORE_BATCH {
                    target.apply_batch(std::mem::take(&mut batch.0))?;
                    batch.1 = 0;
                    progress(summary.entries);
                }
            }
            b'Z' => {
                if let Some(tree) = &tree {
                    tree.apply_batch(std::mem::take(&mut batch.0))?;
                }
                let (next_id, entries) = (input.u64()?, input.u64()?);
                let expected = input.crc.clone().finalize();
                let mut crc = [0u8; 4];
                input.input.read_exact(&mut crc).map_err(|_| bad("the snapshot ends early"))?;
                if u32::from_be_bytes(crc) != expected || entries != summary.entries {
                    return Err(bad("the snapshot's checksum does not match: it is damaged"));
                }
                break next_id;
            }
            _ => return Err(bad("unknown record in the snapshot: it is damaged")),
        }
    };
    // sled hands out ids one by one (a few nanoseconds each) and has no way to start higher.
    while db.generate_id()? + 1 < next_id {}
    db.flush()?;
    progress(summary.entries);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::scratch_dir;

    fn store_with_entries(dir: &Path) -> Store {
        let store = Store::open(dir, 8).unwrap();
        for i in 0..1000u32 {
            store.meta.insert(format!("k{i}"), i.to_be_bytes().to_vec()).unwrap();
        }
        store.flush().unwrap();
        store
    }

    #[test]
    fn a_snapshot_restores_every_tree_and_the_id_generator() {
        let dir = scratch_dir("snapshot-source");
        let store = store_with_entries(&dir);
        let before = store.db.generate_id().unwrap();
        let mut bytes = Vec::new();
        let (written, _) = store.write_snapshot(&mut bytes, &mut |_| {}).unwrap();
        let restored_dir = scratch_dir("snapshot-restored");
        let (restored, read) = Store::restore(&restored_dir, 8, bytes.as_slice(), &mut |_| {}).unwrap();
        assert_eq!(written, read);
        assert_eq!(restored.meta.get("k999").unwrap().unwrap().as_ref(), 999u32.to_be_bytes());
        assert!(restored.db.generate_id().unwrap() > before);
        assert_eq!(restored.db.tree_names().len(), store.db.tree_names().len());
    }

    #[test]
    fn a_damaged_or_short_snapshot_is_refused() {
        let dir = scratch_dir("snapshot-damaged");
        let store = store_with_entries(&dir);
        let mut bytes = Vec::new();
        store.write_snapshot(&mut bytes, &mut |_| {}).unwrap();
        let middle = bytes.len() / 2;
        let mut flipped = bytes.clone();
        flipped[middle] ^= 0x01;
        for (name, damaged) in [("flipped", flipped), ("short", bytes[..middle].to_vec())] {
            let target = scratch_dir(&format!("snapshot-damaged-{name}"));
            let Err(err) = Store::restore(&target, 8, damaged.as_slice(), &mut |_| {}) else {
                panic!("{name}: a damaged snapshot was restored");
            };
            assert!(matches!(err, StorageError::BadSnapshot(_)), "{name}: {err}");
        }
    }

    #[test]
    fn writers_wait_while_a_snapshot_is_taken() {
        let dir = scratch_dir("snapshot-gate");
        let store = std::sync::Arc::new(store_with_entries(&dir));
        let closed = store.gate.close();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || store.meta.insert("late", b"x".to_vec()).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(store.meta.get("late").unwrap().is_none(), "a write got past the closed gate");
        drop(closed);
        writer.join().unwrap();
        assert!(store.meta.get("late").unwrap().is_some());
    }
}
