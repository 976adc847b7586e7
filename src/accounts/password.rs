//! Password hashing with argon2id (the crate's defaults follow OWASP's recommendation).
//! Hashing is deliberately slow, so both calls run on tokio's blocking pool.
//!
//! Each hash also takes 19 MiB of memory, so at most one runs per core: more would not
//! finish sooner, and a burst of logins or registrations (or someone flooding the login
//! endpoint) would otherwise cost 19 MiB for every request in flight.

use std::sync::LazyLock;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
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

/// Returns a PHC string (`$argon2id$v=19$...`) that embeds salt and parameters.
pub async fn hash(password: String) -> String {
    on_a_free_core(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with default parameters accepts any password")
            .to_string()
    })
    .await
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub async fn verify(phc: String, password: String) -> bool {
    on_a_free_core(move || {
        PasswordHash::new(&phc)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
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
}
