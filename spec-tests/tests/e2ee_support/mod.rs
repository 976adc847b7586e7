//! Helpers shared by the end-to-end encryption spec-tests: real ed25519 keys (so the
//! server may check signatures), signed device and cross-signing keys, and the `/keys/*`
//! requests the tests repeat.

#![allow(dead_code)]

use ruma::{
    CanonicalJsonObject,
    serde::Base64,
    signatures::{Ed25519KeyPair, sign_json},
};
use spec_tests::*;

pub const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM: &str = "m.megolm.v1.aes-sha2";
pub const OTK: &str = "signed_curve25519";

/// `/_matrix/client/v3/keys/{rest}`.
pub fn keys_path(rest: &str) -> String {
    format!("/_matrix/client/v3/keys/{rest}")
}

/// An ed25519 signing key pair and its unpadded-base64 public key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pub public: String,
}

impl SigningKey {
    /// A new key whose key id is `ed25519:{name}`, or `ed25519:{public key}` (the
    /// cross-signing convention) without a name.
    pub fn new(name: Option<&str>) -> SigningKey {
        let der = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&der, "probe".to_owned()).expect("generated key");
        let public = Base64::<ruma::serde::base64::Standard, _>::new(probe.public_key().to_vec()).encode();
        let version = name.map_or_else(|| public.clone(), str::to_owned);
        SigningKey { pair: Ed25519KeyPair::from_der(&der, version).expect("generated key"), public }
    }

    /// `ed25519:{version}`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.pair.version())
    }

    /// Adds this key's signature (as `signer`) to `object`, keeping signatures it has.
    pub fn sign(&self, signer: &str, object: &Value) -> Value {
        let mut canonical: CanonicalJsonObject =
            serde_json::from_value(object.clone()).expect("signable JSON object");
        sign_json(signer, &self.pair, &mut canonical).expect("sign");
        serde_json::to_value(canonical).unwrap()
    }
}

/// A device's identity keys, signed by its own ed25519 key.
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    pub ed25519: SigningKey,
    pub curve25519: String,
}

impl Device {
    pub fn of(client: &Client) -> Device {
        let device_id = client.device_id.clone().expect("logged in");
        Device {
            user_id: client.user_id().to_owned(),
            ed25519: SigningKey::new(Some(&device_id)),
            curve25519: SigningKey::new(None).public,
            device_id,
        }
    }

    /// The signed `device_keys` object `/keys/upload` takes.
    pub fn keys(&self) -> Value {
        let unsigned = json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                format!("curve25519:{}", self.device_id): self.curve25519,
                format!("ed25519:{}", self.device_id): self.ed25519.public,
            },
        });
        self.ed25519.sign(&self.user_id, &unsigned)
    }

    /// `count` signed one-time keys with ids `{prefix}{i}`.
    pub fn one_time_keys(&self, prefix: &str, count: usize) -> Value {
        let mut keys = serde_json::Map::new();
        for i in 0..count {
            let key = json!({"key": SigningKey::new(None).public});
            keys.insert(format!("{OTK}:{prefix}{i}"), self.ed25519.sign(&self.user_id, &key));
        }
        Value::Object(keys)
    }

    /// A signed fallback key with id `id`.
    pub fn fallback_key(&self, id: &str) -> Value {
        let key = json!({"key": SigningKey::new(None).public, "fallback": true});
        json!({format!("{OTK}:{id}"): self.ed25519.sign(&self.user_id, &key)})
    }
}

/// A user's three cross-signing keys, the other two signed by the master key.
pub struct CrossSigning {
    pub user_id: String,
    pub master: SigningKey,
    pub self_signing: SigningKey,
    pub user_signing: SigningKey,
}

impl CrossSigning {
    pub fn new(user_id: &str) -> CrossSigning {
        CrossSigning {
            user_id: user_id.to_owned(),
            master: SigningKey::new(None),
            self_signing: SigningKey::new(None),
            user_signing: SigningKey::new(None),
        }
    }

    fn key(&self, key: &SigningKey, usage: &str) -> Value {
        json!({"user_id": self.user_id, "usage": [usage], "keys": {key.key_id(): key.public}})
    }

    pub fn master_key(&self) -> Value {
        self.key(&self.master, "master")
    }

    pub fn self_signing_key(&self) -> Value {
        self.master.sign(&self.user_id, &self.key(&self.self_signing, "self_signing"))
    }

    pub fn user_signing_key(&self) -> Value {
        self.master.sign(&self.user_id, &self.key(&self.user_signing, "user_signing"))
    }

    /// The body of `/keys/device_signing/upload` with all three keys.
    pub fn upload_body(&self) -> Value {
        json!({
            "master_key": self.master_key(),
            "self_signing_key": self.self_signing_key(),
            "user_signing_key": self.user_signing_key(),
        })
    }
}

/// `POST /keys/upload`.
pub async fn upload_keys(client: &Client, body: &Value) -> Resp {
    client.post(&keys_path("upload"), body).await
}

/// Uploads the device's identity keys, expecting success.
pub async fn upload_device_keys(client: &Client, device: &Device) {
    upload_keys(client, &json!({"device_keys": device.keys()})).await.expect(200);
}

/// `POST /keys/query` for all devices of `users`, expecting success.
pub async fn query(client: &Client, users: &[&str]) -> Value {
    let wanted: serde_json::Map<String, Value> = users.iter().map(|u| (u.to_string(), json!([]))).collect();
    client.post(&keys_path("query"), &json!({"device_keys": wanted})).await.expect(200)
}

/// `POST /keys/claim` of one key of `algorithm` for one device.
pub async fn claim(client: &Client, user: &str, device: &str, algorithm: &str) -> Resp {
    client.post(&keys_path("claim"), &json!({"one_time_keys": {user: {device: algorithm}}})).await
}

/// The single key a claim returned for the device, as (key id, key), if any.
pub fn claimed(body: &Value, user: &str, device: &str) -> Option<(String, Value)> {
    let keys = body["one_time_keys"][user][device].as_object()?;
    assert!(keys.len() <= 1, "one key per device and algorithm: {body}");
    keys.iter().next().map(|(id, key)| (id.clone(), key.clone()))
}

/// `POST /keys/device_signing/upload`.
pub async fn upload_signing_keys(client: &Client, body: &Value) -> Resp {
    client.post(&keys_path("device_signing/upload"), body).await
}

/// `POST /keys/signatures/upload`.
pub async fn upload_signatures(client: &Client, body: &Value) -> Resp {
    client.post(&keys_path("signatures/upload"), body).await
}

/// Logs in a new device of `user` with a display name.
pub async fn login_device(server: &Server, user: &str, password: &str, display_name: &str) -> Client {
    let mut body = login_body(user, password);
    body["initial_device_display_name"] = json!(display_name);
    let reply = server.client().post("/_matrix/client/v3/login", &body).await.expect(200);
    let mut client = server.client().with_token(reply["access_token"].as_str().unwrap());
    client.user_id = reply["user_id"].as_str().map(str::to_owned);
    client.device_id = reply["device_id"].as_str().map(str::to_owned);
    client
}
