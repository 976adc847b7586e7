//! Device-list changes: whose devices a user's clients should fetch again (a peer changed
//! keys, or newly shares a room with them), and whose they can forget (no room shared any
//! more), between two stream positions.

use std::{cell::OnceCell, collections::BTreeSet};

use ruma::{OwnedUserId, UserId, events::room::member::MembershipState};

use super::E2ee;
use crate::error::Result;

/// Users whose devices a client should re-fetch, and users it no longer shares a room with.
#[derive(Default, Debug)]
pub struct DeviceListChanges {
    pub changed: BTreeSet<OwnedUserId>,
    pub left: BTreeSet<OwnedUserId>,
}

impl E2ee {
    /// Whose device lists changed for `user` between two positions: peers whose keys changed,
    /// users newly sharing a room, and users no longer sharing any.
    pub fn device_list_changes(&self, user: &UserId, after: u64, upto: u64) -> Result<DeviceListChanges> {
        // Every sync asks, and usually nothing changed: each step below is skipped unless
        // something it looks for happened after `after`.
        let peers = OnceCell::new();
        let peers = || -> Result<&BTreeSet<OwnedUserId>> {
            if let Some(peers) = peers.get() {
                return Ok(peers);
            }
            let found = self.room_peers(user)?;
            Ok(peers.get_or_init(|| found))
        };
        let in_range = |position: u64| position > after && position <= upto;
        let mut changes = DeviceListChanges::default();
        if self.store.latest_key_change() > after {
            for peer in peers()? {
                if in_range(self.store.last_key_change(peer)?) {
                    changes.changed.insert(peer.clone());
                }
            }
        }
        for (room, entry) in self.store.user_rooms(user)? {
            let i_joined_recently = entry.membership == MembershipState::Join && in_range(entry.position);
            let i_left_recently = matches!(entry.membership, MembershipState::Leave | MembershipState::Ban)
                && in_range(entry.position);
            let memberships_unchanged = self
                .store
                .room(&room)?
                .is_some_and(|record| (1..=after).contains(&record.last_membership_change));
            if !in_range(entry.position) && memberships_unchanged {
                continue;
            }
            for (member, membership) in self.store.membership_entries(&room)? {
                if member == user {
                    continue;
                }
                if entry.membership == MembershipState::Join
                    && membership.membership == MembershipState::Join
                    && (i_joined_recently || in_range(membership.position))
                {
                    changes.changed.insert(member.clone());
                }
                // Only someone who was joined can leave; an invite never shared keys.
                let member_left =
                    matches!(membership.membership, MembershipState::Leave | MembershipState::Ban);
                let gone = i_left_recently || (member_left && in_range(membership.position));
                if gone && !peers()?.contains(&member) {
                    changes.left.insert(member);
                }
            }
        }
        Ok(changes)
    }

    /// `/keys/changes`: like the sync section, from a sync token. The spec makes `to` a
    /// hint: a change after `from` is reported even when a later change moved the user's
    /// last-change position past `to` (only the latest position is kept), so the range
    /// runs to the current position.
    pub fn key_changes(&self, user: &UserId, from: u64, to: u64) -> Result<DeviceListChanges> {
        self.device_list_changes(user, from, to.max(self.store.visible_position()))
    }
}
