//! Helpers for the Synapse-compatible admin API tests: an administrator made with the CLI,
//! the requests every endpoint is checked with, and where Synapse's own scripts are.

use std::path::PathBuf;

use crate::{Client, Resp, Server, Value, cli_ok, enc, rooms::PASSWORD};

/// `/_synapse/admin/{rest}`.
pub fn admin_path(rest: &str) -> String {
    format!("/_synapse/admin/{rest}")
}

/// `/_synapse/admin/{version}/{area}/{user_id}{rest}`, the user id percent-encoded.
pub fn user_path(version_and_area: &str, user_id: &str, rest: &str) -> String {
    admin_path(&format!("{version_and_area}/{}{rest}", enc(user_id)))
}

/// Creates `name` as a server admin with the CLI and logs it in.
pub async fn admin_client(server: &Server, name: &str) -> Client {
    cli_ok(
        &server.cli(&["user", "create", name, "--admin", "--password-stdin"], Some(&format!("{PASSWORD}\n"))),
    );
    server.client().login(name, PASSWORD).await
}

/// Checks that an endpoint refuses a caller without a token (`401 M_MISSING_TOKEN`) and a
/// caller who is not a server admin (`403 M_FORBIDDEN`).
pub async fn assert_admin_only(
    server: &Server,
    user: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) {
    let anonymous = server.client().request(method, path, body).await;
    anonymous.expect_error(401, "M_MISSING_TOKEN");
    let refused: Resp = user.request(method, path, body).await;
    refused.expect_error(403, "M_FORBIDDEN");
}

/// Synapse's `register_new_matrix_user`, from the virtualenv the Synapse tests use
/// (`$SYNAPSE_PYTHON`'s directory, else `$HOME/.cache/synapse-venv/bin`).
pub fn register_new_matrix_user() -> PathBuf {
    let script = crate::synapse::python().with_file_name("register_new_matrix_user");
    assert!(
        script.exists(),
        "{} missing: run scripts/install-synapse (or set SYNAPSE_PYTHON)",
        script.display()
    );
    script
}
