//! Unread counts: per room and thread for `/sync`, and the badge a phone shows.

use std::{collections::HashMap, sync::Mutex};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState};

use crate::{
    error::Result,
    storage::{ReadMarks, Store, ThreadedCounts},
};

/// Counts notifications after read receipts, continuing from what it counted last.
#[derive(Default)]
pub struct UnreadCounter {
    /// The unread counts each user's last count found per room, to continue from.
    tallies: Mutex<HashMap<(OwnedUserId, OwnedRoomId), Tally>>,
}

/// Unread counts of one user in one room: the notifying events up to `upto` that `marks`
/// leave unread.
#[derive(Debug, Clone)]
struct Tally {
    marks: ReadMarks,
    upto: u64,
    counts: ThreadedCounts,
}

impl UnreadCounter {
    /// The user's unread counts in the room by thread, counting events at or before `upto`
    /// (the position a sync answers up to, so the counts match the timeline it sends) and
    /// after `joined_at`, the position of the user's join: without a read receipt, what came
    /// before the join (such as the invite that notified them) is not unread in the joined
    /// room.
    pub fn unread_counts(
        &self,
        store: &Store,
        user: &UserId,
        room: &RoomId,
        joined_at: u64,
        upto: u64,
    ) -> Result<ThreadedCounts> {
        let mut marks = store.read_marks(user, room)?;
        marks.unthreaded = marks.unthreaded.max(joined_at);
        let key = (user.to_owned(), room.to_owned());
        let cached = self.tallies.lock().expect("never poisoned").get(&key).cloned();
        // Each count covers only what came since the last one, unless a receipt moved.
        // Events of threads without a receipt of their own are unread from the unthreaded
        // mark on, so that is where a full count starts.
        let counts = match cached {
            Some(mut tally) if tally.marks == marks && tally.upto <= upto => {
                let new = store.count_notifications(user, room, &marks, tally.upto, upto)?;
                tally.counts.add(&new);
                tally.counts
            }
            _ => store.count_notifications(user, room, &marks, marks.unthreaded, upto)?,
        };
        self.tallies
            .lock()
            .expect("never poisoned")
            .insert(key, Tally { marks, upto, counts: counts.clone() });
        Ok(counts)
    }

    /// The number on the app icon: rooms with unread notifications (threads included) plus
    /// pending invites. Rooms, not messages, as Synapse counts by default: ten messages in
    /// one chat are one thing to look at.
    pub fn badge(&self, store: &Store, user: &UserId) -> Result<u64> {
        let upto = store.visible_position();
        let mut badge = 0;
        for (room, entry) in store.user_rooms(user)? {
            badge += match entry.membership {
                MembershipState::Invite => 1,
                MembershipState::Join => {
                    let counts = self.unread_counts(store, user, &room, entry.position, upto)?;
                    u64::from(counts.total().notifications > 0)
                }
                _ => 0,
            };
        }
        Ok(badge)
    }
}
