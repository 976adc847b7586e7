//! The checks only this machine can make: registration, administrators, free disk, clock.

use std::{ffi::CString, os::unix::ffi::OsStrExt, path::Path};

use super::Finding;
use crate::{
    admin::{Command, Reply},
    config::{Config, RegistrationMode},
};

/// Below this much free space in the data directory the database soon cannot grow.
const DISK_FAIL_BYTES: u64 = 200 << 20;
const DISK_WARN_BYTES: u64 = 1 << 30;
/// Clocks further apart than this break TLS and signed requests' timestamps.
const CLOCK_FAIL_SECS: i64 = 300;

pub fn registration(config: &Config) -> Finding {
    match config.registration.mode {
        RegistrationMode::Disabled => {
            Finding::pass("registration", "disabled: accounts are made with `myelin user create`")
        }
        RegistrationMode::Token => {
            Finding::pass("registration", "needs a token made with `myelin token create`")
        }
        RegistrationMode::Open => Finding::warn(
            "registration",
            format!(
                "open: anyone who can reach {} can create accounts; set registration.mode = \"token\"",
                config.client_base_url()
            ),
        ),
    }
}

/// Whether any active account is a server administrator, asked of the running server (or
/// the store, when it is stopped), like `myelin user list`.
pub async fn administrators(config: &Config) -> Finding {
    if !config.data_dir.exists() {
        return Finding::warn(
            "administrators",
            format!("{} does not exist yet: start the server once", config.data_dir.display()),
        );
    }
    let users = match crate::cli::execute_anywhere(config.clone(), Command::UserList).await {
        Ok(Reply::Users { users }) => users,
        Ok(other) => return Finding::warn("administrators", format!("unexpected answer: {other:?}")),
        Err(e) => return Finding::warn("administrators", format!("cannot list users: {e}")),
    };
    let admins: Vec<String> =
        users.iter().filter(|u| u.admin && !u.deactivated).map(|u| u.user_id.to_string()).collect();
    if admins.is_empty() {
        Finding::warn(
            "administrators",
            "no server administrator: make one with `myelin user create NAME --admin`",
        )
    } else {
        Finding::pass("administrators", admins.join(", "))
    }
}

/// Free space on the file system of the data directory (or of the directory it will be
/// made in), as the server's user sees it.
pub fn disk(data_dir: &Path) -> Finding {
    let existing = data_dir.ancestors().find(|dir| dir.exists()).unwrap_or(data_dir);
    let Ok(path) = CString::new(existing.as_os_str().as_bytes()) else {
        return Finding::fail("disk", format!("{}: not a usable path", data_dir.display()));
    };
    // SAFETY: `statvfs` only writes into the zeroed struct we own; `path` is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        let error = std::io::Error::last_os_error();
        return Finding::warn("disk", format!("{}: {error}", existing.display()));
    }
    let block = stat.f_frsize as u64;
    let (free, total) = (stat.f_bavail as u64 * block, stat.f_blocks as u64 * block);
    let percent = (free * 100).checked_div(total).unwrap_or(100);
    let message = format!("{} free for {} ({percent} %)", size(free), data_dir.display());
    if free < DISK_FAIL_BYTES {
        Finding::fail("disk", message)
    } else if free < DISK_WARN_BYTES || percent < 10 {
        Finding::warn("disk", message)
    } else {
        Finding::pass("disk", message)
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{} MiB", b >> 20),
    }
}

/// Whether the kernel says the clock is synchronised (NTP), and how far it is from the clock
/// of the server that answered the federation checks (`Date`), when that was seen.
pub fn clock(peer_skew_secs: Option<i64>) -> Finding {
    if let Some(skew) = peer_skew_secs
        && skew.abs() > CLOCK_FAIL_SECS
    {
        return Finding::fail(
            "clock",
            format!("{skew} s off the clock of the server that answered for this one"),
        );
    }
    let peer =
        peer_skew_secs.map(|s| format!("; {s} s from the answering server's clock")).unwrap_or_default();
    // SAFETY: with `modes` 0, `adjtimex` only reads the kernel's clock state into the struct.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut timex) };
    if state == -1 {
        let error = std::io::Error::last_os_error();
        return Finding::warn("clock", format!("cannot read the clock's state: {error}{peer}"));
    }
    if state == libc::TIME_ERROR || timex.status & libc::STA_UNSYNC != 0 {
        return Finding::warn(
            "clock",
            format!("not synchronised by NTP (install and enable systemd-timesyncd or chrony){peer}"),
        );
    }
    Finding::pass("clock", format!("synchronised (maximum error {} ms){peer}", timex.maxerror / 1000))
}
