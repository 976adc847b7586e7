//! `[rate_limits]`: token buckets against guessing (login and registration, per client IP)
//! and wrong passwords per account) and against one account flooding the server (sends, joins, invites, uploads, to-device
//! messages, per user), with their defaults and their validation.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// Turns every limiter below on or off.
    pub enabled: bool,
    /// `/login` attempts per client IP.
    #[serde(deserialize_with = "login_limit")]
    pub login: RateLimit,
    /// `/register` attempts per client IP.
    #[serde(deserialize_with = "register_limit")]
    pub register: RateLimit,
    /// Events a user sends (messages, state, redactions; a room creation or upgrade
    /// counts once, whatever initial events it makes).
    #[serde(deserialize_with = "message_limit")]
    pub message: RateLimit,
    /// Rooms a user joins or knocks on.
    #[serde(deserialize_with = "join_limit")]
    pub join: RateLimit,
    /// Invites a user sends.
    #[serde(deserialize_with = "invite_limit")]
    pub invite: RateLimit,
    /// Files a user uploads or reserves an `mxc://` URI for.
    #[serde(deserialize_with = "media_upload_limit")]
    pub media_upload: RateLimit,
    /// `/sendToDevice` requests a user makes.
    #[serde(deserialize_with = "to_device_limit")]
    pub to_device: RateLimit,
    /// Wrong passwords per account (at login and in user-interactive auth), whatever
    /// address they come from: guessing one person's password from many addresses.
    #[serde(deserialize_with = "failed_login_limit")]
    pub failed_login: RateLimit,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for RateLimitsConfig {
    /// Synapse's defaults are the reference: `rc_message` 0.2/s with a burst of 10,
    /// `rc_joins.local` 0.1/10, `rc_invites.per_issuer` 0.3/10, `rc_media_create` 10/50,
    /// and no limit on to-device messages but key requests (20/100). Synapse serves large
    /// public servers whose bots and bridges get per-user overrides or appservice
    /// exemptions. Here a bot is an ordinary account with no override, and one person may
    /// share an album or set up a space in one go, so the bursts are larger: what a person
    /// or a client does at once passes, and what a script keeps up fails. The sustained
    /// rates are close to Synapse's, and stop a runaway account from thousands of requests
    /// a second down to a trickle:
    ///
    /// - `message` 0.5/s, burst 50: a pasted batch of lines, a bot's digest, a burst of
    ///   edits and reactions, or a space set up with its rooms (a room's creation counts
    ///   once, its initial state not at all); then one every two seconds, more than
    ///   anyone types. Our tests that fill a room with 30 to 40 messages while another
    ///   client is away pass under it.
    /// - `join` 0.1/s, burst 20: accepting a batch of invites after signing in; then one
    ///   join every ten seconds, as Synapse.
    /// - `invite` 0.2/s, burst 30: inviting a family or club of seven into four rooms at
    ///   once; then twelve a minute. Lower than Synapse's per-issuer rate because there is
    ///   no per-room or per-invitee limit behind it.
    /// - `media_upload` 1/s, burst 50: an album of images with their thumbnails (two
    ///   uploads each); then one a second, which an upload of any size barely reaches.
    ///   File sizes are `media.max_upload_bytes`'s job.
    /// - `to_device` 5/s, burst 100: key sharing, verification and call keys at login or
    ///   after a burst of new devices, as Synapse allows key requests; a request may
    ///   carry messages for many devices, so requests are what is counted.
    /// - `failed_login` 0.17/s, burst 3 per account, Synapse's `rc_login.failed_attempts`:
    ///   three typos pass, then a guess every six seconds, ten a minute instead of the
    ///   thousands a botnet could try.
    fn default() -> Self {
        Self {
            enabled: true,
            login: RateLimit { per_second: 0.5, burst: 5 },
            register: RateLimit { per_second: 0.2, burst: 5 },
            message: RateLimit { per_second: 0.5, burst: 50 },
            join: RateLimit { per_second: 0.1, burst: 20 },
            invite: RateLimit { per_second: 0.2, burst: 30 },
            media_upload: RateLimit { per_second: 1.0, burst: 50 },
            to_device: RateLimit { per_second: 5.0, burst: 100 },
            failed_login: RateLimit { per_second: 0.17, burst: 3 },
        }
    }
}

impl RateLimitsConfig {
    /// Every limit with its key, for validation and documentation.
    pub fn all(&self) -> [(&'static str, RateLimit); 8] {
        [
            ("login", self.login),
            ("register", self.register),
            ("message", self.message),
            ("join", self.join),
            ("invite", self.invite),
            ("media_upload", self.media_upload),
            ("to_device", self.to_device),
            ("failed_login", self.failed_login),
        ]
    }

    /// Each limit refills at a positive, finite rate and lets at least one request through.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, limit) in self.all() {
            if !(limit.per_second > 0.0 && limit.per_second.is_finite()) {
                return Err(ConfigError(format!(
                    "rate_limits.{key}.per_second: must be a positive number, not {}",
                    limit.per_second
                )));
            }
            if limit.burst == 0 {
                return Err(ConfigError(format!("rate_limits.{key}.burst: must be at least 1")));
            }
        }
        Ok(())
    }
}

/// A rate limit table as written: a key left out takes that limit's own default. `burst`
/// is read as any integer so that a negative one is refused with its key named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialRateLimit {
    per_second: Option<f64>,
    burst: Option<i64>,
}

fn limit_or<'de, D: serde::Deserializer<'de>>(
    key: &str,
    defaults: RateLimit,
    d: D,
) -> Result<RateLimit, D::Error> {
    let partial = PartialRateLimit::deserialize(d)?;
    let burst = match partial.burst {
        None => defaults.burst,
        Some(burst) => u32::try_from(burst).map_err(|_| {
            serde::de::Error::custom(format!(
                "rate_limits.{key}.burst: must be a whole number from 1 to {}, not {burst}",
                u32::MAX
            ))
        })?,
    };
    Ok(RateLimit { per_second: partial.per_second.unwrap_or(defaults.per_second), burst })
}

/// One `deserialize_with` function per limit, each falling back to its own defaults.
macro_rules! limit_deserializers {
    ($($function:ident => $key:ident),* $(,)?) => {$(
        fn $function<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RateLimit, D::Error> {
            limit_or(stringify!($key), RateLimitsConfig::default().$key, d)
        }
    )*};
}

limit_deserializers! {
    login_limit => login,
    register_limit => register,
    message_limit => message,
    join_limit => join,
    invite_limit => invite,
    media_upload_limit => media_upload,
    to_device_limit => to_device,
    failed_login_limit => failed_login,
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn a_partial_rate_limit_table_keeps_that_limits_own_defaults() {
        let config =
            load("[rate_limits.register]\nburst = 9\n[rate_limits.login]\nper_second = 2.0\n", &[]).unwrap();
        assert_eq!((config.rate_limits.register.per_second, config.rate_limits.register.burst), (0.2, 9));
        assert_eq!((config.rate_limits.login.per_second, config.rate_limits.login.burst), (2.0, 5));
        let config = load("", &[("MYELIN_RATE_LIMITS__REGISTER__BURST", "10")]).unwrap();
        assert_eq!((config.rate_limits.register.per_second, config.rate_limits.register.burst), (0.2, 10));
        let config = load("[rate_limits.message]\nburst = 3\n", &[]).unwrap();
        assert_eq!((config.rate_limits.message.per_second, config.rate_limits.message.burst), (0.5, 3));
        assert_eq!(config.rate_limits.to_device.burst, 100, "other limits keep their defaults");
        let err = load("[rate_limits.login]\nburts = 3\n", &[]).unwrap_err();
        assert!(err.0.contains("burts"), "{err}");
    }

    #[test]
    fn the_defaults_are_valid_and_on() {
        let config = load("", &[]).unwrap();
        assert!(config.rate_limits.enabled);
        config.rate_limits.validate().unwrap();
    }

    #[test]
    fn a_limit_that_lets_nothing_through_is_refused_with_its_key() {
        for (text, key) in [
            ("[rate_limits.invite]\nburst = 0\n", "rate_limits.invite.burst"),
            ("[rate_limits.join]\nburst = -3\n", "rate_limits.join.burst"),
            ("[rate_limits.media_upload]\nburst = 5000000000\n", "rate_limits.media_upload.burst"),
            ("[rate_limits.message]\nper_second = -1.0\n", "rate_limits.message.per_second"),
            ("[rate_limits.to_device]\nper_second = 0\n", "rate_limits.to_device.per_second"),
            ("[rate_limits.login]\nper_second = nan\n", "rate_limits.login.per_second"),
            ("[rate_limits.register]\nper_second = inf\n", "rate_limits.register.per_second"),
        ] {
            let err = load(text, &[]).unwrap_err();
            assert!(err.0.contains(key), "{text}: {err}");
        }
        let err = load("", &[("MYELIN_RATE_LIMITS__MESSAGE__BURST", "0")]).unwrap_err();
        assert!(err.0.contains("rate_limits.message.burst"), "{err}");
    }
}
