//! Entry points for the fuzz targets in `fuzz/` (see `docs/fuzzing.md`), and for nothing
//! else: thin wrappers that hand untrusted bytes to the parsers the server runs on them,
//! the way the server does. Not part of Myelin's API.

use ruma::{
    RoomId, ServerName,
    api::{IncomingRequest, client, federation, path_builder::PathBuilder as _},
    room_version_rules::RoomVersionRules,
    state_res::Event as _,
};
use serde::Deserialize as _;
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    appservices::Registered,
    config::Config,
    federation::verify,
    http::router::{parse_failure, parse_request},
    media::preview::{html, oembed},
    pdu::Pdu,
    rooms::SUPPORTED_VERSIONS,
};

/// An application-service registration file, as an admin installs it from a bridge
/// (`app_service_config_files`): read, checked, and its namespaces asked about.
pub fn appservice_registration(text: &str) {
    let server: &ServerName = ruma::server_name!("example.org");
    let Ok(registered) = Registered::from_yaml(text, server) else { return };
    for user in [ruma::user_id!("@_bridge_alice:example.org"), ruma::user_id!("@bob:example.org")] {
        let _ = registered.owns_user(user);
        let _ = registered.claims_user_exclusively(user);
        let _ = registered.rate_limited(user);
    }
    let alias = ruma::room_alias_id!("#_bridge_room:example.org");
    let _ = registered.owns_alias(alias);
    let _ = registered.claims_alias_exclusively(alias);
    let _ = registered.owns_room(ruma::room_id!("!room:example.org"));
    let _ = registered.to_json();
}

/// A PDU as another server sends it (in a transaction, a join or an invite): the keyless
/// checks of `federation::verify` in room version `SUPPORTED_VERSIONS[version % n]`, then
/// the parse into a [`Pdu`] and the client form the rooms domain builds from it.
pub fn incoming_pdu(version: u8, json: &str) {
    let version = &SUPPORTED_VERSIONS[usize::from(version) % SUPPORTED_VERSIONS.len()];
    let rules: RoomVersionRules = version.rules().expect("supported versions have rules");
    let Ok(raw) = serde_json::from_str::<Box<RawJsonValue>>(json) else { return };
    let Ok((object, event_id)) = verify::check_format(&raw, &rules) else { return };
    // Without keys every signature fails, but the walk over the signatures is exercised;
    // a PDU whose hash is wrong is kept redacted, so redaction sees any shape too.
    let _ = ruma::signatures::required_server_signatures_to_verify_event(&object, &rules.signatures);
    let _ = ruma::signatures::verify_event(&Default::default(), &object, &rules);
    let _ = ruma::canonical_json::redact(object.clone(), &rules.redaction, None);
    let fallback_room: &RoomId = ruma::room_id!("!fallback:example.org");
    let Ok(pdu) = Pdu::from_raw(event_id, fallback_room, &raw) else { return };
    let _ = pdu.membership();
    let _ = pdu.content_json();
    let _ = pdu.client_event().to_json();
    let _ = pdu.room_id();
    let _ = pdu.redacts();
}

/// A fetched web page for a link preview: decoded in its charset (`content_type` is the
/// server's header) and read for OpenGraph data and fallbacks.
pub fn preview_html(bytes: &[u8], content_type: Option<&str>) {
    let base = reqwest::Url::parse("https://example.org/some/page.html").expect("a valid URL");
    let text = html::decode(bytes, content_type);
    let page = html::parse(&text, &base);
    let _ = page.merged(Default::default());
}

/// An oEmbed document a previewed page points to.
pub fn preview_oembed(bytes: &[u8]) {
    let base = reqwest::Url::parse("https://example.org/oembed?url=x").expect("a valid URL");
    let _ = oembed::parse(bytes, &base);
}

/// The config file's text, as `Config::load` reads it (without the environment and
/// command-line overrides): TOML, deserialised, validated.
pub fn config_toml(text: &str) {
    let Ok(table) = text.parse::<toml::Table>() else { return };
    let Ok(config) = Config::deserialize(toml::Value::Table(table)) else { return };
    let _ = config.validate();
}

/// A request as a client or server sends it, after routing: `endpoint` picks one of a
/// few ruma endpoints Myelin serves, `args` are the path parameters the router extracted
/// (as many as the endpoint's path has are used), `query` the query string. Parsed by the router's `parse_request`; a failure becomes the
/// Matrix error the client gets.
pub fn http_request(endpoint: u8, args: &[&str], query: &str, body: &[u8]) {
    macro_rules! endpoints {
        ($($n:literal => $r:ty,)*) => {
            match endpoint % ENDPOINTS {
                $($n => parse_one::<$r>(args, query, body),)*
                _ => unreachable!(),
            }
        };
    }
    const ENDPOINTS: u8 = 13;
    endpoints! {
        0 => client::session::login::v3::Request,
        1 => client::account::register::v3::Request,
        2 => client::room::create_room::v3::Request,
        3 => client::message::send_message_event::v3::Request,
        4 => client::state::send_state_event::v3::Request,
        5 => client::sync::sync_events::v3::Request,
        6 => client::filter::create_filter::v3::Request,
        7 => client::keys::upload_keys::v3::Request,
        8 => client::message::get_message_events::v3::Request,
        9 => client::push::set_pusher::v3::Request,
        10 => federation::transactions::send_transaction_message::v1::Request,
        11 => federation::membership::create_join_event::v2::Request,
        12 => federation::membership::create_invite::v2::Request,
    }
}

fn parse_one<R: IncomingRequest>(args: &[&str], query: &str, body: &[u8]) {
    let wanted = R::PATH_BUILDER.all_paths().next().map_or(0, |path| path.matches('{').count());
    let Some(args) = args.get(..wanted) else { return };
    let Ok(request) =
        http::Request::builder().method(R::METHOD).uri(format!("/_matrix/fuzz?{query}")).body(())
    else {
        return;
    };
    let (parts, ()) = request.into_parts();
    if let Err(failure) = parse_request::<R>(&parts, body, args) {
        let _ = parse_failure(failure, body);
    }
}
