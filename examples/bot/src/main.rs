//! `myelin-echo-bot HOMESERVER_URL USER`, with the password in `BOT_PASSWORD`:
//!
//! ```sh
//! myelin user create echo              # on the server; prints the password
//! BOT_PASSWORD=... cargo run -p myelin-echo-bot -- https://matrix.example.org echo
//! ```
//!
//! Then invite `@echo:example.org` to a room and say `!ping`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "myelin_echo_bot=info,matrix_sdk=warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(homeserver), Some(user), Ok(password)) =
        (args.first(), args.get(1), std::env::var("BOT_PASSWORD"))
    else {
        eprintln!("usage: BOT_PASSWORD=... myelin-echo-bot HOMESERVER_URL USER");
        return ExitCode::from(2);
    };
    let client = match myelin_echo_bot::login(homeserver, user, &password).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("cannot log in as {user} on {homeserver}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(user = ?client.user_id(), "logged in; answering !ping");
    match myelin_echo_bot::run(client).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync failed: {e}");
            ExitCode::FAILURE
        }
    }
}
