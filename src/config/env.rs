//! `MYELIN_*` environment variables: which are config keys, and how their values go into
//! the TOML table before it is deserialised.

use super::ConfigError;

/// Environment variables with this prefix override config keys: `MYELIN_SERVER_NAME`,
/// `MYELIN_REGISTRATION__MODE` (a double underscore separates nested keys).
///
/// Other software sets variables with the same prefix: Kubernetes gives every pod
/// `MYELIN_SERVICE_HOST`, `MYELIN_PORT`, `MYELIN_PORT_8008_TCP`… for a Service named
/// `myelin`. So a variable is a config key only when its first part names a top-level
/// key ([`TOP_LEVEL_KEYS`]); the others are ignored with a warning. Kubernetes' names
/// always end in `_SERVICE_…` or `_PORT…` and never contain `__`, so they never name one.
pub(super) const ENV_PREFIX: &str = "MYELIN_";
/// Variables with the prefix that are not config keys.
const ENV_NOT_KEYS: &[&str] = &["MYELIN_CONFIG", "MYELIN_LOG"];
/// The top-level keys of [`Config`] (checked against `config/myelin.example.toml`).
pub(super) const TOP_LEVEL_KEYS: &[&str] = &[
    "server_name",
    "listen",
    "data_dir",
    "public_baseurl",
    "app_service_config_files",
    "registration",
    "login",
    "limits",
    "rate_limits",
    "storage",
    "media",
    "presence",
    "sliding_sync",
    "voip",
    "metrics",
    "federation",
    "outbound",
    "push",
    "retention",
    "log",
];

/// Writes `MYELIN_*` variables into the TOML table before deserialising, so they go through
/// the same type checks and unknown-key errors as the file. Returns the names of those
/// that name no top-level key, which are left out.
pub(super) fn apply_env(
    table: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>, ConfigError> {
    let mut ignored = Vec::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
        if ENV_NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        if !TOP_LEVEL_KEYS.contains(&path[0].as_str()) {
            ignored.push(name);
            continue;
        }
        if path.iter().any(String::is_empty) {
            return Err(ConfigError(format!("{name}: not a valid config key")));
        }
        let mut node = &mut *table;
        for part in &path[..path.len() - 1] {
            let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError(format!("{name}: {part} is not a section of the config")))?;
        }
        node.insert(path[path.len() - 1].clone(), parse_env_value(&value));
    }
    ignored.sort();
    Ok(ignored)
}

/// `true`, `8`, `0.5` and `["a"]` keep their TOML type; anything else is a string.
fn parse_env_value(value: &str) -> toml::Value {
    format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::config::{Config, RegistrationMode, tests::load};

    #[test]
    fn env_overrides_file_and_keeps_types() {
        let config = load(
            "server_name = \"a.example\"\n",
            &[
                ("MYELIN_SERVER_NAME", "b.example"),
                ("MYELIN_REGISTRATION__MODE", "token"),
                ("MYELIN_LIMITS__MAX_REQUEST_BYTES", "4096"),
                ("MYELIN_CONFIG", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.server_name.as_str(), "b.example");
        assert_eq!(config.registration.mode, RegistrationMode::Token);
        assert_eq!(config.limits.max_request_bytes, 4096);
    }

    /// A key under a known table is surely meant for Myelin: a typo there is an error.
    #[test]
    fn unknown_env_key_in_a_known_table_is_an_error() {
        let err = load("", &[("MYELIN_REGISTRATION__MODDE", "open")]).unwrap_err();
        assert!(err.0.contains("modde"), "{err}");
    }

    /// What Kubernetes puts in every pod for a Service named `myelin` is ignored, with a
    /// warning, and the real keys still apply.
    #[test]
    fn kubernetes_service_variables_are_ignored() {
        let config = load(
            "",
            &[
                ("MYELIN_SERVICE_HOST", "10.96.0.12"),
                ("MYELIN_SERVICE_PORT", "8008"),
                ("MYELIN_SERVICE_PORT_HTTP", "8008"),
                ("MYELIN_PORT", "tcp://10.96.0.12:8008"),
                ("MYELIN_PORT_8008_TCP", "tcp://10.96.0.12:8008"),
                ("MYELIN_PORT_8008_TCP_PROTO", "tcp"),
                ("MYELIN_PORT_8008_TCP_PORT", "8008"),
                ("MYELIN_PORT_8008_TCP_ADDR", "10.96.0.12"),
                ("MYELIN_SERVER_NAME", "k8s.example"),
            ],
        )
        .unwrap();
        assert_eq!(config.server_name.as_str(), "k8s.example");
        assert_eq!(config.ignored_env.len(), 8, "{:?}", config.ignored_env);
        assert!(config.ignored_env.contains(&"MYELIN_PORT".to_owned()));
    }

    /// Every top-level key of the example file (which documents them all) is one an
    /// environment variable may set.
    #[test]
    fn top_level_keys_match_the_example_file() {
        let example: toml::Table =
            include_str!("../../config/myelin.example.toml").parse().expect("the example parses");
        for key in example.keys() {
            assert!(TOP_LEVEL_KEYS.contains(&key.as_str()), "{key} is missing from TOP_LEVEL_KEYS");
        }
        Config::deserialize(toml::Value::Table(example)).expect("the example is a valid config");
    }
}
