//! The checks a PDU from another server passes before any domain looks at it, from the
//! spec's "checks performed on receipt of a PDU": its format
//! (`ruma::state_res::check_pdu_format`), the signatures of every server that must have
//! signed it (`ruma::signatures::verify_event`, with keys from [`super::keys`]) and its
//! content hash (on a mismatch the redacted form is kept, as the spec requires). The auth
//! rules come after, in `rooms`.

use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId,
    room_version_rules::RoomVersionRules,
    signatures::{Verified, reference_hash, required_server_signatures_to_verify_event, verify_event},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::Federation;

/// A PDU that passed the signature checks, with its id.
pub struct CheckedPdu {
    pub event_id: OwnedEventId,
    pub json: JsonValue,
}

/// The event id of a PDU (the reference hash, for every room version we support).
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId, String> {
    let hash = reference_hash(object, rules).map_err(|e| format!("cannot hash the event: {e}"))?;
    EventId::parse(format!("${hash}")).map_err(|e| e.to_string())
}

/// The checks that need no keys: the PDU is canonical JSON in the room version's event
/// format; answers the object and its event id.
pub fn check_format(
    raw: &RawJsonValue,
    rules: &RoomVersionRules,
) -> Result<(CanonicalJsonObject, OwnedEventId), String> {
    let object: CanonicalJsonObject =
        serde_json::from_str(raw.get()).map_err(|e| format!("not canonical JSON: {e}"))?;
    ruma::state_res::check_pdu_format(&object, &rules.event_format)
        .map_err(|e| format!("malformed PDU: {e}"))?;
    let event_id = event_id_of(&object, rules)?;
    Ok((object, event_id))
}

impl Federation {
    /// Checks a PDU's format, signatures and content hash; the error says why it failed.
    pub async fn verify_pdu(
        &self,
        raw: &RawJsonValue,
        rules: &RoomVersionRules,
    ) -> Result<CheckedPdu, String> {
        let (object, event_id) = check_format(raw, rules)?;
        let servers = required_server_signatures_to_verify_event(&object, &rules.signatures)
            .map_err(|e| format!("{event_id}: {e}"))?;
        let keys = self.keys.key_map(&self.client, &servers).await;
        let object = match verify_event(&keys, &object, rules) {
            Ok(Verified::All) => object,
            Ok(Verified::Signatures) => {
                tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
                ruma::canonical_json::redact(object, &rules.redaction, None).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(format!("{event_id}: bad signature: {e}")),
        };
        let json = serde_json::to_value(&object).map_err(|e| e.to_string())?;
        Ok(CheckedPdu { event_id, json })
    }

    /// The PDUs among `raw` whose signatures check out; the others are logged and dropped.
    pub async fn verify_all(&self, raw: &[Box<RawJsonValue>], rules: &RoomVersionRules) -> Vec<CheckedPdu> {
        let mut checked = Vec::with_capacity(raw.len());
        for pdu in raw {
            match self.verify_pdu(pdu, rules).await {
                Ok(pdu) => checked.push(pdu),
                Err(why) => tracing::warn!(%why, "dropped an event another server sent"),
            }
        }
        checked
    }
}
