//! The server's ed25519 signing key: generated on first start into `signing.key` in the
//! data directory (mode 0600), then loaded on every start.
//!
//! File format, one line: `ed25519 <version> <unpadded base64 of the PKCS#8 DER document>`.
//! The key id is `ed25519:<version>`.

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, KeyPair},
};

pub const FILE_NAME: &str = "signing.key";

pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Loads the key from `dir`, or `None` if there is none yet.
    pub fn load(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Loads the key from `dir`, creating it first if there is none.
    pub fn load_or_generate(dir: &Path) -> Result<Self, String> {
        match Self::load(dir)? {
            Some(key) => Ok(key),
            None => {
                let path = dir.join(FILE_NAME);
                let version: String =
                    rand::thread_rng().sample_iter(&Alphanumeric).take(6).map(char::from).collect();
                let document = Ed25519KeyPair::generate();
                let line =
                    format!("ed25519 {version} {}\n", Base64::<Standard>::new(document.to_vec()).encode());
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                file.write_all(line.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                tracing::info!(path = %path.display(), "generated a new signing key");
                Self::parse(&line)
            }
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let (Some("ed25519"), Some(version), Some(document), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("expected `ed25519 <version> <base64 key>`".to_owned());
        };
        let document = Base64::<Standard>::parse(document).map_err(|e| format!("bad base64: {e}"))?;
        let pair = Ed25519KeyPair::from_der(document.as_bytes(), version.to_owned())
            .map_err(|e| format!("bad key: {e}"))?;
        Ok(Self { pair })
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// The public key, unpadded standard base64, as published in `/_matrix/key/v2/server`.
    pub fn public_key_base64(&self) -> String {
        Base64::<Standard>::new(self.pair.public_key().to_vec()).encode()
    }

    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.pair
    }
}

impl KeyPair for SigningKey {
    fn sign(&self, message: &[u8]) -> ruma::signatures::Signature {
        self.pair.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_reloaded_unchanged() {
        let dir = std::env::temp_dir().join(format!("myelin-key-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = SigningKey::load_or_generate(&dir).unwrap();
        let second = SigningKey::load_or_generate(&dir).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
