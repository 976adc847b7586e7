//! One application service's registration: read from the YAML file a bridge writes,
//! checked, and with its namespaces compiled for matching.

use std::path::Path;

use regex::Regex;
use ruma::{RoomAliasId, RoomId, ServerName, UserId, api::appservice::Registration};
use serde_json::Value as JsonValue;

/// A registration that passed [`Registered::from_json`]'s checks.
#[derive(Debug)]
pub struct Registered {
    /// The registration as written, kept for `myelin appservice list` and for storing.
    pub registration: Registration,
    /// The service's own user, `@<sender_localpart>:<server>`.
    pub sender: ruma::OwnedUserId,
    /// Wants typing, receipts and presence (MSC2409, under either of its names).
    pub receive_ephemeral: bool,
    users: Namespaces,
    aliases: Namespaces,
    rooms: Namespaces,
}

/// A kind of namespace, compiled.
#[derive(Debug, Default)]
struct Namespaces {
    all: Vec<Regex>,
    exclusive: Vec<Regex>,
}

impl Namespaces {
    fn compile(list: &[ruma::api::appservice::Namespace], kind: &str) -> Result<Self, String> {
        let mut compiled = Self::default();
        for namespace in list {
            // Anchored: a namespace names whole ids, as Synapse matches them.
            let regex = Regex::new(&format!("^(?:{})$", namespace.regex)).map_err(|e| {
                format!("the {kind} namespace {:?} is not a regular expression: {e}", namespace.regex)
            })?;
            if namespace.exclusive {
                compiled.exclusive.push(regex.clone());
            }
            compiled.all.push(regex);
        }
        Ok(compiled)
    }

    fn matches(&self, id: &str) -> bool {
        self.all.iter().any(|regex| regex.is_match(id))
    }

    fn exclusively(&self, id: &str) -> bool {
        self.exclusive.iter().any(|regex| regex.is_match(id))
    }
}

impl Registered {
    /// Reads and checks a registration file (YAML, which includes JSON).
    pub fn from_file(path: &Path, server_name: &ServerName) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_yaml(&text, server_name).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_yaml(text: &str, server_name: &ServerName) -> Result<Self, String> {
        let json: JsonValue = yaml_serde::from_str(text).map_err(|e| format!("not a registration: {e}"))?;
        Self::from_json(json, server_name)
    }

    pub fn from_json(json: JsonValue, server_name: &ServerName) -> Result<Self, String> {
        let ephemeral_flag = |name: &str| json.get(name).and_then(JsonValue::as_bool).unwrap_or(false);
        let receive_ephemeral =
            ephemeral_flag("receive_ephemeral") || ephemeral_flag("de.sorunome.msc2409.push_ephemeral");
        let registration: Registration =
            serde_json::from_value(json).map_err(|e| format!("not a registration: {e}"))?;
        if registration.id.is_empty() {
            return Err("`id` is empty".to_owned());
        }
        for (name, token) in [("as_token", &registration.as_token), ("hs_token", &registration.hs_token)] {
            if token.len() < 16 {
                return Err(format!("`{name}` is too short to be secret (16 characters at least)"));
            }
        }
        if registration.as_token == registration.hs_token {
            return Err("`as_token` and `hs_token` must differ".to_owned());
        }
        if let Some(url) = &registration.url {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("`url` {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("`url` {url:?} is not http or https"));
            }
        }
        let localpart = &registration.sender_localpart;
        // The spec's (historical) user id grammar: printable ASCII without the colon.
        if localpart.is_empty() || !localpart.chars().all(|c| c.is_ascii_graphic() && c != ':') {
            return Err(format!("`sender_localpart` {localpart:?} is not a valid user id localpart"));
        }
        let sender = UserId::parse(format!("@{localpart}:{server_name}"))
            .map_err(|e| format!("`sender_localpart` {:?}: {e}", registration.sender_localpart))?;
        let namespaces = &registration.namespaces;
        Ok(Self {
            users: Namespaces::compile(&namespaces.users, "users")?,
            aliases: Namespaces::compile(&namespaces.aliases, "aliases")?,
            rooms: Namespaces::compile(&namespaces.rooms, "rooms")?,
            sender,
            receive_ephemeral,
            registration,
        })
    }

    pub fn id(&self) -> &str {
        &self.registration.id
    }

    /// Where the service listens; `None` for a service that only acts and never receives.
    pub fn url(&self) -> Option<&str> {
        self.registration.url.as_deref().filter(|url| !url.is_empty())
    }

    /// Whether the service may act as `user`: its own user, or one in its user namespaces.
    pub fn owns_user(&self, user: &UserId) -> bool {
        user == self.sender || self.users.matches(user.as_str())
    }

    /// Whether `user` is reserved for this service (nobody else may register it).
    pub fn claims_user_exclusively(&self, user: &UserId) -> bool {
        user == self.sender || self.users.exclusively(user.as_str())
    }

    pub fn owns_alias(&self, alias: &RoomAliasId) -> bool {
        self.aliases.matches(alias.as_str())
    }

    pub fn claims_alias_exclusively(&self, alias: &RoomAliasId) -> bool {
        self.aliases.exclusively(alias.as_str())
    }

    pub fn owns_room(&self, room: &RoomId) -> bool {
        self.rooms.matches(room.as_str())
    }

    /// Whether the service has alias namespaces, which makes a room's aliases worth reading.
    pub fn has_alias_namespaces(&self) -> bool {
        !self.aliases.all.is_empty()
    }

    /// Whether requests it makes for its users count against the per-user limits. The
    /// service's own user never does.
    pub fn rate_limited(&self, user: &UserId) -> bool {
        user != self.sender && self.registration.rate_limited.unwrap_or(true)
    }

    /// The registration as JSON, for storing and listing.
    pub fn to_json(&self) -> JsonValue {
        let mut json = serde_json::to_value(&self.registration).expect("registrations serialise");
        if self.receive_ephemeral {
            json["receive_ephemeral"] = true.into();
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRC: &str = r#"
id: irc
url: http://127.0.0.1:9000
as_token: as-token-0123456789abcdef
hs_token: hs-token-0123456789abcdef
sender_localpart: ircbot
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
namespaces:
  users:
    - exclusive: true
      regex: '@irc_.*:example\.org'
  aliases:
    - exclusive: false
      regex: '#irc_.*'
  rooms: []
"#;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").unwrap()
    }

    #[test]
    fn a_bridge_registration_reads_and_matches_whole_ids() {
        let irc = Registered::from_yaml(IRC, server()).unwrap();
        assert_eq!(irc.id(), "irc");
        assert!(irc.receive_ephemeral);
        let user = |id: &str| UserId::parse(id).unwrap();
        assert!(irc.claims_user_exclusively(&user("@irc_alice:example.org")));
        assert!(irc.claims_user_exclusively(&user("@ircbot:example.org")), "its own user");
        assert!(!irc.owns_user(&user("@xirc_alice:example.org")), "anchored at the start");
        assert!(!irc.owns_user(&user("@irc_alice:example.org.evil")), "anchored at the end");
        let alias = RoomAliasId::parse("#irc_chan:example.org").unwrap();
        assert!(irc.owns_alias(&alias) && !irc.claims_alias_exclusively(&alias));
        assert!(!irc.rate_limited(&user("@irc_alice:example.org")));
    }

    #[test]
    fn bad_registrations_say_what_is_wrong() {
        let broken = |from: &str, to: &str| {
            Registered::from_yaml(&IRC.replace(from, to), server()).map(|_| ()).unwrap_err()
        };
        assert!(broken("as-token-0123456789abcdef", "short").contains("as_token"));
        assert!(broken("'@irc_.*:example\\.org'", "'@irc_(:example'").contains("regular expression"));
        assert!(broken("http://127.0.0.1:9000", "ftp://x").contains("url"));
        assert!(broken("sender_localpart: ircbot", "sender_localpart: 'a b'").contains("sender_localpart"));
        assert!(broken("hs-token-0123456789abcdef", "as-token-0123456789abcdef").contains("differ"));
        assert!(Registered::from_yaml("- not\n- a map", server()).is_err());
    }
}
