//! The user directory: who a user may find by name (spec: "User directory").

use std::collections::BTreeSet;

use ruma::{OwnedUserId, UserId, events::room::member::MembershipState};
use serde_json::Value as JsonValue;

use super::{Result, Rooms};

/// A user found in the directory.
pub struct FoundUser {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

impl Rooms {
    /// Users whose id or display name contains `term` (case-insensitively), among those the
    /// searcher may find: those sharing a room with them, and members of rooms open to
    /// everyone (public join rule, world-readable history, or published). Also says
    /// whether more than `limit` matched.
    pub fn search_users(
        &self,
        searcher: &UserId,
        term: &str,
        limit: usize,
    ) -> Result<(Vec<FoundUser>, bool)> {
        let term = term.to_lowercase();
        let mut found = Vec::new();
        for user_id in self.visible_users(searcher)? {
            let profile = self.accounts.profile(&user_id).unwrap_or_default();
            let field = |name: &str| profile.get(name).and_then(JsonValue::as_str).map(str::to_owned);
            let display_name = field("displayname");
            let matches = user_id.as_str().to_lowercase().contains(&term)
                || display_name.as_deref().is_some_and(|n| n.to_lowercase().contains(&term));
            if !matches {
                continue;
            }
            if found.len() == limit {
                return Ok((found, true));
            }
            found.push(FoundUser { user_id, display_name, avatar_url: field("avatar_url") });
        }
        Ok((found, false))
    }

    fn visible_users(&self, searcher: &UserId) -> Result<BTreeSet<OwnedUserId>> {
        let mut rooms: BTreeSet<_> = self.joined_rooms(searcher)?.into_iter().collect();
        rooms.extend(self.rooms_open_to_everyone()?);
        let mut users = BTreeSet::new();
        for room in rooms {
            users.extend(
                self.members(&room)?.into_iter().filter(|(_, m)| *m == MembershipState::Join).map(|(u, _)| u),
            );
        }
        Ok(users)
    }
}
