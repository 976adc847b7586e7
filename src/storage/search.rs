//! The full-text index behind server-side search (`POST /search`): an inverted index of the
//! searchable text of timeline events (`content.body` of `m.room.message`, `content.name` of
//! `m.room.name`, `content.topic` of `m.room.topic`), in sled like everything else.
//!
//! Why here and not tantivy (or another search engine beside the store):
//! - **One store, one durability path.** An event's postings are index writes in its write
//!   set (`event_writes`), so they reach disk in the same group commit as the event and a
//!   crash recovers both or neither. A second engine would have its own commit, its own
//!   crash recovery and a window in which one holds an event the other lacks.
//! - **No second dependency tree.** tantivy and its crates would add minutes to every build
//!   on a two-core machine and megabytes to the binary, for queries that are a few range
//!   scans.
//! - **The same typed API for every engine.** Domains call [`Store::search_scan`] and never
//!   see a posting; a PostgreSQL engine can answer the same calls from a GIN index.
//!
//! Tree `search_postings`: term, `0xff`, S(room) (8 bytes), position (8 bytes) → tf (u8,
//! occurrences of the term in the event, saturating) and the event's length in terms (u16),
//! both big-endian. Within a term, a room's postings are in stream order, so the newest
//! match at or below a position is one reverse range step; several terms (AND, as Synapse
//! searches) are intersected by leapfrogging from term to term, which reads about as many
//! postings as the rarest term has in the room, never the whole list of a common one.
//!
//! Terms come from [`terms`]: Unicode word boundaries (UAX #29, so ideographs are words of
//! their own), lower-cased, split again at anything not alphanumeric, at most
//! [`MAX_TERM_BYTES`] long. Queries use the same function, so both sides agree.

use std::collections::{BTreeMap, BinaryHeap};

use serde_json::Value as JsonValue;
use unicode_segmentation::UnicodeSegmentation;

use super::Tree;
use super::{
    Result, SEP, Store, StoredEvent, decode,
    event_writes::{Index, WriteSet},
    rooms::u64_from,
};

/// The postings tree's name.
pub(super) const SEARCH_TREE: &str = "search_postings";

/// Longer terms are cut to this many bytes (at a character boundary), to bound key sizes.
pub const MAX_TERM_BYTES: usize = 64;

/// The searchable fields, by the key a search names them with.
pub const FIELDS: [(&str, &str, &str); 3] = [
    ("content.body", "m.room.message", "body"),
    ("content.name", "m.room.name", "name"),
    ("content.topic", "m.room.topic", "topic"),
];

/// The terms of a text, in order, with repeats.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.unicode_words() {
        let lower = word.to_lowercase();
        for part in lower.split(|c: char| !c.is_alphanumeric()).filter(|p| !p.is_empty()) {
            let mut end = part.len().min(MAX_TERM_BYTES);
            while !part.is_char_boundary(end) {
                end -= 1;
            }
            out.push(part[..end].to_owned());
        }
    }
    out
}

/// The searchable text of a PDU (client or federation format: both have `type` and
/// `content`), if it has one.
pub fn searchable_text(pdu: &JsonValue) -> Option<&str> {
    let kind = pdu.get("type")?.as_str()?;
    let (_, _, field) = FIELDS.iter().find(|(_, k, _)| *k == kind)?;
    pdu.get("content")?.get(field)?.as_str()
}

/// An event's postings: each distinct term with its posting value.
fn postings(text: &str) -> BTreeMap<String, [u8; 3]> {
    let all = terms(text);
    let len = u16::try_from(all.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut counts: BTreeMap<String, u8> = BTreeMap::new();
    for term in all {
        let count = counts.entry(term).or_default();
        *count = count.saturating_add(1);
    }
    counts.into_iter().map(|(term, tf)| (term, [tf, len[0], len[1]])).collect()
}

fn posting_key(term: &str, room_short: u64, position: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(term.len() + 17);
    key.extend_from_slice(term.as_bytes());
    key.push(SEP);
    key.extend_from_slice(&room_short.to_be_bytes());
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// How often each query term occurs in a matched event, and the event's length in terms:
/// what a rank is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct TermStats {
    pub frequencies: Vec<u8>,
    pub length: u16,
}

/// One event that holds every term of a query.
#[derive(Debug, Clone)]
pub struct SearchHit {
    /// Index into the rooms the scan was given.
    pub room: usize,
    pub position: u64,
    pub stats: TermStats,
}

/// A room to search and the last position in it the reader may see (`u64::MAX`: all).
pub struct SearchRoom {
    pub short: u64,
    pub upto: u64,
}

/// Matches newest first, across rooms: see [`Store::search_scan`].
pub struct SearchScan {
    /// The postings tree as the scan began (a rebuild may replace it meanwhile).
    tree: Tree,
    terms: Vec<String>,
    rooms: Vec<SearchRoom>,
    /// The next match of each room that has one, newest on top.
    heads: BinaryHeap<(u64, usize, Vec<u8>, u16)>,
}

impl Store {
    /// The postings tree, held while it is written so that a rebuild never drops it under
    /// a writer.
    fn postings(&self) -> std::sync::RwLockReadGuard<'_, Tree> {
        self.search_postings.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One posting written (`Some`) or removed, from an event's write set.
    pub(super) fn write_posting(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let tree = self.postings();
        match value {
            Some(value) => tree.insert(key, value)?,
            None => tree.remove(key)?,
        };
        Ok(())
    }

    /// The postings of an event about to be stored, added to its write set.
    pub(super) fn search_writes(
        &self,
        pdu: &JsonValue,
        room_short: u64,
        position: u64,
        writes: &mut WriteSet,
    ) {
        if let Some(text) = searchable_text(pdu) {
            for (term, value) in postings(text) {
                writes.insert(Index::Search, posting_key(&term, room_short, position), value.to_vec());
            }
        }
    }

    /// Removes an event's postings (its text as it was indexed); for redactions and purges.
    pub(super) fn unindex_event(&self, pdu: &JsonValue, room_short: u64, position: u64) -> Result<()> {
        if let Some(text) = searchable_text(pdu) {
            let tree = self.postings();
            for term in postings(text).into_keys() {
                tree.remove(posting_key(&term, room_short, position))?;
            }
        }
        Ok(())
    }

    /// Every event holding all `terms` in `rooms`, newest first, strictly below `before`.
    /// Lazy: each step reads a few postings per term, so a caller that stops after a page
    /// pays for a page.
    pub fn search_scan(&self, terms: Vec<String>, rooms: Vec<SearchRoom>, before: u64) -> Result<SearchScan> {
        let tree = self.postings().clone();
        let mut scan = SearchScan { tree, terms, rooms, heads: BinaryHeap::new() };
        if scan.terms.is_empty() {
            return Ok(scan);
        }
        for room in 0..scan.rooms.len() {
            let below = before.min(scan.rooms[room].upto.saturating_add(1));
            scan.advance(room, below)?;
        }
        Ok(scan)
    }

    /// The event id of a room's timeline event, by position (`None` if it is gone).
    pub fn event_id_at(&self, room_short: u64, position: u64) -> Result<Option<ruma::OwnedEventId>> {
        #[derive(serde::Deserialize)]
        struct Named {
            event_id: ruma::OwnedEventId,
        }
        let key = super::rooms::room_key(room_short, position);
        Ok(self
            .event_records
            .get(key)?
            .map(|v| decode::<Named>("event", &v))
            .transpose()?
            .map(|n| n.event_id))
    }

    /// Rebuilds the index from the stored events: drops the tree and starts a new one (sled
    /// frees a dropped tree's pages; removing ten million postings one by one took four
    /// minutes), then indexes every timeline event's current (possibly redacted) text.
    /// `progress` is called every 10 000 events and at the end with the events read and
    /// the events indexed. Events stored meanwhile are indexed by their own writes (an
    /// event's record is written before its postings, so one whose postings went with the
    /// old tree is read by the rebuild); searches during the rebuild see a partial index.
    pub async fn rebuild_search_index(
        &self,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<(u64, u64)> {
        let tree = {
            let mut slot = self.search_postings.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.gate.pass_for(|| self.db.drop_tree(SEARCH_TREE))?;
            *slot = Tree::open(&self.db, SEARCH_TREE, &self.gate)?;
            slot.clone()
        };
        let counts = index_records(&self.event_records, &tree, progress)?;
        self.durable().await?;
        Ok(counts)
    }
}

/// Indexes every timeline record (16-byte keys: room and position; outliers have 8).
pub(super) fn index_records(
    records: &Tree,
    postings_tree: &Tree,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, u64)> {
    let (mut read, mut indexed) = (0u64, 0u64);
    for item in records.iter() {
        let (key, bytes) = item?;
        if key.len() != 16 {
            continue;
        }
        read += 1;
        let stored: StoredEvent = decode("event", &bytes)?;
        let pdu = stored.pdu_json();
        if stored.redacted_because.is_none()
            && let Some(text) = searchable_text(&pdu)
        {
            let (short, position) = (u64_from(&key[..8])?, u64_from(&key[8..])?);
            let mut batch = sled::Batch::default();
            for (term, value) in postings(text) {
                batch.insert(posting_key(&term, short, position), value.to_vec());
            }
            postings_tree.apply_batch(batch)?;
            indexed += 1;
        }
        if read % 10_000 == 0 {
            progress(read, indexed);
        }
    }
    progress(read, indexed);
    Ok((read, indexed))
}

impl SearchScan {
    /// Finds the room's newest match strictly below `below` and queues it.
    fn advance(&mut self, room: usize, below: u64) -> Result<()> {
        let Some(mut candidate) = below.checked_sub(1) else { return Ok(()) };
        let short = self.rooms[room].short;
        let tree = &self.tree;
        'leapfrog: loop {
            let mut frequencies = Vec::with_capacity(self.terms.len());
            let mut length = 0;
            for term in &self.terms {
                let low = posting_key(term, short, 0);
                let high = posting_key(term, short, candidate);
                let Some((key, value)) = tree.range(low..=high).next_back().transpose()? else {
                    return Ok(());
                };
                let position = u64_from(&key[key.len() - 8..])?;
                if position < candidate {
                    candidate = position;
                    continue 'leapfrog;
                }
                frequencies.push(value.first().copied().unwrap_or(1));
                length = value.get(1..3).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            }
            self.heads.push((candidate, room, frequencies, length));
            return Ok(());
        }
    }
}

impl Iterator for SearchScan {
    type Item = Result<SearchHit>;

    fn next(&mut self) -> Option<Self::Item> {
        let (position, room, frequencies, length) = self.heads.pop()?;
        if let Err(e) = self.advance(room, position) {
            return Some(Err(e));
        }
        Some(Ok(SearchHit { room, position, stats: TermStats { frequencies, length } }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lower_case_words_split_at_punctuation() {
        assert_eq!(
            terms("Hello, World! e-mail foo_bar x.org"),
            ["hello", "world", "e", "mail", "foo", "bar", "x", "org"]
        );
        assert_eq!(terms("Grüße ÉCOLE"), ["grüße", "école"]);
        // Ideographs are words of their own, so a word inside a sentence is found.
        assert_eq!(terms("東京タワー"), ["東", "京", "タワー"]);
        let long = "a".repeat(100) + "é";
        assert_eq!(terms(&long)[0].len(), MAX_TERM_BYTES);
        assert!(terms(" ,;  ").is_empty());
    }

    #[test]
    fn postings_count_repeats_and_length() {
        let p = postings("the cat and the hat");
        assert_eq!(p["the"], [2, 0, 5]);
        assert_eq!(p["cat"], [1, 0, 5]);
    }

    #[test]
    fn only_the_searchable_field_of_each_type_is_text() {
        let message = serde_json::json!({"type": "m.room.message", "content": {"body": "hi", "name": "x"}});
        assert_eq!(searchable_text(&message), Some("hi"));
        let topic = serde_json::json!({"type": "m.room.topic", "content": {"topic": "t"}});
        assert_eq!(searchable_text(&topic), Some("t"));
        let encrypted = serde_json::json!({"type": "m.room.encrypted", "content": {"ciphertext": "x"}});
        assert_eq!(searchable_text(&encrypted), None);
    }

    #[test]
    fn a_scan_intersects_terms_newest_first_across_rooms() {
        let dir = super::super::scratch_dir("search-scan");
        let store = Store::open(&dir, 8).unwrap();
        let docs =
            [(1, 10, "apple pie"), (2, 11, "apple tart"), (1, 12, "pie only"), (1, 13, "Apple PIE apple")];
        for (room, position, text) in docs {
            for (term, value) in postings(text) {
                store.postings().insert(posting_key(&term, room, position), value.to_vec()).unwrap();
            }
        }
        let rooms = || vec![SearchRoom { short: 1, upto: u64::MAX }, SearchRoom { short: 2, upto: u64::MAX }];
        let found = |terms: &[&str], rooms: Vec<SearchRoom>, before| -> Vec<u64> {
            let terms = terms.iter().map(|t| t.to_string()).collect();
            store.search_scan(terms, rooms, before).unwrap().map(|h| h.unwrap().position).collect()
        };
        assert_eq!(found(&["apple"], rooms(), u64::MAX), [13, 11, 10]);
        assert_eq!(found(&["apple", "pie"], rooms(), u64::MAX), [13, 10]);
        assert_eq!(found(&["pie", "apple"], rooms(), 13), [10]);
        assert_eq!(found(&["apple"], vec![SearchRoom { short: 1, upto: 12 }], u64::MAX), [10]);
        assert!(found(&["pear"], rooms(), u64::MAX).is_empty());
        let hit =
            store.search_scan(vec!["apple".into()], rooms(), u64::MAX).unwrap().next().unwrap().unwrap();
        assert_eq!(hit.stats, TermStats { frequencies: vec![2], length: 3 });
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_rebuild_indexes_stored_text_and_nothing_else() {
        let dir = super::super::scratch_dir("search-rebuild");
        let store = Store::open(&dir, 8).unwrap();
        let record = |position: u64, pdu: serde_json::Value, redacted: bool| StoredEvent {
            event_id: ruma::OwnedEventId::try_from(format!("$e{position}")).unwrap(),
            pdu: serde_json::value::to_raw_value(&pdu).unwrap(),
            room_id: ruma::owned_room_id!("!r:x"),
            position,
            state_before: None,
            txn: None,
            redacted_because: redacted.then(|| ruma::owned_event_id!("$redaction")),
            replaces_state: None,
        };
        let message = |body: &str| serde_json::json!({"type": "m.room.message", "content": {"body": body}});
        let stored = [
            record(5, message("lost words"), false),
            record(6, message("lost but redacted"), true),
            record(
                7,
                serde_json::json!({"type": "m.room.member", "content": {"displayname": "lost"}}),
                false,
            ),
        ];
        for event in &stored {
            let key = super::super::rooms::room_key(3, event.position);
            store.event_records.insert(key, super::super::encode(event)).unwrap();
        }
        // A stale posting the rebuild must drop.
        store.postings().insert(posting_key("lost", 3, 9), vec![1, 0, 1]).unwrap();
        let mut calls = 0;
        let counts = store.rebuild_search_index(&mut |_, _| calls += 1).await.unwrap();
        assert_eq!(counts, (3, 1));
        assert!(calls >= 1);
        let rooms = vec![SearchRoom { short: 3, upto: u64::MAX }];
        let found: Vec<u64> = store
            .search_scan(vec!["lost".into()], rooms, u64::MAX)
            .unwrap()
            .map(|h| h.unwrap().position)
            .collect();
        assert_eq!(found, [5]);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
