//! A room's threads, for `GET /threads`: their roots, the most recently replied to first.

use ruma::{RoomId, UserId};

use super::{Event, Events, Result, Rooms, relations::THREAD};
use crate::storage::Relation;

impl Rooms {
    /// A page of the room's thread roots that `viewer` may see (with `participated_only`,
    /// only threads they started or replied in), most recently active first, starting at the
    /// `from` token; with the token of the next page.
    pub fn threads(
        &self,
        room_id: &RoomId,
        viewer: &UserId,
        participated_only: bool,
        from: Option<u64>,
        limit: usize,
    ) -> Result<(Events, Option<u64>)> {
        let mut reader = self.reader(room_id, viewer)?;
        let room = self.room(room_id)?;
        let mut roots = Vec::new();
        // A token is the position of the next page's first thread's latest reply, plus one.
        for entry in self.store.threads(&room, from.unwrap_or(u64::MAX)) {
            let (latest_reply, root_id) = entry?;
            if roots.len() == limit {
                return Ok((roots, Some(latest_reply + 1)));
            }
            let Some(root) = self.event(&root_id)? else { continue };
            if !reader.can_see(&root)? {
                continue;
            }
            if participated_only {
                let thread = self.store.relations(&root_id, None, true)?;
                let replies: Vec<&Relation> = thread.iter().filter(|r| r.rel_type == THREAD).collect();
                if !self.took_part_in_thread(&root, &replies, viewer)? {
                    continue;
                }
            }
            roots.push(root);
        }
        Ok((roots, None))
    }

    /// Whether `user` started the thread rooted at `root` or replied in it (`replies`).
    pub(super) fn took_part_in_thread(
        &self,
        root: &Event,
        replies: &[&Relation],
        user: &UserId,
    ) -> Result<bool> {
        if root.pdu.sender == user {
            return Ok(true);
        }
        for reply in replies {
            if self.relation_sender(reply)?.as_deref() == Some(user) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
