//! The CLI's side of the admin socket: one HTTP/1.1 request over a Unix stream.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::{
    admin::{Command, Reply},
    admin_api::COMMAND_PATH,
};

/// No server answered on the socket; the reason is for the error message.
pub struct Unreachable(pub String);

/// Sends `command`. The outer error means "no server there"; the inner one is the server's
/// refusal (such as "user exists").
pub async fn send(socket: &Path, command: &Command) -> Result<Result<Reply, String>, Unreachable> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| Unreachable(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Unreachable(e.to_string()))?;
    tokio::spawn(connection);
    let body = serde_json::to_vec(command).expect("commands serialise");
    let request = http::Request::post(COMMAND_PATH)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static request parts are valid");
    let response = sender.send_request(request).await.map_err(|e| Unreachable(e.to_string()))?;
    let status = response.status();
    let bytes = match response.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(Err(format!("reading the server's answer: {e}"))),
    };
    if status.is_success() {
        Ok(serde_json::from_slice(&bytes).map_err(|e| format!("unexpected answer from the server: {e}")))
    } else {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("the server answered {status}"));
        Ok(Err(message))
    }
}
