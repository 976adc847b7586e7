//! Server-side search (`POST /search`, category `room_events`): which events a user may
//! find, in which order, page by page, with their context. The index itself is storage's
//! (`storage/search.rs`); this module decides what of it a user sees.
//!
//! - **Where it looks.** The rooms the user is joined to, and those they left, were kicked
//!   or banned from after joining (up to their departure), each opened through
//!   [`Rooms::reader`], the gate every history read passes. Each match is then checked
//!   against the event's history visibility, so events from before a join in a `joined`
//!   room never show. Redacted events are gone from the index, and are skipped should a
//!   redaction land mid-search. Encrypted events have no text to index.
//! - **What matches.** Every term of the search (AND, as Synapse), each a whole word: see
//!   `storage::search_terms`. No stemming and no prefix matching: a term the index would
//!   have to expand to many words would make the work grow with the vocabulary.
//! - **Bounded work.** A query reads at most [`WINDOW`] visible matches (and
//!   [`MAX_CANDIDATES`] matches in all). `recent` pages by position and so reaches every
//!   match eventually. `rank` orders the newest [`WINDOW`] matches below the position the
//!   first page saw: under AND semantics every match holds every term, so the terms'
//!   rarity (IDF) is the same for all of them and a rank is term frequency against length
//!   (BM25's shape). `count` is the number of visible matches in the window: exact below
//!   [`WINDOW`], a lower bound at it.

mod context;

use std::{collections::BTreeSet, sync::Arc};

use ruma::{UserId, api::client::filter::RoomEventFilter, events::room::member::MembershipState};

pub use context::{Context, ContextLimits, Profile};

use crate::{
    rooms::{Error, Event, Reader, Result, Rooms},
    storage::{SEARCH_FIELDS, SearchRoom, Store, TermStats, search_terms},
    sync::filter,
};

/// Visible matches a query reads at most.
pub const WINDOW: usize = 500;
/// Matches a query looks at, visible or not, at most.
pub const MAX_CANDIDATES: usize = 4 * WINDOW;
/// Terms of a search beyond these are ignored (each narrows the matches further).
const MAX_TERMS: usize = 16;
/// Results per page when the filter names no limit, and the most a page may hold.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

pub struct Search {
    store: Arc<Store>,
    rooms: Arc<Rooms>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Rank,
    Recent,
}

/// One search, as parsed from the request.
pub struct Query<'a> {
    pub user: &'a UserId,
    pub search_term: &'a str,
    /// `content.body`, `content.name`, `content.topic`; `None` for all three.
    pub keys: Option<Vec<String>>,
    pub filter: &'a RoomEventFilter,
    pub order: Order,
    pub context: Option<ContextLimits>,
    pub next_batch: Option<&'a str>,
}

/// One result: the event, its rank and, if asked for, its context.
pub struct Found {
    pub event: Arc<Event>,
    pub rank: f64,
    pub context: Option<Context>,
}

pub struct Results {
    pub found: Vec<Found>,
    pub count: usize,
    pub next_batch: Option<String>,
    pub highlights: Vec<String>,
}

/// Where a page starts: below a position (`recent`), or at an offset into the ranked
/// window of matches at or below a position (`rank`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    Recent { before: u64 },
    Rank { upto: u64, offset: usize },
}

impl Batch {
    fn parse(token: &str, order: Order) -> Result<Self> {
        let invalid = || Error::InvalidParam(format!("next_batch {token:?} is not a token from this search"));
        let rest = token.strip_prefix("s1.").ok_or_else(invalid)?;
        let batch = if let Some(position) = rest.strip_prefix('p') {
            Batch::Recent { before: position.parse().map_err(|_| invalid())? }
        } else if let Some(rank) = rest.strip_prefix('r') {
            let (upto, offset) = rank.split_once('.').ok_or_else(invalid)?;
            Batch::Rank {
                upto: upto.parse().map_err(|_| invalid())?,
                offset: offset.parse().map_err(|_| invalid())?,
            }
        } else {
            return Err(invalid());
        };
        match (batch, order) {
            (Batch::Recent { .. }, Order::Recent) | (Batch::Rank { .. }, Order::Rank) => Ok(batch),
            _ => Err(Error::InvalidParam("next_batch belongs to a search with another order_by".to_owned())),
        }
    }

    fn token(&self) -> String {
        match self {
            Batch::Recent { before } => format!("s1.p{before}"),
            Batch::Rank { upto, offset } => format!("s1.r{upto}.{offset}"),
        }
    }
}

/// BM25's term-frequency part, with 16 terms as the typical length of a message.
fn rank(stats: &TermStats) -> f64 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    const AVERAGE_LENGTH: f64 = 16.0;
    let norm = K1 * (1.0 - B + B * f64::from(stats.length.max(1)) / AVERAGE_LENGTH);
    stats.frequencies.iter().map(|&tf| f64::from(tf) * (K1 + 1.0) / (f64::from(tf) + norm)).sum()
}

impl Search {
    pub fn new(store: Arc<Store>, rooms: Arc<Rooms>) -> Self {
        Self { store, rooms }
    }

    /// Rebuilds the index from the stored events (`myelin db reindex`), logging progress;
    /// returns the events read and those indexed.
    pub async fn reindex(&self) -> Result<(u64, u64)> {
        let started = std::time::Instant::now();
        let mut progress = |read: u64, indexed: u64| {
            tracing::info!(read, indexed, secs = started.elapsed().as_secs(), "reindexing events for search");
        };
        Ok(self.store.rebuild_search_index(&mut progress).await?)
    }

    pub fn search(&self, query: &Query<'_>) -> Result<Results> {
        let batch = query.next_batch.map(|t| Batch::parse(t, query.order)).transpose()?;
        let types = searched_types(query.keys.as_deref())?;
        let limit = query
            .filter
            .limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(DEFAULT_LIMIT)
            .clamp(1, MAX_LIMIT);
        let mut terms: Vec<String> = Vec::new();
        for term in search_terms(query.search_term) {
            if !terms.contains(&term) && terms.len() < MAX_TERMS {
                terms.push(term);
            }
        }
        let empty = Results { found: vec![], count: 0, next_batch: None, highlights: vec![] };
        if terms.is_empty() {
            return Ok(empty);
        }
        let (mut searched, rooms) = self.searched_rooms(query.user, query.filter)?;
        let visible = self.store.visible_position();
        let before = match batch {
            Some(Batch::Recent { before }) => before,
            Some(Batch::Rank { upto, .. }) => upto.saturating_add(1),
            None => visible.saturating_add(1),
        }
        .min(visible.saturating_add(1));
        let shorts: Vec<u64> = rooms.iter().map(|r| r.short).collect();
        let scan = self.store.search_scan(terms.clone(), rooms, before)?;
        let mut window: Vec<(Arc<Event>, usize, f64)> = Vec::new();
        let mut exhausted = true;
        for (seen, hit) in scan.enumerate() {
            if seen == MAX_CANDIDATES || window.len() == WINDOW {
                exhausted = false;
                break;
            }
            let hit = hit?;
            let Some(event_id) = self.store.event_id_at(shorts[hit.room], hit.position)? else { continue };
            let Some(event) = self.rooms.event(&event_id)? else { continue };
            if event.stored.redacted_because.is_some()
                || !types.contains(event.pdu.kind.to_string().as_str())
                || !filter::matches(query.filter, &event.pdu)
                || !searched[hit.room].can_see(&event)?
            {
                continue;
            }
            window.push((event, hit.room, rank(&hit.stats)));
        }
        let (page, count, next_batch) = match query.order {
            Order::Recent => {
                let count = window.len();
                let more = count > limit || !exhausted;
                window.truncate(limit);
                let next =
                    more.then(|| window.last().map(|(e, ..)| Batch::Recent { before: e.stored.position }));
                (window, count, next.flatten())
            }
            Order::Rank => {
                let (upto, offset) = match batch {
                    Some(Batch::Rank { upto, offset }) => (upto, offset),
                    _ => (before - 1, 0),
                };
                window
                    .sort_by(|a, b| b.2.total_cmp(&a.2).then(b.0.stored.position.cmp(&a.0.stored.position)));
                let count = window.len();
                let page: Vec<_> = window.into_iter().skip(offset).take(limit).collect();
                let end = offset + page.len();
                let next = (end < count && !page.is_empty()).then_some(Batch::Rank { upto, offset: end });
                (page, count, next)
            }
        };
        let highlights = highlights(&terms, page.iter().map(|(e, ..)| &**e));
        let mut found = Vec::with_capacity(page.len());
        for (event, room, rank) in page {
            let context = match &query.context {
                Some(limits) => Some(self.context(&mut searched[room], &event, limits, query.filter)?),
                None => None,
            };
            found.push(Found { event, rank, context });
        }
        Ok(Results { found, count, next_batch: next_batch.map(|b| b.token()), highlights })
    }

    /// The rooms the user may search that the filter lets through, opened for reading, and
    /// where each room's postings stop for the user.
    fn searched_rooms<'a>(
        &'a self,
        user: &'a UserId,
        filter: &RoomEventFilter,
    ) -> Result<(Vec<Reader<'a>>, Vec<SearchRoom>)> {
        let mut searched = Vec::new();
        let mut rooms = Vec::new();
        for (room_id, entry) in self.store.user_rooms(user)? {
            let member = matches!(
                entry.membership,
                MembershipState::Join | MembershipState::Leave | MembershipState::Ban
            );
            let wanted = filter.rooms.as_ref().is_none_or(|rooms| rooms.contains(&room_id))
                && !filter.not_rooms.contains(&room_id);
            if !member || !wanted {
                continue;
            }
            let reader = match self.rooms.reader(&room_id, user) {
                Ok(reader) => reader,
                Err(Error::Forbidden(_)) => continue,
                Err(e) => return Err(e),
            };
            let short = self.rooms.room(&room_id)?.short;
            rooms.push(SearchRoom { short, upto: reader.last_position().unwrap_or(u64::MAX) });
            searched.push(reader);
        }
        Ok((searched, rooms))
    }
}

/// The event types whose text the `keys` of a search name (all three without `keys`).
fn searched_types(keys: Option<&[String]>) -> Result<BTreeSet<&'static str>> {
    let Some(keys) = keys else { return Ok(SEARCH_FIELDS.iter().map(|(_, kind, _)| *kind).collect()) };
    keys.iter()
        .map(|key| {
            SEARCH_FIELDS
                .iter()
                .find(|(name, ..)| name == key)
                .map(|(_, kind, _)| *kind)
                .ok_or_else(|| Error::InvalidParam(format!("{key:?} is not a key search knows")))
        })
        .collect()
}

/// The words to highlight: the search's terms, and each spelling of them in the results.
fn highlights<'a>(terms: &[String], events: impl Iterator<Item = &'a Event>) -> Vec<String> {
    let mut words: BTreeSet<String> = terms.iter().cloned().collect();
    for event in events {
        let Ok(content) = serde_json::from_str::<serde_json::Value>(event.pdu.content.get()) else {
            continue;
        };
        let text = SEARCH_FIELDS
            .iter()
            .find(|(_, kind, _)| event.pdu.kind.to_string() == *kind)
            .and_then(|(_, _, field)| content.get(field)?.as_str().map(str::to_owned));
        let Some(text) = text else { continue };
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() && search_terms(word).iter().any(|t| terms.contains(t)) {
                words.insert(word.to_owned());
            }
        }
    }
    words.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_tokens_round_trip_and_refuse_strangers() {
        for (batch, order) in [
            (Batch::Recent { before: 42 }, Order::Recent),
            (Batch::Rank { upto: 7, offset: 10 }, Order::Rank),
        ] {
            assert_eq!(Batch::parse(&batch.token(), order).unwrap(), batch);
        }
        for bad in ["", "s1.", "s1.px", "s1.r5", "s1.r5.x", "p12", "s2.p1"] {
            assert!(Batch::parse(bad, Order::Recent).is_err(), "{bad}");
        }
        assert!(Batch::parse("s1.p5", Order::Rank).is_err());
    }

    #[test]
    fn rank_prefers_more_occurrences_and_shorter_events() {
        let stats = |frequencies: Vec<u8>, length| TermStats { frequencies, length };
        assert!(rank(&stats(vec![2], 10)) > rank(&stats(vec![1], 10)));
        assert!(rank(&stats(vec![1], 5)) > rank(&stats(vec![1], 50)));
    }

    #[test]
    fn keys_name_event_types() {
        let all = searched_types(None).unwrap();
        assert_eq!(all.len(), 3);
        let body = searched_types(Some(&["content.body".to_owned()])).unwrap();
        assert_eq!(body.into_iter().collect::<Vec<_>>(), ["m.room.message"]);
        assert!(searched_types(Some(&["content.nope".to_owned()])).is_err());
    }
}
