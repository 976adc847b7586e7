//! `[retention]`: how long rooms keep their history (Synapse's message retention
//! policies, MSC1763): a server-wide default, the bounds a room's own `m.room.retention`
//! event is held to, and how often the purge runs.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Off: nothing is removed for its age, whatever rooms ask.
    pub enabled: bool,
    /// How long a room without its own `m.room.retention` keeps events (none: for ever).
    #[serde(deserialize_with = "optional_duration")]
    pub default_max_lifetime: Option<Duration>,
    /// A room's own `max_lifetime` is raised to at least this...
    #[serde(deserialize_with = "optional_duration")]
    pub allowed_lifetime_min: Option<Duration>,
    /// ...and lowered to at most this.
    #[serde(deserialize_with = "optional_duration")]
    pub allowed_lifetime_max: Option<Duration>,
    /// This server's uploads are removed this long after they were stored.
    #[serde(deserialize_with = "optional_duration")]
    pub local_media_lifetime: Option<Duration>,
    /// Copies of other servers' files are removed this long after they were fetched (they
    /// are fetched again when asked for).
    #[serde(deserialize_with = "optional_duration")]
    pub remote_media_lifetime: Option<Duration>,
    /// How often expired events are purged.
    #[serde(deserialize_with = "duration")]
    pub purge_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_max_lifetime: None,
            allowed_lifetime_min: None,
            allowed_lifetime_max: None,
            local_media_lifetime: None,
            remote_media_lifetime: None,
            purge_interval: Duration::from_secs(12 * 3600),
        }
    }
}

impl RetentionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let (Some(min), Some(max)) = (self.allowed_lifetime_min, self.allowed_lifetime_max)
            && min > max
        {
            return Err(ConfigError(
                "retention.allowed_lifetime_min is longer than retention.allowed_lifetime_max".to_owned(),
            ));
        }
        if self.purge_interval.is_zero() {
            return Err(ConfigError("retention.purge_interval must be at least 1s".to_owned()));
        }
        Ok(())
    }

    /// How long a room keeps events: its own `max_lifetime` (ms) held to the allowed
    /// bounds, else the default; `None` keeps them for ever (or retention is off).
    pub fn lifetime_of(&self, room_max_lifetime_ms: Option<u64>) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        match room_max_lifetime_ms {
            Some(ms) => {
                let mut lifetime = Duration::from_millis(ms);
                if let Some(min) = self.allowed_lifetime_min {
                    lifetime = lifetime.max(min);
                }
                if let Some(max) = self.allowed_lifetime_max {
                    lifetime = lifetime.min(max);
                }
                Some(lifetime)
            }
            None => self.default_max_lifetime,
        }
    }
}

/// A duration such as `90d`, `12h`, `30m` or `45s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 =
        number.parse().map_err(|_| format!("{text:?}: expected a number followed by s, m, h or d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    number.checked_mul(seconds).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn optional_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn a_rooms_lifetime_is_held_to_the_bounds_and_defaults_apply_only_without_one() {
        let day = Duration::from_secs(86_400);
        let config = RetentionConfig {
            enabled: true,
            default_max_lifetime: Some(day * 365),
            allowed_lifetime_min: Some(day),
            allowed_lifetime_max: Some(day * 30),
            ..Default::default()
        };
        assert_eq!(config.lifetime_of(None), Some(day * 365));
        assert_eq!(config.lifetime_of(Some(60_000)), Some(day));
        assert_eq!(config.lifetime_of(Some(day.as_millis() as u64 * 100)), Some(day * 30));
        assert_eq!(config.lifetime_of(Some(day.as_millis() as u64 * 7)), Some(day * 7));
        assert_eq!(RetentionConfig { enabled: false, ..config }.lifetime_of(Some(60_000)), None);
    }
}
