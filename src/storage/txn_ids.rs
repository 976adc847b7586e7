//! Client transaction ids of sends, so that a retried send returns the first one's event.
//!
//! Tree `txn_ids`: user, `0xff`, device, `0xff`, transaction id → when it was stored (ms
//! since the epoch, big-endian u64), then the event id. Entries written before they carried
//! the time hold the event id alone; an event id starts with `$`, which no time in the next
//! million years does.
//!
//! A client retries a send within minutes, so ids are forgotten after a day (Synapse does
//! the same). Kept for ever, they were one of the four keys every message adds, and sled
//! holds state in memory for every page of keys.

use ruma::{DeviceId, EventId, OwnedEventId, UserId};

use super::{Result, Store, composite_key, event_id_from};

/// The key of a transaction id.
pub(super) fn key(user: &UserId, device: &DeviceId, txn_id: &str) -> Vec<u8> {
    composite_key(&[user.as_bytes(), device.as_bytes(), txn_id.as_bytes()])
}

/// The value stored for a send made now.
pub(super) fn value(event_id: &EventId) -> Vec<u8> {
    [&crate::now_ms().to_be_bytes()[..], event_id.as_bytes()].concat()
}

/// When the entry was stored (`None` for entries from before that was recorded), and the
/// event id.
fn parse(value: &[u8]) -> Result<(Option<u64>, OwnedEventId)> {
    if value.first() == Some(&b'$') {
        return Ok((None, event_id_from(value)?));
    }
    let (time, event_id) = value.split_at_checked(8).unwrap_or((value, &[]));
    Ok((Some(super::be_u64("transaction id time", time)?), event_id_from(event_id)?))
}

impl Store {
    /// The event a client's earlier send with this transaction id produced.
    pub fn txn_event(&self, user: &UserId, device: &DeviceId, txn_id: &str) -> Result<Option<OwnedEventId>> {
        match self.txn_ids.get(key(user, device, txn_id))? {
            Some(value) => Ok(Some(parse(&value)?.1)),
            None => Ok(None),
        }
    }

    /// Forgets transaction ids stored before `cutoff_ms`, and those stored before entries
    /// carried a time. Returns how many were forgotten.
    pub fn forget_txn_ids_before(&self, cutoff_ms: u64) -> Result<usize> {
        let mut forgotten = 0;
        for item in self.txn_ids.iter() {
            let (key, value) = item?;
            if parse(&value)?.0.is_some_and(|stored| stored >= cutoff_ms) {
                continue;
            }
            // Only if unchanged since read: the id may have been used again meanwhile.
            if self.txn_ids.compare_and_swap(&key, Some(&value), None as Option<&[u8]>)?.is_ok() {
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, event_id, user_id};

    use super::*;
    use crate::storage::scratch_dir;

    #[test]
    fn ids_are_forgotten_once_older_than_the_cutoff() {
        let store = Store::open(&scratch_dir("txn-ids-forget"), 8).unwrap();
        let (alice, desk) = (user_id!("@alice:x"), device_id!("DESK"));
        store.txn_ids.insert(key(alice, desk, "t1"), value(event_id!("$one"))).unwrap();
        assert_eq!(store.txn_event(alice, desk, "t1").unwrap().unwrap(), "$one");

        let now = crate::now_ms();
        assert_eq!(store.forget_txn_ids_before(now - 60_000).unwrap(), 0);
        assert!(store.txn_event(alice, desk, "t1").unwrap().is_some());
        assert_eq!(store.forget_txn_ids_before(now + 60_000).unwrap(), 1);
        assert!(store.txn_event(alice, desk, "t1").unwrap().is_none());
    }

    #[test]
    fn entries_without_a_time_still_read_and_are_forgotten_first() {
        let store = Store::open(&scratch_dir("txn-ids-untimed"), 8).unwrap();
        let (alice, desk) = (user_id!("@alice:x"), device_id!("DESK"));
        store.txn_ids.insert(key(alice, desk, "old"), "$old".as_bytes()).unwrap();
        store.txn_ids.insert(key(alice, desk, "new"), value(event_id!("$new"))).unwrap();
        assert_eq!(store.txn_event(alice, desk, "old").unwrap().unwrap(), "$old");

        assert_eq!(store.forget_txn_ids_before(0).unwrap(), 1);
        assert!(store.txn_event(alice, desk, "old").unwrap().is_none());
        assert_eq!(store.txn_event(alice, desk, "new").unwrap().unwrap(), "$new");
    }
}
