//! Filters (`RoomEventFilter`, `Filter`): which events a client asked for.

use ruma::{
    RoomId,
    api::client::filter::{EventFormat, Filter, FilterDefinition, RoomEventFilter},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use crate::pdu::Pdu;

/// Event type patterns may end in `*`, matching any suffix.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Whether an event type passes `types` (when given) and `not_types`, which wins.
fn type_allowed(types: Option<&[String]>, not_types: &[String], kind: &str) -> bool {
    !not_types.iter().any(|p| type_matches(p, kind))
        && types.is_none_or(|t| t.iter().any(|p| type_matches(p, kind)))
}

/// Whether the filter lets through events of `kind` (for events without a sender to check,
/// such as ephemeral events and account data).
pub fn allows_type(filter: &RoomEventFilter, kind: &str) -> bool {
    type_allowed(filter.types.as_deref(), &filter.not_types, kind)
}

/// Whether a global filter (`account_data`, `presence`) lets through events of `kind`.
pub fn global_allows_type(filter: &Filter, kind: &str) -> bool {
    type_allowed(filter.types.as_deref(), &filter.not_types, kind)
}

/// Whether the filter's `rooms` and `not_rooms` (which wins) let the room through.
pub fn allows_room(filter: &RoomEventFilter, room: &RoomId) -> bool {
    !filter.not_rooms.iter().any(|r| r == room)
        && filter.rooms.as_ref().is_none_or(|only| only.iter().any(|r| r == room))
}

/// Whether `pdu` passes the filter's room, type and sender rules.
pub fn matches(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    if !allows_room(filter, &pdu.room_id) || !allows_type(filter, &pdu.kind.to_string()) {
        return false;
    }
    if filter.not_senders.contains(&pdu.sender) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.contains(&pdu.sender)
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn wildcards_match_prefixes() {
        assert!(type_matches("m.room.*", "m.room.message"));
        assert!(type_matches("*", "anything"));
        assert!(!type_matches("m.room.message", "m.room.messages"));
        assert!(type_matches("m.room.message", "m.room.message"));
    }
}

/// Applies a filter's `event_format` and `event_fields` to one event. `client` is the event
/// in client format, `pdu` as it travels over federation.
pub fn shape(
    definition: &FilterDefinition,
    client: Box<RawJsonValue>,
    pdu: &RawJsonValue,
) -> Box<RawJsonValue> {
    let event = match definition.event_format {
        EventFormat::Federation => pdu,
        _ => &*client,
    };
    match &definition.event_fields {
        Some(fields) => {
            let event: JsonValue = serde_json::from_str(event.get()).expect("events are valid JSON");
            serde_json::value::to_raw_value(&keep_fields(&event, fields)).expect("JSON values serialise")
        }
        None if definition.event_format == EventFormat::Federation => pdu.to_owned(),
        None => client,
    }
}

/// Keeps only the listed fields. A field is a dotted path; `\.` is a literal dot, so
/// `content.m\.relates_to` names the `m.relates_to` key inside `content`.
fn keep_fields(event: &JsonValue, fields: &[String]) -> JsonValue {
    let mut kept = JsonValue::Object(Default::default());
    for field in fields {
        let path = split_field(field);
        let Some(value) = path.iter().try_fold(event, |node, key| node.get(key.as_str())) else { continue };
        let mut target = &mut kept;
        for key in &path[..path.len() - 1] {
            target = target
                .as_object_mut()
                .expect("only objects are created on the way")
                .entry(key.clone())
                .or_insert_with(|| JsonValue::Object(Default::default()));
            if !target.is_object() {
                break;
            }
        }
        if let Some(object) = target.as_object_mut() {
            object.insert(path[path.len() - 1].clone(), value.clone());
        }
    }
    kept
}

fn split_field(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    parts.last_mut().expect("never empty").push(next);
                }
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

#[cfg(test)]
mod shape_tests {
    use serde_json::json;

    use super::keep_fields;

    #[test]
    fn event_fields_keep_only_the_named_paths() {
        let event = json!({"type": "m.room.message", "sender": "@a:x", "content": {"body": "hi", "m.relates_to": {"rel_type": "x"}, "msgtype": "m.text"}});
        let kept = keep_fields(
            &event,
            &[
                "type".to_owned(),
                "content.body".to_owned(),
                "content.m\\.relates_to".to_owned(),
                "missing.field".to_owned(),
            ],
        );
        assert_eq!(
            kept,
            json!({"type": "m.room.message", "content": {"body": "hi", "m.relates_to": {"rel_type": "x"}}})
        );
    }
}
