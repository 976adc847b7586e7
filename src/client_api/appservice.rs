//! What application services and their users call beyond the rest of the client API: a
//! service's ping of itself through the server, and third-party lookups, which the
//! services that bridge each protocol answer.

use std::{collections::BTreeMap, sync::Arc};

use http::StatusCode;
use ruma::api::{
    client::{
        appservice::request_ping,
        thirdparty::{
            get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
            get_user_for_protocol, get_user_for_user_id,
        },
    },
    error::ErrorKind,
};
use serde_json::{Map, Value as JsonValue};

use crate::{
    appservices::{PingError, QueryError},
    http::{
        ApiError,
        router::{JsonObject, Req, Router},
    },
    services::Services,
};

pub fn routes(router: &mut Router) {
    router.ruma(ping);
    router.ruma(protocols);
    router.ruma(protocol);
    router.ruma(protocol_locations);
    router.ruma(protocol_users);
    router.ruma(alias_locations);
    router.ruma(matrix_user_users);
}

/// `POST /appservice/{id}/ping`: the server pings the service, for the service to check
/// both directions work. Only the service itself may ask.
async fn ping(
    services: Arc<Services>,
    req: Req<request_ping::v1::Request>,
) -> Result<request_ping::v1::Response, ApiError> {
    if req.auth.registered.id() != req.body.appservice_id {
        return Err(ApiError::forbidden("An application service can only ping itself"));
    }
    let transaction_id = req.body.transaction_id.as_ref().map(|id| id.as_str());
    match services.appservices.ping(&req.auth, transaction_id).await {
        Ok(ms) => Ok(request_ping::v1::Response::new(std::time::Duration::from_millis(ms))),
        Err(PingError::UrlNotSet) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::UrlNotSet,
            "The application service has no URL",
        )),
        Err(PingError::Timeout) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::ConnectionTimeout,
            "The application service did not answer in time",
        )),
        Err(PingError::ConnectionFailed(why)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::ConnectionFailed,
            format!("Cannot reach the application service: {why}"),
        )),
        Err(PingError::BadStatus { status, body }) => {
            let mut data = ruma::api::error::BadStatusErrorData::new();
            data.status = StatusCode::from_u16(status).ok();
            data.body = Some(body);
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::BadStatus(data),
                format!("The application service answered {status}"),
            ))
        }
    }
}

/// Every protocol some service bridges, with what that service says of it.
async fn protocols(
    services: Arc<Services>,
    _: Req<get_protocols::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let mut all = Map::new();
    let names: std::collections::BTreeSet<String> = services
        .appservices
        .list()
        .iter()
        .flat_map(|s| s.registered.registration.protocols.clone().unwrap_or_default())
        .collect();
    for name in names {
        let path = format!("/thirdparty/protocol/{}", encode(&name));
        // A service that cannot describe its protocol leaves it out, as Synapse does.
        if let Ok(mut answers) = services.appservices.third_party(Some(&name), &path).await
            && let Some(first) = answers.drain(..).next()
        {
            all.insert(name, first);
        }
    }
    Ok(JsonObject(JsonValue::Object(all)))
}

async fn protocol(
    services: Arc<Services>,
    req: Req<get_protocol::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let name = &req.body.protocol;
    let path = format!("/thirdparty/protocol/{}", encode(name));
    let answers = lookup(&services, Some(name), &path).await?;
    let first =
        answers.into_iter().next().ok_or_else(|| ApiError::not_found(format!("No protocol {name}")))?;
    Ok(JsonObject(first))
}

async fn protocol_locations(
    services: Arc<Services>,
    req: Req<get_location_for_protocol::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let name = &req.body.protocol;
    let path = format!("/thirdparty/location/{}{}", encode(name), query(&req.body.fields));
    Ok(JsonObject(JsonValue::Array(lookup(&services, Some(name), &path).await?)))
}

async fn protocol_users(
    services: Arc<Services>,
    req: Req<get_user_for_protocol::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let name = &req.body.protocol;
    let path = format!("/thirdparty/user/{}{}", encode(name), query(&req.body.fields));
    Ok(JsonObject(JsonValue::Array(lookup(&services, Some(name), &path).await?)))
}

async fn alias_locations(
    services: Arc<Services>,
    req: Req<get_location_for_room_alias::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let fields = BTreeMap::from([("alias".to_owned(), req.body.alias.to_string())]);
    let path = format!("/thirdparty/location{}", query(&fields));
    Ok(JsonObject(JsonValue::Array(lookup(&services, None, &path).await?)))
}

async fn matrix_user_users(
    services: Arc<Services>,
    req: Req<get_user_for_user_id::v3::Request>,
) -> Result<JsonObject, ApiError> {
    let fields = BTreeMap::from([("userid".to_owned(), req.body.userid.to_string())]);
    let path = format!("/thirdparty/user{}", query(&fields));
    Ok(JsonObject(JsonValue::Array(lookup(&services, None, &path).await?)))
}

/// A lookup asked of the services that handle `protocol` (all of them when `None`).
async fn lookup(services: &Services, protocol: Option<&str>, path: &str) -> Result<Vec<JsonValue>, ApiError> {
    match services.appservices.third_party(protocol, path).await {
        Ok(answers) => Ok(answers),
        Err(QueryError::NoService) => match protocol {
            Some(protocol) => Err(ApiError::not_found(format!("No application service bridges {protocol}"))),
            None => Ok(Vec::new()),
        },
        Err(QueryError::Failed(why)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorKind::Unknown,
            format!("The application service could not answer: {why}"),
        )),
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn query(fields: &BTreeMap<String, String>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    format!("?{}", serde_urlencoded::to_string(fields).unwrap_or_default())
}
