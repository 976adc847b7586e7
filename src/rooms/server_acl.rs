//! Server access control lists (`m.room.server_acl`): which servers may take part in a
//! room over federation. The matching (globs, IP literals, ports ignored) is ruma's; the
//! federation API asks here before it lets a server act in a room.

use ruma::{RoomId, ServerName, events::StateEventType, events::room::server_acl::RoomServerAclEventContent};
use serde_json::Value as JsonValue;

use super::{Result, Rooms};

impl Rooms {
    /// Whether the room's current server ACL lets `server` take part. A room without an
    /// ACL, or one this server does not have (so knows no ACL of), lets everyone.
    pub fn server_allowed(&self, room_id: &RoomId, server: &ServerName) -> Result<bool> {
        let Some(room) = self.store.room(room_id)? else { return Ok(true) };
        let Some(acl) = self.current_state_pdu(&room, &StateEventType::RoomServerAcl, "") else {
            return Ok(true);
        };
        Ok(acl_of(&acl.content_json()).is_allowed(server))
    }
}

/// The ACL an event's content describes, read the lenient way other servers read it, so
/// that all of a room's servers agree: a malformed `allow_ip_literals` counts as `true`, a
/// malformed list as empty (so a malformed `allow` denies everyone), and entries that are
/// not strings are skipped.
fn acl_of(content: &JsonValue) -> RoomServerAclEventContent {
    let globs = |key: &str| -> Vec<String> {
        content[key]
            .as_array()
            .map(|entries| entries.iter().filter_map(JsonValue::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let allow_ip_literals = content["allow_ip_literals"].as_bool().unwrap_or(true);
    RoomServerAclEventContent::new(allow_ip_literals, globs("allow"), globs("deny"))
}

#[cfg(test)]
mod tests {
    use ruma::server_name;
    use serde_json::json;

    use super::acl_of;

    #[test]
    fn deny_wins_over_allow_and_ports_are_ignored() {
        let acl = acl_of(&json!({"allow": ["*"], "deny": ["evil.example", "*.bad.example"]}));
        assert!(acl.is_allowed(server_name!("good.example")));
        assert!(acl.is_allowed(server_name!("good.example:8448")));
        assert!(!acl.is_allowed(server_name!("evil.example:8448")));
        assert!(!acl.is_allowed(server_name!("a.bad.example")));
        assert!(acl.is_allowed(server_name!("bad.example")));
    }

    #[test]
    fn only_listed_servers_are_allowed_and_ip_literals_can_be_refused() {
        let acl = acl_of(&json!({"allow": ["*.example.org", "matrix.?rg"], "allow_ip_literals": false}));
        assert!(acl.is_allowed(server_name!("chat.example.org")));
        assert!(acl.is_allowed(server_name!("matrix.org")));
        assert!(!acl.is_allowed(server_name!("example.com")));
        let ips = acl_of(&json!({"allow": ["*"], "allow_ip_literals": false}));
        assert!(!ips.is_allowed(server_name!("127.0.0.1:8448")));
        assert!(!ips.is_allowed(server_name!("[::1]:8448")));
        assert!(acl_of(&json!({"allow": ["*"]})).is_allowed(server_name!("127.0.0.1:8448")));
    }

    #[test]
    fn malformed_content_is_read_leniently() {
        // No (or a malformed) allow list allows nobody.
        assert!(!acl_of(&json!({})).is_allowed(server_name!("example.org")));
        assert!(!acl_of(&json!({"allow": "*"})).is_allowed(server_name!("example.org")));
        // A malformed deny list denies nobody; non-string entries are skipped.
        let acl = acl_of(&json!({"allow": ["*", 3], "deny": "example.org", "allow_ip_literals": "no"}));
        assert!(acl.is_allowed(server_name!("example.org")));
        assert!(acl.is_allowed(server_name!("10.0.0.1")));
    }
}
