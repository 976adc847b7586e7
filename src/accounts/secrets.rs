//! Random secrets: access tokens, device ids, registration tokens, UIA session ids, OpenID
//! tokens, login tokens.

use rand::{Rng, distributions::Alphanumeric};
use sha2::{Digest, Sha256};

fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A new access token: 43 alphanumeric characters carry 256 bits of entropy.
pub fn new_access_token() -> String {
    format!("myl_{}", random_string(43))
}

/// Tokens are stored only as this hash. A fast hash is right here: the token is 256 random
/// bits, so there is nothing to brute-force.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new OpenID token: handed to a third party, which asks us whose it is.
pub fn new_openid_token() -> String {
    random_string(32)
}

/// A new login token (`m.login.token`): as strong as an access token, since it is one in
/// waiting, and stored only as its hash too.
pub fn new_login_token() -> String {
    format!("myl_login_{}", random_string(43))
}

/// Device ids are shown to people, so they are short and upper-case, like other servers'.
pub fn new_device_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(|b| char::from(b).to_ascii_uppercase())
        .collect()
}

pub fn new_registration_token(length: usize) -> String {
    random_string(length)
}

/// A shared-secret registration nonce: single use, so 256 bits leave nothing to guess.
pub fn new_nonce() -> String {
    random_string(43)
}

pub fn new_session_id() -> String {
    random_string(24)
}

/// Localpart for a registration that did not choose one.
pub fn new_localpart() -> String {
    let n: u64 = rand::thread_rng().gen_range(100_000_000..1_000_000_000);
    format!("u{n}")
}
