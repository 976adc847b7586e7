//! Sync tokens (`next_batch`, `since`). A token is the stream position a response covered
//! (`"1234"`), and, when the response had to leave to-device messages behind, the position
//! of the last one it carried (`"1234_1200"`): the next sync from it then acknowledges the
//! messages only up to there. `/messages` and `/keys/changes` accept sync tokens too; they
//! read the position.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub position: u64,
    /// The last to-device message handed out, when it is below `position`.
    pub to_device: Option<u64>,
}

impl SyncToken {
    pub fn at(position: u64) -> Self {
        Self { position, to_device: None }
    }

    /// Parses a token this server handed out; `None` for anything else.
    pub fn parse(token: &str) -> Option<Self> {
        let (position, to_device) = match token.split_once('_') {
            Some((position, to_device)) => (position, Some(to_device.parse().ok()?)),
            None => (token, None),
        };
        let position = position.parse().ok()?;
        if to_device.is_some_and(|to_device| to_device >= position) {
            return None;
        }
        Some(Self { position, to_device })
    }

    /// Every to-device message up to here reached the client that syncs from this token.
    pub fn to_device_through(&self) -> u64 {
        self.to_device.unwrap_or(self.position)
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_device {
            Some(to_device) => write!(f, "{}_{to_device}", self.position),
            None => write!(f, "{}", self.position),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SyncToken;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        for token in [SyncToken::at(7), SyncToken { position: 9, to_device: Some(4) }] {
            assert_eq!(SyncToken::parse(&token.to_string()), Some(token));
        }
        assert_eq!(SyncToken::parse("12").map(|t| t.to_device_through()), Some(12));
        assert_eq!(SyncToken::parse("12_5").map(|t| t.to_device_through()), Some(5));
        for junk in ["", "x", "12_", "_5", "12_5_1", "5_12", "5_5", "-1"] {
            assert_eq!(SyncToken::parse(junk), None, "{junk:?}");
        }
    }
}
