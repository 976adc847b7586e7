//! Snapshots of the whole database, for backups: every tree as of one moment, in a stream
//! that [`restore_snapshot`] turns into a new database.
//!
//! The trees are copied while the server writes, and sled's subscribers note which keys
//! change meanwhile. Then the write gate is closed (see [`super::tree`]) and those keys are
//! read again: the moment is the gate's, and writers wait only for the re-read (readers
//! never wait). Copying every tree under the gate instead held sends up for 7 s at 300 000
//! events (3.6 million entries: the cost is per entry). The stream goes to a file without
//! waiting for the disk, which its caller syncs after the gate is open again.
//!
//! Format, every integer big-endian:
//! - [`MAGIC`];
//! - per tree, `T`, the name's length (u32) and the name, then per entry `E`, the key's
//!   length (u32), the key, the value's length (u32), the value;
//! - then, for the trees written to while they were copied, `T` and the name again, and per
//!   key written meanwhile its value at the end (`E` as above) or `D`, the key's length and
//!   the key, for a key removed;
//! - `Z`, the id generator's next value (u64), the number of entries (u64), and the CRC-32
//!   of every byte before the CRC.
//!
//! The id generator is not a tree: stream positions and short ids come from it, so a
//! restored database must hand out only ids above every one the snapshot holds.

use std::{
    collections::HashSet,
    io::{Read, Write},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sled::IVec;

use super::{Result, StorageError, Store};

const MAGIC: &[u8] = b"MYELIN-SNAPSHOT-1\n";

/// Progress is reported every this many entries.
const PROGRESS_EVERY: u64 = 100_000;

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

    /// An entry set (`E`, with its value) or removed (`D`).
    fn entry(
        &mut self,
        summary: &mut SnapshotSummary,
        kind: u8,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<()> {
        self.put(&[kind])?;
        self.put_sized(key)?;
        if let Some(value) = value {
            self.put_sized(value)?;
        }
        summary.entries += 1;
        summary.bytes += (key.len() + value.map_or(0, <[u8]>::len)) as u64;
        Ok(())
    }
}

impl Store {
    /// Writes every tree to `out` as of one moment. Writes to the store wait only at the
    /// end, while what changed during the copy is read again; how long is returned beside
    /// what was written. `progress` is called with the entries written so far, every
    /// 100 000 and at the end.
    ///
    /// The copy itself runs beside the writers: a subscriber on every tree records which
    /// keys change meanwhile, and once the gate is closed their values of that moment are
    /// appended as updates (sets and removals) that a restore applies over the copy. The
    /// keys, not the values the subscribers saw: sled queues an event when a write begins,
    /// so two writes to one key may be seen in another order than they landed.
    pub fn write_snapshot(
        &self,
        out: impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(SnapshotSummary, std::time::Duration)> {
        let mut out = Checksummed { out: std::io::BufWriter::new(out), crc: crc32fast::Hasher::new() };
        let mut summary = SnapshotSummary { trees: 0, entries: 0, bytes: 0 };
        out.put(MAGIC)?;
        let trees = self
            .db
            .tree_names()
            .into_iter()
            .map(|name| Ok((name.clone(), self.db.open_tree(&name)?)))
            .collect::<Result<Vec<_>>>()?;
        let changes = ChangedKeys::watch(&trees);
        // A write already under way when the subscribers came may not have told them:
        // let every such write finish before copying.
        drop(self.gate.close());

        for (name, tree) in &trees {
            out.put(b"T")?;
            out.put_sized(name)?;
            summary.trees += 1;
            for item in tree.iter() {
                let (key, value) = item?;
                out.entry(&mut summary, b'E', &key, Some(&value))?;
                if summary.entries.is_multiple_of(PROGRESS_EVERY) {
                    progress(summary.entries);
                }
            }
        }

        let closed = self.gate.close();
        let closed_at = std::time::Instant::now();
        // Every id in the snapshot is below this one.
        let next_id = self.db.generate_id()?;
        for (index, keys) in changes.finish().into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let (name, tree) = &trees[index];
            out.put(b"T")?;
            out.put_sized(name)?;
            for key in keys {
                match tree.get(&key)? {
                    Some(value) => out.entry(&mut summary, b'E', &key, Some(&value))?,
                    None => out.entry(&mut summary, b'D', &key, None)?,
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

/// The keys written in each tree while a snapshot is copied, collected by one thread per
/// tree (sled blocks writers once a subscriber has 1 024 events it has not taken).
struct ChangedKeys {
    stop: Arc<AtomicBool>,
    drains: Vec<std::thread::JoinHandle<HashSet<IVec>>>,
}

impl ChangedKeys {
    fn watch(trees: &[(IVec, sled::Tree)]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let drains = trees
            .iter()
            .map(|(_, tree)| {
                let mut events = tree.watch_prefix(Vec::new());
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut keys = HashSet::new();
                    loop {
                        match events.next_timeout(Duration::from_millis(20)) {
                            Ok(event) => {
                                keys.insert(event.key().clone());
                            }
                            // Nothing came for a while; once the writers are stopped, nothing will.
                            Err(_) if stop.load(Ordering::Acquire) => return keys,
                            Err(_) => {}
                        }
                    }
                })
            })
            .collect();
        Self { stop, drains }
    }

    /// With every writer waiting at the gate: the keys changed in each tree, in the order
    /// the trees were given.
    fn finish(self) -> Vec<HashSet<IVec>> {
        self.stop.store(true, Ordering::Release);
        self.drains.into_iter().map(|drain| drain.join().unwrap_or_default()).collect()
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
    let mut names = HashSet::new();
    let next_id = loop {
        match input.byte()? {
            b'T' => {
                let name = input.sized()?;
                // The updates at the end name trees a second time.
                if !names.contains(&name) {
                    summary.trees += 1;
                    names.insert(name.clone());
                }
                tree = Some(db.open_tree(name)?);
            }
            b'E' => {
                let target = tree.as_ref().ok_or_else(|| bad("an entry before any tree"))?;
                let (key, value) = (input.sized()?, input.sized()?);
                summary.bytes += (key.len() + value.len()) as u64;
                // One insert at a time: sled's batches held about 3 KB of memory per entry
                // until long after they were applied (9 GB to restore 3.6 million entries).
                target.insert(key, value)?;
                summary.entries += 1;
                if summary.entries.is_multiple_of(PROGRESS_EVERY) {
                    progress(summary.entries);
                }
            }
            b'D' => {
                let target = tree.as_ref().ok_or_else(|| bad("an entry before any tree"))?;
                let key = input.sized()?;
                summary.bytes += key.len() as u64;
                target.remove(key)?;
                summary.entries += 1;
            }
            b'Z' => {
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

    /// A writer keeps a pair of trees in step (B's keys are always A's, A's a sliding
    /// window); a snapshot taken while it runs must hold a state it left, whatever order
    /// the trees are copied in and however far the writer got meanwhile.
    #[test]
    fn a_snapshot_taken_beside_a_writer_is_a_state_the_store_was_in() {
        let store = std::sync::Arc::new(Store::open(&scratch_dir("snapshot-live"), 8).unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store.filters.insert(i.to_be_bytes(), b"a".to_vec()).unwrap();
                    store.reports.insert(i.to_be_bytes(), b"b".to_vec()).unwrap();
                    if let Some(old) = i.checked_sub(50) {
                        store.reports.remove(old.to_be_bytes()).unwrap();
                        store.filters.remove(old.to_be_bytes()).unwrap();
                    }
                    i += 1;
                }
                i
            })
        };
        while store.filters.len() < 50 {
            std::thread::yield_now();
        }
        let mut bytes = Vec::new();
        store.write_snapshot(&mut bytes, &mut |_| {}).unwrap();
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(written > 50);

        let (restored, _) =
            Store::restore(&scratch_dir("snapshot-live-restored"), 8, bytes.as_slice(), &mut |_| {}).unwrap();
        let keys = |tree: &crate::storage::Tree| -> Vec<u64> {
            tree.iter().map(|item| u64::from_be_bytes(item.unwrap().0.as_ref().try_into().unwrap())).collect()
        };
        let (a, b) = (keys(&restored.filters), keys(&restored.reports));
        assert!(b.iter().all(|k| a.contains(k)), "B has keys A lacks: a={a:?} b={b:?}");
        assert!(!a.is_empty() && a.windows(2).all(|w| w[1] == w[0] + 1), "A is not a window: {a:?}");
        assert!(a.len() <= 51, "A holds {} keys", a.len());
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
