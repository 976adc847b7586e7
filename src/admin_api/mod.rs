//! The admin doors over HTTP: the command endpoint on the Unix socket (`socket`), and the
//! Synapse-compatible `/_synapse/admin` API on the client listener (`synapse`). Both are
//! thin: they end in `admin` and the domains.

mod socket;
pub mod synapse;

pub use socket::{COMMAND_PATH, router};

use crate::{admin, http::ApiError};

impl From<admin::Error> for ApiError {
    fn from(e: admin::Error) -> Self {
        match e {
            admin::Error::Accounts(e) => e.into(),
            admin::Error::Rooms(e) => e.into(),
            admin::Error::Appservices(e) => {
                use crate::appservices::Error as E;
                match e {
                    E::Invalid(why) => ApiError::invalid_param(why),
                    E::Conflict(why) => ApiError::forbidden(why),
                    E::NotFound(why) => ApiError::not_found(why),
                    E::Storage(e) => crate::error::Error::Storage(e).into(),
                }
            }
        }
    }
}
