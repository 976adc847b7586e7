//! Who is in a room, under which display names and with which power levels, kept in memory
//! per room and rebuilt only when the room's state changes (a new state snapshot): every
//! event needs it, to wake members' syncs, to evaluate their push rules and to pick the
//! servers to send to.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{
    OwnedRoomId, OwnedUserId, UserId,
    events::room::{member::MembershipState, power_levels::RoomPowerLevels},
};

use super::{Result, Rooms};
use crate::storage::RoomRecord;

/// A room's members and power levels at one state snapshot.
pub struct MemberView {
    /// Every user with a membership, with it.
    pub members: Vec<(OwnedUserId, MembershipState)>,
    /// Display names set in members' `m.room.member` events.
    display_names: HashMap<OwnedUserId, String>,
    pub power_levels: RoomPowerLevels,
}

impl MemberView {
    pub fn joined(&self) -> impl Iterator<Item = &OwnedUserId> {
        self.members.iter().filter(|(_, m)| *m == MembershipState::Join).map(|(user, _)| user)
    }

    /// The name push rules match against: the member's display name, else the localpart.
    pub fn display_name(&self, user: &UserId) -> String {
        self.display_names.get(user).cloned().unwrap_or_else(|| user.localpart().to_owned())
    }
}

/// The cache: room → (snapshot the view was built at, view).
#[derive(Default)]
pub struct MemberViews(Mutex<HashMap<OwnedRoomId, (u64, Arc<MemberView>)>>);

impl MemberViews {
    /// Drops a room that no longer exists (a purged one).
    pub fn forget(&self, room_id: &ruma::RoomId) {
        self.0.lock().expect("never poisoned").remove(room_id);
    }
}

impl Rooms {
    /// The members of `room` as its record says the state is.
    pub(super) fn member_view(&self, room: &RoomRecord) -> Result<Arc<MemberView>> {
        if let Some(snapshot) = room.snapshot
            && let Some((at, view)) = self.member_views.0.lock().expect("never poisoned").get(&room.room_id)
            && *at == snapshot
        {
            return Ok(view.clone());
        }
        let members = self.store.memberships(&room.room_id)?;
        let mut display_names = HashMap::new();
        for (user, _) in &members {
            if let Some(id) = self.store.current_state_event(room, "m.room.member", user.as_str())?
                && let Some(pdu) = self.pdu(&id)?
                && let Some(name) = pdu.content_json()["displayname"].as_str()
            {
                display_names.insert(user.clone(), name.to_owned());
            }
        }
        let power_levels = self.power_levels_in(room)?;
        let view = Arc::new(MemberView { members, display_names, power_levels });
        if let Some(snapshot) = room.snapshot {
            self.member_views
                .0
                .lock()
                .expect("never poisoned")
                .insert(room.room_id.clone(), (snapshot, view.clone()));
        }
        Ok(view)
    }
}
