//! Password hashing with argon2id (the crate's defaults follow OWASP's recommendation).
//! Hashing is deliberately slow, so both calls run on tokio's blocking pool.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Returns a PHC string (`$argon2id$v=19$...`) that embeds salt and parameters.
pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with default parameters accepts any password")
            .to_string()
    })
    .await
    .expect("password hashing does not panic")
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub async fn verify(phc: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false)
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
