//! PDUs other servers send in their transactions: checked by the federation transport
//! ([`crate::federation::Federation::verify_pdu`]), their gaps filled with
//! `/get_missing_events` from the sender, then added with [`Rooms::add_event`]; and the
//! joins, knocks and leaves they send for their users (`send_join`, `send_knock`,
//! `send_leave`).

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, RoomId, ServerName, UserId,
    api::federation::event::get_missing_events, events::room::member::MembershipState,
    room_version_rules::RoomVersionRules,
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{
    Added, Error, Result, Rooms, remote_membership::raw_json, restricted::AUTHORISING_USER, rules_of,
};
use crate::federation::{CheckedPdu, event_id_of};

/// How many missing events to ask for at once.
const MISSING_EVENTS_LIMIT: u32 = 20;

impl Rooms {
    /// Checks and stores one PDU of a transaction from `origin`; returns its id and the
    /// outcome the transaction's answer reports. `None` when it cannot even be identified
    /// (not JSON), or is for a room we do not have and does not end a local user's invite
    /// or knock there. A PDU for a room whose server ACL denies `origin` is refused unread
    /// (spec: ACLs apply to each PDU of a transaction).
    pub async fn receive_pdu(
        &self,
        origin: &ServerName,
        raw: &RawJsonValue,
    ) -> Option<(OwnedEventId, std::result::Result<(), String>)> {
        #[derive(serde::Deserialize)]
        struct RoomOf {
            room_id: OwnedRoomId,
        }
        let room_id = serde_json::from_str::<RoomOf>(raw.get()).ok()?.room_id;
        let Ok(room) = self.room(&room_id) else {
            return self.receive_remote_membership_end(origin, &room_id, raw).await;
        };
        let rules = room.version.rules()?;
        let refuse = |why: String| {
            tracing::warn!(%origin, %why, "refused a PDU");
            let object: ruma::CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
            Some((event_id_of(&object, &rules).ok()?, Err(why)))
        };
        match self.server_allowed(&room_id, origin) {
            Ok(true) => {}
            Ok(false) => return refuse(format!("{origin} is denied by the server ACL of {room_id}")),
            Err(e) => return refuse(e.to_string()),
        }
        let checked = match self.federation.verify_pdu(raw, &rules).await {
            Ok(checked) => checked,
            Err(why) => return refuse(why),
        };
        self.fetch_missing_prev_events(origin, &room_id, &rules, &checked).await;
        let outcome = match self.add_event(&room_id, &checked.event_id, checked.json).await {
            Ok(Added::Stored | Added::AlreadyKnown | Added::SoftFailed) => Ok(()),
            Err(e) => {
                tracing::warn!(%origin, event_id = %checked.event_id, error = %e, "refused a PDU");
                Err(e.to_string())
            }
        };
        Some((checked.event_id, outcome))
    }

    /// Fills a gap before `pdu` with `/get_missing_events` from `origin`: the events between
    /// our forward extremities and it, stored oldest first.
    async fn fetch_missing_prev_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdu: &CheckedPdu,
    ) {
        let prevs: Vec<OwnedEventId> =
            serde_json::from_value(pdu.json["prev_events"].clone()).unwrap_or_default();
        if prevs.iter().all(|id| self.pdu(id).ok().flatten().is_some()) {
            return;
        }
        let Ok(room) = self.room(room_id) else { return };
        let mut request = get_missing_events::v1::Request::new(
            room_id.to_owned(),
            room.extremities.clone(),
            vec![pdu.event_id.clone()],
        );
        request.limit = MISSING_EVENTS_LIMIT.into();
        let response = match self.federation.client.send(origin, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(%origin, %room_id, error = %e, "cannot fetch missing events");
                return;
            }
        };
        let mut events = self.federation.verify_all(&response.events, rules).await;
        events.sort_by_key(|e| e.json["depth"].as_u64().unwrap_or_default());
        for event in events {
            if let Err(e) = self.add_event(room_id, &event.event_id, event.json).await {
                tracing::info!(%origin, event_id = %event.event_id, error = %e, "refused a missing event");
            }
        }
    }
}

impl Rooms {
    /// Checks and stores a join, knock or leave another server signed for one of its users
    /// (`send_join`, `send_knock`, `send_leave`): it must be that user's own `membership`
    /// event, and the event the request names. A restricted join that names one of our users
    /// as vouching for it gets our signature first. Returns the event as stored.
    pub async fn receive_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawJsonValue,
        membership: MembershipState,
    ) -> Result<JsonValue> {
        let room = self.room(room_id)?;
        let rules = rules_of(&room)?;
        let mut json: JsonValue =
            serde_json::from_str(pdu.get()).map_err(|e| Error::InvalidParam(e.to_string()))?;
        let sender = json["sender"].as_str().unwrap_or_default();
        let is_expected = json["type"] == "m.room.member"
            && json["content"]["membership"] == membership.as_str()
            && json["state_key"] == sender
            && json["room_id"] == room_id.as_str()
            && UserId::parse(sender).is_ok_and(|user| user.server_name() == origin);
        if !is_expected {
            return Err(Error::InvalidParam(format!(
                "Not a {membership} of a user of the calling server in {room_id}"
            )));
        }
        if membership == MembershipState::Join
            && rules.authorization.restricted_join_rule
            && json["content"][AUTHORISING_USER].is_string()
        {
            self.check_remote_authorised_join(&room, &json)?;
            json = self.co_sign(json, &rules)?;
        }
        let checked =
            self.federation.verify_pdu(&raw_json(&json)?, &rules).await.map_err(Error::InvalidParam)?;
        if checked.event_id != event_id {
            return Err(Error::InvalidParam(format!("The event is not {event_id}")));
        }
        self.add_event(room_id, &checked.event_id, checked.json.clone()).await?;
        Ok(checked.json)
    }
}
