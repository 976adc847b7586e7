//! `myelin doctor`: checks a server the way a remote operator would, one pass/warn/fail line
//! per check. The configuration first (nothing else can be checked without it), then what
//! only this machine can see (registration, administrators, disk, clock), then what other
//! servers and clients see from outside: server discovery, the certificate, the federation
//! API and the keys it publishes, client discovery.
//!
//! The outside checks go through the same discovery code and HTTP set-up as the federation
//! client, so they find what other servers find. `--resolve` and `--ca-cert` point them at
//! a test deployment on loopback, or at a server before its DNS is in place.

mod certificate;
mod local;
mod remote;

use std::{net::SocketAddr, path::Path, path::PathBuf};

use serde::Serialize;

use crate::config::{Config, Overrides};

#[derive(clap::Args)]
pub struct Options {
    /// Connect to ADDR whenever HOST is looked up, instead of asking DNS (as curl's --resolve
    /// does). ADDR is IP:PORT; its port is used for URLs that name none.
    #[arg(long = "resolve", value_name = "HOST=ADDR", value_parser = parse_resolve)]
    resolve: Vec<(String, SocketAddr)>,
    /// Also trust the CA certificates in this PEM file (a private CA, a test set-up).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_certs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

/// The outcome of one check.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
}

impl Finding {
    fn pass(check: &'static str, message: impl Into<String>) -> Self {
        Self { check, level: Level::Pass, message: message.into() }
    }

    fn warn(check: &'static str, message: impl Into<String>) -> Self {
        Self { check, level: Level::Warn, message: message.into() }
    }

    fn fail(check: &'static str, message: impl Into<String>) -> Self {
        Self { check, level: Level::Fail, message: message.into() }
    }
}

/// Runs every check that the configuration allows.
pub async fn run(config_path: Option<&Path>, overrides: &Overrides, options: &Options) -> Vec<Finding> {
    let config = match Config::load(config_path, overrides) {
        Ok(config) => config,
        Err(e) => return vec![Finding::fail("config", e.to_string())],
    };
    let origin = config_path.map_or_else(|| "the built-in defaults".to_owned(), |p| p.display().to_string());
    let mut findings = vec![Finding::pass("config", format!("{origin} is valid"))];
    findings.push(local::registration(&config));
    findings.push(local::administrators(&config).await);
    findings.push(local::disk(&config.data_dir));
    let outside = remote::check(&config, options).await;
    findings.push(local::clock(outside.peer_clock_skew));
    findings.extend(outside.findings);
    findings
}

/// One line per finding, or a JSON array with `--json`.
pub fn print(findings: &[Finding], json: bool) {
    if json {
        println!("{}", serde_json::to_string(findings).expect("findings serialise"));
        return;
    }
    for finding in findings {
        let level = match finding.level {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        println!("{level}  {:<17} {}", finding.check, finding.message);
    }
}

/// `HOST=IP:PORT`.
fn parse_resolve(text: &str) -> Result<(String, SocketAddr), String> {
    let (host, addr) = text.split_once('=').ok_or("expected HOST=IP:PORT")?;
    let addr = addr.parse().map_err(|e| format!("{addr:?}: {e} (expected IP:PORT)"))?;
    if host.is_empty() {
        return Err("expected HOST=IP:PORT".to_owned());
    }
    Ok((host.to_owned(), addr))
}
