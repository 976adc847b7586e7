//! Speaking as a server in tests: signed `X-Matrix` requests, with a key of the test's own
//! or a server's real key read from its data directory.

use ruma::{
    CanonicalJsonObject,
    serde::Base64,
    signatures::{Ed25519KeyPair, sign_json},
};
use spec_tests::{Resp, Server, Value, json};

/// An `Authorization: X-Matrix ...` value for a request, signed as the spec describes.
pub fn x_matrix(
    key: &Ed25519KeyPair,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&Value>,
) -> String {
    let mut request = json!({"method": method, "uri": uri, "origin": origin, "destination": destination});
    if let Some(content) = content {
        request["content"] = content.clone();
    }
    let mut object: CanonicalJsonObject = serde_json::from_value(request).expect("canonical JSON");
    sign_json(origin, key, &mut object).expect("sign");
    let signed = serde_json::to_value(&object).unwrap();
    let key_id = format!("ed25519:{}", key.version());
    let sig = signed["signatures"][origin][&key_id].as_str().expect("signature");
    format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{key_id}\",sig=\"{sig}\"")
}

/// A server's own signing key, read from its data directory, so the test can speak as B
/// itself: B's real key, and requests A can verify.
pub fn signing_key_of(server: &Server) -> Ed25519KeyPair {
    let text = std::fs::read_to_string(server.data_dir().join("signing.key")).expect("signing.key");
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, version, document] = parts[..] else { panic!("signing.key: {text}") };
    let der = Base64::<ruma::serde::base64::Standard>::parse(document).expect("base64 key");
    Ed25519KeyPair::from_der(der.as_bytes(), version.to_owned()).expect("ed25519 key")
}

/// A request from `from` to `to`'s federation listener, signed with `from`'s own key as
/// `from` would sign it.
pub async fn signed_request(
    from: &Server,
    to: &Server,
    method: &str,
    uri: &str,
    body: Option<&Value>,
) -> Resp {
    let header = x_matrix(&signing_key_of(from), &from.server_name(), &to.server_name(), method, uri, body);
    to.federation_client().request_with(method, uri, &[("authorization", &header)], body).await
}
