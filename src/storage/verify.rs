//! Referential integrity of the database: `myelin db verify`.
//!
//! Each check walks one tree and looks up what its entries name in the others, so memory
//! stays flat however large the store is (only the rooms, a few hundred bytes each, are
//! held). What a check finds is reported; with `repair`, what can be rebuilt from another
//! record without guessing is fixed:
//! - an event-id index entry that names no record is removed, one that is missing is added;
//! - a state key whose reverse entry is missing gets it back;
//! - a relation whose event is gone is removed;
//! - an id generator behind an id in use is moved past it.
//!
//! Anything else (an event in no known room, a missing state snapshot) would need the
//! lost data itself: restore a backup.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{
    Result, SEP, Store, be_u64, decode, event_id_from,
    memberships::UserRoom,
    rooms::{RoomRecord, Snapshot, StoredEvent},
};

/// Findings kept per check; the rest are only counted.
const FINDINGS_KEPT: usize = 100;

/// One problem found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub detail: String,
    pub repaired: bool,
}

/// What `verify` looked at and found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Per check, the entries it looked at.
    pub checked: Vec<(String, u64)>,
    /// Per check, the problems found (listed in `findings` up to a limit per check).
    pub problems: Vec<(String, u64)>,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|(_, n)| *n == 0)
    }

    /// Problems found and not repaired.
    pub fn unrepaired(&self) -> u64 {
        let repaired = self.findings.iter().filter(|f| f.repaired).count() as u64;
        self.problems.iter().map(|(_, n)| n).sum::<u64>().saturating_sub(repaired)
    }
}

/// One check under way.
struct Check<'a> {
    name: &'static str,
    report: &'a mut VerifyReport,
    progress: &'a mut dyn FnMut(&str, u64),
    checked: u64,
    problems: u64,
}

impl<'a> Check<'a> {
    fn new(name: &'static str, report: &'a mut VerifyReport, progress: &'a mut dyn FnMut(&str, u64)) -> Self {
        Self { name, report, progress, checked: 0, problems: 0 }
    }

    fn tick(&mut self) {
        self.checked += 1;
        if self.checked.is_multiple_of(100_000) {
            (self.progress)(self.name, self.checked);
        }
    }

    fn found(&mut self, detail: String, repaired: bool) {
        self.problems += 1;
        if self.problems as usize <= FINDINGS_KEPT {
            self.report.findings.push(Finding { check: self.name.to_owned(), detail, repaired });
        }
    }

    fn finish(self) {
        (self.progress)(self.name, self.checked);
        self.report.checked.push((self.name.to_owned(), self.checked));
        self.report.problems.push((self.name.to_owned(), self.problems));
    }
}

/// A room as the checks need it.
struct KnownRoom {
    room_id: String,
    last_position: u64,
}

impl Store {
    /// Checks the database's references; with `repair`, fixes what can be rebuilt (see the
    /// module docs). `progress` gets the check under way and the entries it has looked at,
    /// every 100 000 and when it ends.
    ///
    /// Without `repair` the checks see one moment: writes wait until they are done (see
    /// [`super::tree`]). Repairs write, so they must not run beside a server.
    pub fn verify(&self, repair: bool, progress: &mut dyn FnMut(&str, u64)) -> Result<VerifyReport> {
        let _closed = (!repair).then(|| self.gate.close());
        let mut report = VerifyReport::default();
        let mut highest_id = 0u64;
        let rooms = self.verify_rooms(&mut report, progress, &mut highest_id)?;
        self.verify_events(&rooms, repair, &mut report, progress, &mut highest_id)?;
        self.verify_event_index(repair, &mut report, progress)?;
        self.verify_state_keys(repair, &mut report, progress, &mut highest_id)?;
        self.verify_snapshots(&mut report, progress, &mut highest_id)?;
        self.verify_current_state(&rooms, &mut report, progress)?;
        self.verify_memberships(&mut report, progress)?;
        self.verify_relations(repair, &mut report, progress)?;
        let mut check = Check::new("id generator", &mut report, progress);
        check.tick();
        let next = self.db.generate_id()?;
        if next <= highest_id {
            if repair {
                while self.db.generate_id()? <= highest_id {}
            }
            check.found(format!("the next id {next} is not above the highest in use, {highest_id}"), repair);
        }
        check.finish();
        if repair {
            self.db.flush()?;
        }
        Ok(report)
    }

    fn verify_rooms(
        &self,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
        highest_id: &mut u64,
    ) -> Result<HashMap<u64, KnownRoom>> {
        let mut check = Check::new("rooms", report, progress);
        let mut rooms = HashMap::new();
        for item in self.rooms.iter() {
            let (key, bytes) = item?;
            check.tick();
            let room: RoomRecord = match decode("room", &bytes) {
                Ok(room) => room,
                Err(e) => {
                    check.found(format!("{}: {e}", String::from_utf8_lossy(&key)), false);
                    continue;
                }
            };
            if key.as_ref() != room.room_id.as_bytes() {
                check.found(
                    format!("{} is stored under {}", room.room_id, String::from_utf8_lossy(&key)),
                    false,
                );
            }
            if let Some(snapshot) = room.snapshot
                && !self.snapshots.contains_key(snapshot.to_be_bytes())?
            {
                check.found(
                    format!("{}: its current state snapshot {snapshot} is missing", room.room_id),
                    false,
                );
            }
            *highest_id = (*highest_id).max(room.short).max(room.last_position);
            rooms.insert(
                room.short,
                KnownRoom { room_id: room.room_id.to_string(), last_position: room.last_position },
            );
        }
        check.finish();
        Ok(rooms)
    }

    /// Every event record: in a known room at its own position, its state before it
    /// stored, and indexed by its event id.
    fn verify_events(
        &self,
        rooms: &HashMap<u64, KnownRoom>,
        repair: bool,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
        highest_id: &mut u64,
    ) -> Result<()> {
        let mut check = Check::new("events", report, progress);
        for item in self.event_records.iter() {
            let (key, bytes) = item?;
            check.tick();
            let event: StoredEvent = match decode("event", &bytes) {
                Ok(event) => event,
                Err(e) => {
                    check.found(format!("record {}: {e}", hex(&key)), false);
                    continue;
                }
            };
            let id = &event.event_id;
            match key.len() {
                16 => {
                    let short = be_u64("room short id", &key[..8])?;
                    let position = be_u64("position", &key[8..])?;
                    *highest_id = (*highest_id).max(position);
                    match rooms.get(&short) {
                        None => check.found(format!("{id} is in a room that is not stored ({short})"), false),
                        Some(room) if room.room_id != event.room_id.as_str() => check.found(
                            format!("{id} of {} is in the timeline of {}", event.room_id, room.room_id),
                            false,
                        ),
                        Some(room) if room.last_position != 0 && position > room.last_position => check
                            .found(
                                format!(
                                    "{id} is at {position}, after its room's latest event ({})",
                                    room.last_position
                                ),
                                false,
                            ),
                        Some(_) => {}
                    }
                    if event.position != position {
                        check.found(
                            format!("{id} says position {} but is stored at {position}", event.position),
                            false,
                        );
                    }
                }
                8 => *highest_id = (*highest_id).max(be_u64("outlier key", &key)?),
                _ => check.found(format!("{id} is stored under a malformed key {}", hex(&key)), false),
            }
            if let Some(snapshot) = event.state_before
                && !self.snapshots.contains_key(snapshot.to_be_bytes())?
            {
                check.found(format!("{id}: the state before it (snapshot {snapshot}) is missing"), false);
            }
            match self.event_keys.get(id.as_bytes())? {
                Some(indexed) if indexed == key => {}
                Some(indexed) if self.event_records.contains_key(&indexed)? => check
                    .found(format!("{id} is stored twice, at {} and {}", hex(&key), hex(&indexed)), false),
                _ => {
                    if repair {
                        self.event_keys.insert(id.as_bytes(), key.as_ref())?;
                    }
                    check.found(format!("{id} is missing from the event id index"), repair);
                }
            }
        }
        check.finish();
        Ok(())
    }

    /// Every event id indexed names a record of that event.
    fn verify_event_index(
        &self,
        repair: bool,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<()> {
        let mut check = Check::new("event id index", report, progress);
        for item in self.event_keys.iter() {
            let (id, key) = item?;
            check.tick();
            let id = String::from_utf8_lossy(&id).into_owned();
            let Some(bytes) = self.event_records.get(&key)? else {
                if repair {
                    self.event_keys.remove(id.as_bytes())?;
                }
                check.found(format!("{id} names record {} that is not stored", hex(&key)), repair);
                continue;
            };
            match decode::<StoredEvent>("event", &bytes) {
                Ok(event) if event.event_id.as_str() == id => {}
                Ok(event) => check.found(format!("{id} names the record of {}", event.event_id), false),
                // Reported by the events check.
                Err(_) => {}
            }
        }
        check.finish();
        Ok(())
    }

    /// The state key short ids, both ways.
    fn verify_state_keys(
        &self,
        repair: bool,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
        highest_id: &mut u64,
    ) -> Result<()> {
        let mut check = Check::new("state key ids", report, progress);
        for item in self.state_keys.iter() {
            let (key, short) = item?;
            check.tick();
            let short_id = be_u64("state key short id", &short)?;
            *highest_id = (*highest_id).max(short_id);
            match self.state_keys_rev.get(&short)? {
                Some(reverse) if reverse == key => {}
                Some(reverse) => check.found(
                    format!("short id {short_id} names {} and {}", lossy(&key), lossy(&reverse)),
                    false,
                ),
                None => {
                    if repair {
                        self.state_keys_rev.insert(&short, key.as_ref())?;
                    }
                    check.found(
                        format!("short id {short_id} of {} has no reverse entry", lossy(&key)),
                        repair,
                    );
                }
            }
        }
        for item in self.state_keys_rev.iter() {
            let (short, key) = item?;
            check.tick();
            if self.state_keys.get(&key)?.is_none_or(|forward| forward != short) {
                let short_id = be_u64("state key short id", &short)?;
                check.found(format!("{} is not indexed as short id {short_id}", lossy(&key)), false);
            }
        }
        check.finish();
        Ok(())
    }

    /// State snapshots: parents stored, state keys known, events stored.
    fn verify_snapshots(
        &self,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
        highest_id: &mut u64,
    ) -> Result<()> {
        let mut check = Check::new("state snapshots", report, progress);
        for item in self.snapshots.iter() {
            let (key, bytes) = item?;
            check.tick();
            let id = be_u64("snapshot id", &key)?;
            *highest_id = (*highest_id).max(id);
            let snapshot: Snapshot = match decode("snapshot", &bytes) {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    check.found(format!("snapshot {id}: {e}"), false);
                    continue;
                }
            };
            if let Some(parent) = snapshot.parent
                && !self.snapshots.contains_key(parent.to_be_bytes())?
            {
                check.found(format!("snapshot {id}: its parent {parent} is missing"), false);
            }
            for (short, event_id) in &snapshot.changes {
                if !self.state_keys_rev.contains_key(short.to_be_bytes())? {
                    check.found(format!("snapshot {id}: state key {short} is unknown"), false);
                }
                if !self.event_keys.contains_key(event_id.as_bytes())? {
                    check.found(format!("snapshot {id}: state event {event_id} is not stored"), false);
                }
            }
        }
        check.finish();
        Ok(())
    }

    /// Each room's current state: a known room, known state keys, stored events.
    fn verify_current_state(
        &self,
        rooms: &HashMap<u64, KnownRoom>,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<()> {
        let mut check = Check::new("current state", report, progress);
        for item in self.room_state.iter() {
            let (key, event_id) = item?;
            check.tick();
            if key.len() != 16 {
                check.found(format!("malformed key {}", hex(&key)), false);
                continue;
            }
            let room = be_u64("room short id", &key[..8])?;
            if !rooms.contains_key(&room) {
                check.found(format!("state of room {room}, which is not stored"), false);
            }
            if !self.state_keys_rev.contains_key(&key[8..])? {
                check.found(format!("room {room}: state key {} is unknown", hex(&key[8..])), false);
            }
            let event_id = event_id_from(&event_id)?;
            if !self.event_keys.contains_key(event_id.as_bytes())? {
                check.found(format!("room {room}: state event {event_id} is not stored"), false);
            }
        }
        check.finish();
        Ok(())
    }

    /// Memberships by room and by user agree (a room the user forgot is kept by room only).
    fn verify_memberships(
        &self,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<()> {
        let mut check = Check::new("memberships", report, progress);
        for item in self.user_rooms.iter() {
            let (key, bytes) = item?;
            check.tick();
            let Some(sep) = key.iter().position(|b| *b == SEP) else {
                check.found(format!("malformed key {}", lossy(&key)), false);
                continue;
            };
            let (user, room) = (&key[..sep], &key[sep + 1..]);
            let by_user: UserRoom = decode("membership", &bytes)?;
            let by_room: Option<UserRoom> = self
                .memberships
                .get(super::composite_key(&[room, user]))?
                .map(|b| decode("membership", &b))
                .transpose()?;
            let (user, room) = (lossy(user), lossy(room));
            match by_room {
                None => check.found(format!("{user} in {room}: not recorded by room"), false),
                Some(entry)
                    if entry.position != by_user.position || entry.membership != by_user.membership =>
                {
                    check.found(
                        format!(
                            "{user} in {room}: {} at {} by user, {} at {} by room",
                            by_user.membership, by_user.position, entry.membership, entry.position
                        ),
                        false,
                    )
                }
                Some(_) => {}
            }
        }
        check.finish();
        Ok(())
    }

    /// Every relation names a stored event.
    fn verify_relations(
        &self,
        repair: bool,
        report: &mut VerifyReport,
        progress: &mut dyn FnMut(&str, u64),
    ) -> Result<()> {
        let mut check = Check::new("relations", report, progress);
        for item in self.relations.iter() {
            let (key, bytes) = item?;
            check.tick();
            let relation: super::Relation = decode("relation", &bytes)?;
            if !self.event_keys.contains_key(relation.event_id.as_bytes())? {
                if repair {
                    self.relations.remove(&key)?;
                }
                check.found(format!("{} relates to an event but is not stored", relation.event_id), repair);
            }
        }
        check.finish();
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lossy(bytes: &[u8]) -> String {
    // The separator is not UTF-8: it shows as U+FFFD.
    String::from_utf8_lossy(bytes).replace('\u{FFFD}', "|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::scratch_dir;

    #[test]
    fn an_empty_store_is_clean_and_broken_indexes_are_found_and_repaired() {
        let store = Store::open(&scratch_dir("verify"), 8).unwrap();
        assert!(store.verify(false, &mut |_, _| {}).unwrap().is_clean());

        store.event_keys.insert("$gone:example.org", 42u64.to_be_bytes().to_vec()).unwrap();
        store.state_keys.insert(b"m.room.name\xff", 7u64.to_be_bytes().to_vec()).unwrap();
        let found = store.verify(false, &mut |_, _| {}).unwrap();
        let checks: Vec<&str> = found.findings.iter().map(|f| f.check.as_str()).collect();
        assert_eq!(checks, ["event id index", "state key ids", "id generator"], "{found:?}");
        assert_eq!(found.unrepaired(), 3);
        assert!(
            store.event_keys.contains_key("$gone:example.org").unwrap(),
            "verify alone changed the store"
        );

        let repaired = store.verify(true, &mut |_, _| {}).unwrap();
        assert_eq!(repaired.unrepaired(), 0, "{repaired:?}");
        assert!(store.verify(false, &mut |_, _| {}).unwrap().is_clean());
    }
}
