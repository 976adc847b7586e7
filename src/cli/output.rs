//! How admin replies look: readable text by default, JSON with `--json`.

use crate::{
    accounts::RegistrationTokenInfo,
    admin::Reply,
    rooms::{FiledReport, ReportTarget},
};

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
        Reply::ShadowBan { user_id, banned: true } => println!("shadow-banned {user_id}"),
        Reply::ShadowBan { user_id, banned: false } => println!("lifted the shadow ban of {user_id}"),
        Reply::RoomDeleted { room_id, kicked_users, failed_to_kick_users, purged } => {
            let users =
                |users: &[ruma::OwnedUserId]| users.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ");
            println!(
                "moved out of {room_id}: {}",
                if kicked_users.is_empty() { "nobody".to_owned() } else { users(kicked_users) }
            );
            if !failed_to_kick_users.is_empty() {
                println!("could not move out: {}", users(failed_to_kick_users));
            }
            if *purged {
                println!("purged {room_id} from the database");
            }
        }
        Reply::RoomBlock { room_id, block: true } => println!("blocked {room_id}"),
        Reply::RoomBlock { room_id, block: false } => println!("unblocked {room_id}"),
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
        Reply::Reindexed { events, indexed } => {
            println!("search index rebuilt: {events} events read, {indexed} with text indexed")
        }
        Reply::BackedUp(backup) => {
            let m = &backup.manifest;
            println!(
                "backup written to {}: {} database entries ({} MB) in {} trees, {} files ({} MB)",
                backup.dir.display(),
                m.entries,
                m.bytes / 1_000_000,
                m.trees,
                m.media_files,
                m.media_bytes / 1_000_000
            );
            println!(
                "took {:.1} s; writes waited {:.1} s",
                backup.took_ms as f64 / 1000.0,
                backup.writes_paused_ms as f64 / 1000.0
            );
        }
        Reply::Verified(verified) => print_verified(verified),
        Reply::HistoryPurged(purge) => println!(
            "removed {} events; {} before the point stayed (state, the newest events, local ones)",
            purge.events_removed, purge.events_kept
        ),
        Reply::RoomEvent(event) => {
            println!("{} in {} (room version {})", event.event_id, event.room_id, event.room_version);
            if let Some(because) = &event.redacted_because {
                println!("redacted by {because}; the PDU below is the redacted form");
            }
            println!("{}", serde_json::to_string_pretty(&event.pdu).expect("JSON values serialise"));
        }
        Reply::Pushers { pushers } => {
            if pushers.is_empty() {
                println!("no pushers");
            }
            for pusher in pushers {
                let kind = pusher.pusher["kind"].as_str().unwrap_or("?");
                let url = pusher.pusher["data"]["url"].as_str().unwrap_or("-");
                let failing = match pusher.failing_since {
                    Some(since) => format!(", failing since {}", utc(since)),
                    None => String::new(),
                };
                println!(
                    "{} {} {kind} {url} (delivered up to {}{failing})",
                    pusher.app_id, pusher.pushkey, pusher.delivered_upto
                );
            }
        }
        Reply::PusherTests { results } => {
            if results.is_empty() {
                println!("no http pushers");
            }
            for result in results {
                let outcome = match (&result.error, result.rejected) {
                    (Some(error), _) => format!("error: {error}"),
                    (None, true) => "rejected: the gateway no longer accepts this push key".to_owned(),
                    (None, false) => "ok".to_owned(),
                };
                println!("{} {}: {outcome}", result.app_id, result.pushkey);
            }
        }
        Reply::Appservices { appservices } => {
            if appservices.is_empty() {
                println!("no application services");
            }
            for service in appservices {
                let from = service.file.as_deref().unwrap_or("added with `myelin appservice register`");
                let url = service.url.as_deref().unwrap_or("(no url)");
                println!("{}  {url}  {}  ({from})", service.id, service.sender);
            }
        }
        Reply::AppserviceRegistered { id } => println!("registered application service {id}"),
        Reply::AppserviceRemoved { id } => println!("removed application service {id}"),
        Reply::Reports { reports } => {
            if reports.is_empty() {
                println!("no reports");
            }
            for report in reports {
                print_report(report);
            }
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

/// One report: a line saying who reported what when, then the reason, indented.
fn print_report(report: &FiledReport) {
    let (kind, target) = match &report.target {
        ReportTarget::Event { room_id, event_id } => ("event", format!("{event_id} in {room_id}")),
        ReportTarget::Room { room_id } => ("room", room_id.to_string()),
        ReportTarget::User { user_id } => ("user", user_id.to_string()),
    };
    println!("#{} {} {kind} {target} reported by {}", report.id, utc(report.ts), report.reporter);
    match report.reason.as_deref() {
        Some(reason) if !reason.is_empty() => {
            for line in reason.lines() {
                println!("    {line}");
            }
        }
        _ => println!("    (no reason given)"),
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian
/// calendar, from Howard Hinnant's `civil_from_days`).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

fn print_verified(verified: &crate::archive::Verified) {
    let report = &verified.store;
    for ((check, checked), (_, problems)) in report.checked.iter().zip(&report.problems) {
        println!("{check:<16} {checked:>10} checked  {problems:>6} problems");
    }
    for finding in &report.findings {
        let state = if finding.repaired { "repaired" } else { "found" };
        println!("{state}: {}: {}", finding.check, finding.detail);
    }
    for key in &verified.missing_media {
        println!("found: media: the file of {key} is missing");
    }
    if verified.is_clean() {
        println!("the database verifies clean");
    }
}

/// What `myelin db restore` did.
pub fn print_restored(restored: &crate::archive::Restored, json: bool) {
    if json {
        println!("{}", serde_json::to_string(restored).expect("restores serialise"));
        return;
    }
    let m = &restored.manifest;
    println!(
        "restored the backup of {} taken at {}: {} database entries, {} files",
        m.server_name,
        utc(m.created_ms),
        m.entries,
        restored.media_files
    );
    println!("the restored database verifies clean");
    if let Some(previous) = &restored.previous_db {
        println!("the database it replaced is kept at {}", previous.display());
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599_999), "2024-12-31 23:59:59 UTC");
    }
}
