//! Matrix error responses (docs/architecture.md, decision 7): every failure leaves as the
//! spec's `errcode`, a sentence for people, and the right HTTP status.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use ruma::api::{
    OutgoingResponseExt,
    client::uiaa::UiaaInfo,
    error::{
        DeserializationError, Error as RumaError, ErrorBody, ErrorKind, LimitExceededErrorData, RetryAfter,
        StandardErrorBody,
    },
};

use crate::accounts;

pub type Response = http::Response<Full<Bytes>>;

#[derive(Debug)]
pub enum ApiError {
    Standard {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// A user-interactive auth challenge: status 401 with the flows as body.
    Uiaa(Box<UiaaInfo>),
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Standard { status, kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "Missing access token")
    }

    pub fn unrecognized(status: StatusCode) -> Self {
        Self::new(status, ErrorKind::Unrecognized, "Unrecognized request")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooLarge,
            format!("The request body exceeds this server's limit of {limit} bytes"),
        )
    }

    pub fn uri_too_long(limit: usize) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            ErrorKind::TooLarge,
            format!("The request URI exceeds this server's limit of {limit} bytes"),
        )
    }

    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), "Too many requests")
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "Internal server error")
    }

    /// Maps ruma's request-parsing failures onto the spec's codes: unparseable JSON is
    /// `M_NOT_JSON`, a missing field `M_MISSING_PARAM`, anything else ill-typed `M_BAD_JSON`
    /// (or `M_INVALID_PARAM` for query strings, path identifiers and headers).
    ///
    /// `body` is the request body: some ruma deserialisers stop reading at an unexpected key
    /// and then report a syntax error for JSON that is valid, so `M_NOT_JSON` is given only
    /// when the body really does not parse.
    pub fn from_deserialization(error: &DeserializationError, body: &[u8]) -> Self {
        match error {
            DeserializationError::Json(e) => match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
                    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() =>
                {
                    Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, format!("Invalid JSON: {e}"))
                }
                _ if e.to_string().starts_with("missing field") => Self::missing_param(e.to_string()),
                _ => Self::bad_json(e.to_string()),
            },
            DeserializationError::Utf8(e) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, format!("Invalid UTF-8: {e}"))
            }
            DeserializationError::Query(e) if e.to_string().starts_with("missing field") => {
                Self::missing_param(e.to_string())
            }
            other => Self::invalid_param(other.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Standard { status, .. } => *status,
            Self::Uiaa(_) => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn into_response(self) -> Response {
        match self {
            Self::Standard { status, kind, message } => {
                let retry_after = match &kind {
                    ErrorKind::LimitExceeded(LimitExceededErrorData {
                        retry_after: Some(RetryAfter::Delay(wait)),
                        ..
                    }) => Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
                    _ => None,
                };
                let error =
                    RumaError::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)));
                match error.try_into_http_response::<Vec<u8>>() {
                    Ok(mut response) => {
                        // ruma writes whole seconds rounded down, so a client that waits
                        // `Retry-After` could come back too early; Synapse rounds up.
                        if let Some(seconds) = retry_after {
                            response.headers_mut().insert(http::header::RETRY_AFTER, seconds.into());
                        }
                        response.map(|body| Full::new(Bytes::from(body)))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not serialise an error response");
                        fallback_internal_error()
                    }
                }
            }
            Self::Uiaa(info) => json_response(StatusCode::UNAUTHORIZED, &*info),
        }
    }

    /// The JSON body alone, for answers written below hyper (see `parse_errors`).
    pub fn into_json_body(self) -> Vec<u8> {
        match self {
            Self::Standard { kind, message, .. } => {
                serde_json::to_vec(&StandardErrorBody::new(kind, message)).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not serialise an error body");
                    FALLBACK_BODY.to_vec()
                })
            }
            Self::Uiaa(info) => serde_json::to_vec(&*info).unwrap_or_else(|_| FALLBACK_BODY.to_vec()),
        }
    }
}

const FALLBACK_BODY: &[u8] = br#"{"errcode":"M_UNKNOWN","error":"Internal server error"}"#;

/// A JSON response from any serialisable value (for bodies that are not ruma responses).
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .expect("static response parts are valid"),
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a response");
            fallback_internal_error()
        }
    }
}

fn fallback_internal_error() -> Response {
    http::Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(FALLBACK_BODY)))
        .expect("static response parts are valid")
}

impl From<accounts::Error> for ApiError {
    fn from(e: accounts::Error) -> Self {
        use accounts::Error as E;
        let message = e.to_string();
        match e {
            // The same words on every door: the CLI shows this message whether it reached the
            // server over the admin socket or ran on the store itself.
            E::UserInUse => Self::new(StatusCode::BAD_REQUEST, ErrorKind::UserInUse, message),
            E::Exclusive(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message),
            E::LimitExceeded(wait) => Self::limit_exceeded(wait),
            E::InvalidUsername(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername, message),
            E::UserDeactivated => Self::new(StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, message),
            E::Forbidden(_) => Self::forbidden(message),
            E::GuestAccessForbidden => {
                Self::new(StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden, message)
            }
            E::NotFound(_) => Self::not_found(message),
            E::InvalidParam(_) => Self::invalid_param(message),
            E::AuthRequired(info) => Self::Uiaa(info),
            E::UnknownToken(_) => {
                Self::new(StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(Default::default()), message)
            }
            E::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                Self::internal()
            }
        }
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error as E;
        let message = e.to_string();
        match e {
            E::NotFound(_) => Self::not_found(message),
            E::Forbidden(_) => Self::forbidden(message),
            E::BadJson(_) => Self::bad_json(message),
            E::InvalidParam(_) => Self::invalid_param(message),
            E::TooLarge(_) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message),
            E::WrongRoomKeysVersion(current) => Self::new(
                StatusCode::FORBIDDEN,
                ErrorKind::WrongRoomKeysVersion(ruma::api::error::WrongRoomKeysVersionErrorData::new(
                    current.clone(),
                )),
                format!("The newest backup version is {current}"),
            ),
            E::NotYetUploaded => Self::new(StatusCode::GATEWAY_TIMEOUT, ErrorKind::NotYetUploaded, message),
            E::CannotOverwriteMedia => {
                Self::new(StatusCode::CONFLICT, ErrorKind::CannotOverwriteMedia, message)
            }
            E::ServerManaged(_) => Self::new(StatusCode::METHOD_NOT_ALLOWED, ErrorKind::BadJson, message),
            E::RoomInUse(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::RoomInUse, message),
            E::Exclusive(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message),
            E::BadAlias(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadAlias, message),
            E::InvalidRoomState(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRoomState, message)
            }
            E::BadRequest(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message),
            E::DuplicateAnnotation(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::DuplicateAnnotation, message)
            }
            E::UnknownPos(_) => Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnknownPos, message),
            E::UnableToAuthoriseJoin(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnableToAuthorizeJoin, message)
            }
            E::UnableToGrantJoin(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnableToGrantJoin, message)
            }
            E::Federation(_) => Self::new(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message),
            E::UnsupportedRoomVersion(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion, message)
            }
            E::Internal(_) | E::Storage(_) => {
                tracing::error!(error = %message, "rooms failure");
                Self::internal()
            }
        }
    }
}
