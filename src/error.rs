//! The error type shared by the room, sync, account-data and push domains: what went
//! wrong in terms a client can be told. The HTTP layer maps each variant to an errcode.

use crate::storage::StorageError;

#[derive(Debug)]
pub enum Error {
    NotFound(String),
    /// The auth rules or a room policy refuse the action; the text says why.
    Forbidden(String),
    BadJson(String),
    InvalidParam(String),
    TooLarge(String),
    UnsupportedRoomVersion(String),
    /// Data the server manages itself was written through a generic endpoint.
    ServerManaged(String),
    /// A key backup write named a version that is not the newest; carries the newest.
    WrongRoomKeysVersion(String),
    /// Media reserved with `/create` has no content yet.
    NotYetUploaded,
    /// Content was already uploaded for this media id.
    CannotOverwriteMedia,
    /// An alias (or room id) that is already taken.
    RoomInUse(String),
    /// Reserved for an application service.
    Exclusive(String),
    /// A canonical alias event names an alias that does not point to the room.
    BadAlias(String),
    /// `createRoom` asked for initial state the auth rules refuse.
    InvalidRoomState(String),
    /// A request the spec refuses with 400 `M_UNKNOWN` (such as forgetting a joined room).
    BadRequest(String),
    /// A user reacted to an event with the same key twice.
    DuplicateAnnotation(String),
    /// A sliding sync `pos` the server does not know (any more): the client starts again.
    UnknownPos(String),
    /// A restricted join this server cannot vouch for: it has none of the rooms the join
    /// rules allow (`M_UNABLE_TO_AUTHORISE_JOIN`).
    UnableToAuthoriseJoin(String),
    /// A restricted join the user qualifies for, but no member of this server may invite
    /// them (`M_UNABLE_TO_GRANT_JOIN`): another server should be asked.
    UnableToGrantJoin(String),
    /// Another server could not be reached or refused what this one asked.
    Federation(String),
    Internal(String),
    Storage(StorageError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(m)
            | Self::Forbidden(m)
            | Self::BadJson(m)
            | Self::InvalidParam(m)
            | Self::TooLarge(m)
            | Self::UnsupportedRoomVersion(m)
            | Self::RoomInUse(m)
            | Self::Exclusive(m)
            | Self::BadAlias(m)
            | Self::InvalidRoomState(m)
            | Self::BadRequest(m)
            | Self::DuplicateAnnotation(m)
            | Self::UnableToAuthoriseJoin(m)
            | Self::UnableToGrantJoin(m)
            | Self::Federation(m)
            | Self::UnknownPos(m)
            | Self::ServerManaged(m)
            | Self::WrongRoomKeysVersion(m)
            | Self::Internal(m) => f.write_str(m),
            Self::NotYetUploaded => f.write_str("this media has not been uploaded yet"),
            Self::CannotOverwriteMedia => f.write_str("this media id already has content"),
            Self::Storage(e) => e.fmt(f),
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
