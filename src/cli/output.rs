//! How admin replies look: readable text by default, JSON with `--json`.

use crate::{accounts::RegistrationTokenInfo, admin::Reply};

pub fn print(reply: &Reply, generated_password: Option<&str>, json: bool) {
    if json {
        let mut value = serde_json::to_value(reply).expect("replies serialise");
        if let (Some(password), Some(object)) = (generated_password, value.as_object_mut()) {
            object.insert("password".to_owned(), password.into());
        }
        println!("{value}");
        return;
    }
    match reply {
        Reply::UserCreated { user_id } => println!("created {user_id}"),
        Reply::PasswordChanged { user_id } => {
            println!("password changed for {user_id}; all its devices were logged out")
        }
        Reply::UserDeactivated { user_id } => println!("deactivated {user_id}"),
        Reply::Users { users } => {
            println!("{:<40} {:<6} STATUS", "USER", "ADMIN");
            for user in users {
                let status = if user.deactivated { "deactivated" } else { "active" };
                println!(
                    "{:<40} {:<6} {}",
                    user.user_id.as_str(),
                    if user.admin { "yes" } else { "no" },
                    status
                );
            }
        }
        Reply::Token { token } => println!("{}", describe_token(token)),
        Reply::Tokens { tokens } => {
            if tokens.is_empty() {
                println!("no registration tokens");
            }
            for token in tokens {
                println!("{}", describe_token(token));
            }
        }
        Reply::TokenRevoked { token } => println!("revoked {token}"),
        Reply::RoomEvent(event) => {
            println!("{} in {} (room version {})", event.event_id, event.room_id, event.room_version);
            if let Some(because) = &event.redacted_because {
                println!("redacted by {because}; the PDU below is the redacted form");
            }
            println!("{}", serde_json::to_string_pretty(&event.pdu).expect("JSON values serialise"));
        }
    }
    if let Some(password) = generated_password {
        println!("password: {password}");
    }
}

fn describe_token(token: &RegistrationTokenInfo) -> String {
    let uses = match token.uses_allowed {
        Some(allowed) => format!("{}/{allowed} uses", token.completed),
        None => format!("{} uses, unlimited", token.completed),
    };
    let expiry = match token.expiry_time {
        Some(ms) => format!("expires at {ms} ms since epoch"),
        None => "never expires".to_owned(),
    };
    let state = if token.valid { "valid" } else { "no longer valid" };
    format!("{}  ({uses}, {expiry}, {state})", token.token)
}
