//! Password hashing with argon2id, in the least memory-hungry of the settings OWASP's
//! Password Storage Cheat Sheet rates equally strong (see [`hasher`]). Hashing is
//! deliberately slow, so both calls run on tokio's blocking pool.
//!
//! Each hash also holds its memory (7 MiB) while it runs, so at most one runs per core: more
//! would not finish sooner, and a burst of logins or registrations (or someone flooding the
//! login endpoint) would otherwise cost that memory for every request in flight.

use std::sync::LazyLock;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

/// One permit per core, for a hash or a verification in progress.
static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));

/// Runs `work` on the blocking pool once a core is free for it.
async fn on_a_free_core<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let _permit = HASHING.acquire().await.expect("the hashing semaphore is never closed");
    tokio::task::spawn_blocking(work).await.expect("password hashing does not panic")
}

/// Memory per hash, in KiB.
const MEMORY_KIB: u32 = 7 * 1024;
/// Passes over that memory.
const PASSES: u32 = 5;

/// argon2id with 7 MiB and 5 passes. OWASP lists five settings of equal strength, from
/// 46 MiB with one pass to 7 MiB with five, which differ only in trading memory for CPU;
/// the crate's default is the 19 MiB, two-pass one. This one costs about the same CPU per
/// hash and a third of the memory, which on a small server is the scarcer of the two:
/// every registration or login holds it while it hashes.
///
/// A stored hash names its own parameters, and verification uses those, so hashes made
/// with other settings keep working until a login replaces them ([`is_current`]).
fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("the parameters are within argon2's bounds");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Returns a PHC string (`$argon2id$v=19$...`) that embeds salt and parameters.
pub async fn hash(password: String) -> String {
    on_a_free_core(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 accepts any password with valid parameters")
            .to_string()
    })
    .await
}

/// Whether `phc` was made with [`hasher`]'s settings. A password stored with other ones
/// (an older Myelin's, 19 MiB) is hashed again at the next successful login, so each login
/// after that holds 7 MiB, not 19.
pub fn is_current(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.version == Some(Version::V0x13.into())
            && Params::try_from(&parsed).is_ok_and(|params| {
                (params.m_cost(), params.t_cost(), params.p_cost()) == (MEMORY_KIB, PASSES, 1)
            })
    })
}

/// A hash of `password` with the argon2 crate's default settings (19 MiB, two passes), as
/// Myelin stored them before [`hasher`]'s, for tests of what happens to such hashes.
#[cfg(test)]
pub(crate) fn hash_with_older_settings(password: &str) -> String {
    let salt = SaltString::encode_b64(b"sixteen byte sal").expect("16 bytes make a valid salt");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("a valid hash").to_string()
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub async fn verify(phc: String, password: String) -> bool {
    on_a_free_core(move || {
        PasswordHash::new(&phc)
            .is_ok_and(|parsed| hasher().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn round_trip() {
        let phc = super::hash("correct horse".to_owned()).await;
        assert!(phc.starts_with("$argon2id$"));
        assert!(super::verify(phc.clone(), "correct horse".to_owned()).await);
        assert!(!super::verify(phc, "battery staple".to_owned()).await);
        assert!(!super::verify("not a hash".to_owned(), "x".to_owned()).await);
    }

    #[tokio::test]
    async fn new_hashes_use_seven_mebibytes_and_five_passes() {
        let phc = super::hash("correct horse".to_owned()).await;
        assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
    }

    /// Accounts created before the switch hold hashes made with the crate's default
    /// parameters (19 MiB, two passes); they must still log in.
    #[tokio::test]
    async fn hashes_with_other_parameters_still_verify() {
        let old = super::hash_with_older_settings("correct horse");
        assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
        assert!(super::verify(old.clone(), "correct horse".to_owned()).await);
        assert!(!super::verify(old.clone(), "battery staple".to_owned()).await);
        assert!(!super::is_current(&old));
        assert!(super::is_current(&super::hash("correct horse".to_owned()).await));
        assert!(!super::is_current("not a hash"));
    }
}
