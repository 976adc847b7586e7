//! The sets of users that events notify, each stored once.
//!
//! Tree `notified_sets`: [`SetId`] → the set's user ids, sorted, as a JSON list.
//!
//! In a busy room nearly every event notifies the same members (everyone but its sender),
//! so an event's notification record names its recipients by set id instead of listing
//! them. Listed, they were 1.7 KB of the 2.4 KB written per message in a 50-member room,
//! and about half of the database's growth. A stored set never changes, so the cache above
//! the tree needs no invalidation.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
};

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use sha2::{Digest, Sha256};

use super::Tree;
use super::{Result, StorageError, decode, encode};

/// A set's id: the first 16 bytes of the SHA-256 of its sorted user ids, one per line.
/// Stored in records as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SetId([u8; 16]);

impl SetId {
    fn of(sorted: &[&UserId]) -> Self {
        let mut hasher = Sha256::new();
        for user in sorted {
            // User ids cannot contain a newline, so the joined form is unambiguous.
            hasher.update(user.as_bytes());
            hasher.update(b"\n");
        }
        let digest = hasher.finalize();
        Self(digest[..16].try_into().expect("SHA-256 is longer than 16 bytes"))
    }
}

impl Serialize for SetId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut hex = String::with_capacity(32);
        for byte in self.0 {
            hex.push_str(&format!("{byte:02x}"));
        }
        serializer.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for SetId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Hex;
        impl de::Visitor<'_> for Hex {
            type Value = SetId;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("32 hex digits")
            }

            fn visit_str<E: de::Error>(self, hex: &str) -> std::result::Result<SetId, E> {
                let invalid = || E::invalid_value(de::Unexpected::Str(hex), &self);
                if hex.len() != 32 {
                    return Err(invalid());
                }
                let mut id = [0u8; 16];
                for (byte, pair) in id.iter_mut().zip(hex.as_bytes().chunks(2)) {
                    let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
                    *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
                }
                Ok(SetId(id))
            }
        }
        deserializer.deserialize_str(Hex)
    }
}

/// Sets held in memory, by the number of user ids they hold together; past this the cache
/// starts over (a 50-member room's sets take about 3 KB each).
const CACHE_USERS: usize = 65_536;

pub struct NotifiedSets {
    tree: Tree,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    sets: HashMap<SetId, Arc<HashSet<OwnedUserId>>>,
    users: usize,
}

impl Cache {
    fn keep(&mut self, id: SetId, set: Arc<HashSet<OwnedUserId>>) {
        if self.users + set.len() > CACHE_USERS {
            self.sets.clear();
            self.users = 0;
        }
        self.users += set.len();
        self.sets.insert(id, set);
    }
}

impl NotifiedSets {
    pub fn new(tree: Tree) -> Self {
        Self { tree, cache: Mutex::default() }
    }

    /// Stores the set of `users` unless it is stored already, and returns its id. Not
    /// flushed here: the event record that refers to it is written after it and awaits the
    /// same group commit.
    pub fn put<'a>(&self, users: impl IntoIterator<Item = &'a OwnedUserId>) -> Result<SetId> {
        let mut sorted: Vec<&UserId> = users.into_iter().map(|user| &**user).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let id = SetId::of(&sorted);
        if self.cache.lock().expect("never poisoned").sets.contains_key(&id) {
            return Ok(id);
        }
        if !self.tree.contains_key(id.0)? {
            self.tree.insert(id.0, encode(&sorted))?;
        }
        let set = Arc::new(sorted.into_iter().map(ToOwned::to_owned).collect());
        self.cache.lock().expect("never poisoned").keep(id, set);
        Ok(id)
    }

    /// Whether the set `id` holds `user`.
    pub fn contains(&self, id: SetId, user: &UserId) -> Result<bool> {
        Ok(self.get(id)?.contains(user))
    }

    fn get(&self, id: SetId) -> Result<Arc<HashSet<OwnedUserId>>> {
        if let Some(set) = self.cache.lock().expect("never poisoned").sets.get(&id) {
            return Ok(set.clone());
        }
        let bytes = self
            .tree
            .get(id.0)?
            .ok_or_else(|| StorageError::Corrupt(format!("notified set {id:?} is missing")))?;
        let users: Vec<OwnedUserId> = decode("notified set", &bytes)?;
        let set = Arc::new(users.into_iter().collect::<HashSet<_>>());
        self.cache.lock().expect("never poisoned").keep(id, set.clone());
        Ok(set)
    }

    #[cfg(test)]
    fn forget_cached(&self) {
        *self.cache.lock().expect("never poisoned") = Cache::default();
    }
}

#[cfg(test)]
mod tests {
    use ruma::owned_user_id;

    use super::*;

    fn sets(name: &str) -> NotifiedSets {
        let db = sled::Config::new().path(crate::storage::scratch_dir(name)).open().unwrap();
        NotifiedSets::new(Tree::open(&db, "notified_sets", &Default::default()).unwrap())
    }

    #[test]
    fn a_set_is_stored_once_whatever_the_order_of_its_users() {
        let sets = sets("notified-sets-once");
        let (a, b) = (owned_user_id!("@a:x"), owned_user_id!("@b:x"));
        let first = sets.put([&a, &b]).unwrap();
        let again = sets.put([&b, &a, &b]).unwrap();
        assert_eq!(first, again);
        assert_eq!(sets.tree.len(), 1);
        assert_ne!(sets.put([&a]).unwrap(), first);
        assert_eq!(sets.tree.len(), 2);
    }

    #[test]
    fn membership_is_read_back_from_the_tree_when_not_cached() {
        let sets = sets("notified-sets-read");
        let (a, b, c) = (owned_user_id!("@a:x"), owned_user_id!("@b:x"), owned_user_id!("@c:x"));
        let id = sets.put([&a, &b]).unwrap();
        sets.forget_cached();
        assert!(sets.contains(id, &a).unwrap());
        assert!(sets.contains(id, &b).unwrap());
        assert!(!sets.contains(id, &c).unwrap());
    }

    #[test]
    fn an_unknown_set_is_corruption_not_an_empty_set() {
        let sets = sets("notified-sets-unknown");
        let error = sets.contains(SetId([7; 16]), &owned_user_id!("@a:x")).unwrap_err();
        assert!(matches!(error, StorageError::Corrupt(_)), "{error:?}");
    }

    #[test]
    fn ids_round_trip_as_hex() {
        let id = SetId::of(&[<&UserId>::try_from("@a:x").unwrap()]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json.len(), 34, "{json}");
        assert_eq!(serde_json::from_str::<SetId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SetId>("\"zz\"").is_err());
    }
}
