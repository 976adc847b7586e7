//! Shared-secret registration, as Synapse defines it for `/_synapse/admin/v1/register`
//! (and its `register_new_matrix_user` script uses): whoever knows the configured secret
//! creates an account, admin or not, whatever the registration mode says. Each request
//! carries a nonce this server handed out (single use, valid for a minute) and an
//! HMAC-SHA1 of the nonce and the account's details keyed with the secret.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{Accounts, Error, LoggedIn, NewUser, Result, secrets};

/// How long a nonce may be used after it was handed out (Synapse's figure).
const NONCE_LIFETIME: Duration = Duration::from_secs(60);

/// Nonces are handed to anyone who asks, so their number is bounded: past this many
/// outstanding, the oldest is forgotten.
const MAX_NONCES: usize = 1000;

/// Longest username or password accepted, in bytes (Synapse's limit).
const MAX_FIELD_BYTES: usize = 512;

/// The secret and the nonces handed out.
pub struct SharedSecret {
    secret: Option<String>,
    nonces: Mutex<HashMap<String, Instant>>,
}

impl SharedSecret {
    /// `None`: shared-secret registration is off.
    pub fn new(secret: Option<String>) -> Self {
        Self { secret, nonces: Mutex::default() }
    }

    fn secret(&self) -> Result<&str> {
        self.secret.as_deref().ok_or_else(|| {
            Error::Forbidden("Shared-secret registration is not enabled on this server".to_owned())
        })
    }

    fn issue_nonce(&self) -> String {
        let nonce = secrets::new_nonce();
        let mut nonces = self.nonces.lock().expect("never poisoned");
        let now = Instant::now();
        nonces.retain(|_, issued| now.duration_since(*issued) < NONCE_LIFETIME);
        if nonces.len() >= MAX_NONCES
            && let Some(oldest) = nonces.iter().min_by_key(|(_, issued)| **issued).map(|(n, _)| n.clone())
        {
            nonces.remove(&oldest);
        }
        nonces.insert(nonce.clone(), now);
        nonce
    }

    /// Takes a nonce out of the outstanding ones: `true` if it was handed out and is still
    /// valid. Either way it cannot be used again.
    fn take_nonce(&self, nonce: &str) -> bool {
        let issued = self.nonces.lock().expect("never poisoned").remove(nonce);
        issued.is_some_and(|issued| issued.elapsed() < NONCE_LIFETIME)
    }
}

/// A shared-secret registration request, already parsed.
pub struct SharedSecretRegistration {
    pub nonce: String,
    pub username: String,
    pub password: String,
    pub admin: bool,
    /// Synapse's user types (`bot`, `support`); Myelin has none, so only `None` is accepted.
    pub user_type: Option<String>,
    pub displayname: Option<String>,
    /// Lower-case hex HMAC-SHA1, keyed with the secret, of the nonce, username, password,
    /// `admin` or `notadmin` and the user type if any, each separated by a NUL byte.
    pub mac: String,
}

impl Accounts {
    /// A nonce for one shared-secret registration.
    pub fn shared_secret_nonce(&self) -> Result<String> {
        self.shared_secret.secret()?;
        Ok(self.shared_secret.issue_nonce())
    }

    /// Creates an account and logs it in, if the MAC proves knowledge of the secret.
    pub async fn register_with_shared_secret(&self, request: SharedSecretRegistration) -> Result<LoggedIn> {
        let secret = self.shared_secret.secret()?;
        // Spent first, so that a request failing for any reason cannot be replayed.
        if !self.shared_secret.take_nonce(&request.nonce) {
            return Err(Error::InvalidParam("unrecognised nonce".to_owned()));
        }
        for (name, value) in [("username", &request.username), ("password", &request.password)] {
            if value.len() > MAX_FIELD_BYTES || value.contains('\0') {
                return Err(Error::InvalidParam(format!("invalid {name}")));
            }
        }
        if !mac_matches(secret, &request) {
            tracing::warn!(username = request.username, "shared-secret registration with a wrong MAC");
            return Err(Error::Forbidden("HMAC incorrect".to_owned()));
        }
        if request.user_type.is_some() {
            return Err(Error::InvalidParam("user types are not supported here".to_owned()));
        }
        let new_user = NewUser {
            name: request.username,
            password: Some(request.password),
            admin: request.admin,
            displayname: request.displayname,
        };
        let (user_id, login) = self.create_user_and_log_in(new_user).await?;
        tracing::info!(%user_id, admin = request.admin, "registered with the shared secret");
        Ok(login)
    }
}

fn mac_matches(secret: &str, request: &SharedSecretRegistration) -> bool {
    let Ok(given) = hex::decode(&request.mac) else { return false };
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    let admin: &str = if request.admin { "admin" } else { "notadmin" };
    let mut parts = vec![&request.nonce[..], &request.username, &request.password, admin];
    parts.extend(request.user_type.as_deref());
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    // Constant-time, so the comparison does not tell how much of a guess was right.
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mac: &str) -> SharedSecretRegistration {
        SharedSecretRegistration {
            nonce: "thisisanonce".to_owned(),
            username: "pepper_roni".to_owned(),
            password: "pizza".to_owned(),
            admin: true,
            user_type: None,
            displayname: None,
            mac: mac.to_owned(),
        }
    }

    /// The MAC of Synapse's documented example, computed with
    /// `printf '%s\0%s\0%s\0%s' thisisanonce pepper_roni pizza admin | openssl sha1 -hmac shared_secret`.
    /// The MAC of Synapse's documented example, computed with OpenSSL:
    /// `printf '%s\0%s\0%s\0%s' thisisanonce pepper_roni pizza admin | openssl sha1 -hmac shared_secret`.
    #[test]
    fn the_mac_is_synapses() {
        let mac = "48715842ad67d5dc9a9ee938a3bda4fcfae8d7c7";
        assert!(mac_matches("shared_secret", &request(mac)));
        assert!(!mac_matches("other_secret", &request(mac)));
        assert!(!mac_matches("shared_secret", &request("not hex")));
        let mut not_admin = request(mac);
        not_admin.admin = false;
        assert!(!mac_matches("shared_secret", &not_admin), "the admin flag is covered by the MAC");
    }

    #[test]
    fn a_nonce_is_good_once() {
        let shared = SharedSecret::new(Some("s".to_owned()));
        let nonce = shared.issue_nonce();
        assert!(shared.take_nonce(&nonce));
        assert!(!shared.take_nonce(&nonce));
        assert!(!shared.take_nonce("never issued"));
    }

    #[test]
    fn a_nonce_expires_after_a_minute() {
        let shared = SharedSecret::new(Some("s".to_owned()));
        let issued = Instant::now().checked_sub(NONCE_LIFETIME).unwrap();
        shared.nonces.lock().unwrap().insert("old".to_owned(), issued);
        assert!(!shared.take_nonce("old"));
    }

    #[test]
    fn outstanding_nonces_are_bounded() {
        let shared = SharedSecret::new(Some("s".to_owned()));
        let first = shared.issue_nonce();
        for _ in 0..MAX_NONCES {
            shared.issue_nonce();
        }
        assert_eq!(shared.nonces.lock().unwrap().len(), MAX_NONCES);
        assert!(!shared.take_nonce(&first), "the oldest nonce made room");
    }
}
