//! Bad input on every endpoint family (issue #27): a sweep of the client-server API, the
//! content repository, the Synapse-compatible admin API and the federation API, checking
//! that no answer is a 5xx, that every 4xx is a JSON body whose `errcode` starts with `M_`,
//! and the codes the spec gives each kind of bad input.
//!
//! The endpoints are static tables, taken from the spec's client-server and server-server
//! OpenAPI (method, path template, authentication, the JSON body's top-level fields and
//! the query parameters, each with its type), from the routes of `src/admin_api/synapse`,
//! and a few of Myelin's own (sliding sync). An endpoint Myelin does not serve answers `404
//! M_UNRECOGNIZED` to everything, which passes; the test prints which ones those are.
//!
//! With real ids in the path (a user, room, event, device, file that exist), each endpoint
//! gets:
//! - no credentials, which doubles as the probe of whether it is served (`401
//!   M_MISSING_TOKEN` where a token is needed, `401 M_UNAUTHORIZED` where a server's
//!   signature is); a token nobody issued (`401 M_UNKNOWN_TOKEN`); a user who is not an
//!   admin on the admin API (`403 M_FORBIDDEN`); malformed and forged `X-Matrix` headers
//!   on the federation API;
//! - where a JSON body goes: `{` (`400 M_NOT_JSON`, and never accepted), `[]` and
//!   `["sweep", 1]` (never accepted where an object with fields goes: serde reads a struct
//!   from an array), an object with every field of the wrong type, `{}`, and a body over
//!   the configured limit (`413 M_TOO_LARGE`); where a file goes: an empty one, none or a
//!   bad `Content-Type`, one over the limit;
//! - the query parameters of the wrong type (invalid UTF-8 for strings), numbers at 2^53-1
//!   and at `u64::MAX`, and strings of 10 KB;
//!
//! and then with garbage in every path parameter: `!nope`, `%00`, invalid UTF-8, ids over
//! the 255-byte limit, a path over hyper's 64 KiB (`414 M_TOO_LARGE`), and well-formed ids
//! nobody has.
//!
//! Whatever the case, a 400 is never `M_UNKNOWN` (the spec has a code for each kind of bad
//! input), valid JSON is never `M_NOT_JSON`, a 404 is `M_NOT_FOUND` or `M_UNRECOGNIZED`, a
//! 401 carries a token or signature code or is a user-interactive auth challenge (which
//! has `flows` and no `errcode`), and 413 and 414 are `M_TOO_LARGE`.
//!
//! Requests that could end the sweep's own session or the ids it uses (logout, leave,
//! deactivate, the admin API's deletions) run last, one at a time, with a fresh login.
//!
//! Every failure is collected and the test fails once with the whole list. A finding not
//! fixed yet goes in [`KNOWN`] with its reason, and is then printed instead of failed.
//! `BAD_INPUT_SWEEP_DUMP=/tmp/sweep` writes every request and answer to
//! `/tmp/sweep-<API>`.

use std::{
    collections::{HashMap, HashSet},
    io::Cursor,
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use image::{ImageFormat, Rgb, RgbImage};
use spec_tests::{Client, Server, Value, admin_api::admin_client, enc, json, rooms::PASSWORD};

/// The body limit the sweep's servers run with, and the upload limit of the media sweep.
const LIMIT: usize = 4096;

/// Small bodies, so that "too large" is cheap to send; no rate limits, since the sweep
/// sends thousands of requests from one address as fast as the server answers.
const SWEEP_CONFIG: &str = "[limits]\nmax_request_bytes = 4096\n[rate_limits]\nenabled = false\n\
    [federation]\nenabled = true\n[log]\nlevel = \"info\"\n";

/// The federation transaction route has a limit of its own (8 MiB), not the configured one.
const TRANSACTION_LIMIT: usize = 8 * 1024 * 1024;

/// Requests in flight at once: enough to keep both cores busy, few enough that a slow
/// answer is the server's and not the queue's.
const CONCURRENCY: usize = 8;

/// How long one answer may take. Nothing the sweep sends should long-poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Findings not fixed yet: (method, path template, part of the case label or `*`, the
/// status, why). A failure that matches is printed, not failed. Keep each reason current and
/// remove the entry with the fix.
const KNOWN: &[(&str, &str, &str, u16, &str)] = &[];

const THUMBNAIL_32: &str = "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=32&height=32";
const THUMBNAIL_HUGE: &str =
    "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=100000&height=100000&method=scale";
const LEGACY_THUMBNAIL_32: &str =
    "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}?width=32&height=32&method=crop";

/// Who may call an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    /// Anyone; a token, if sent, may be ignored.
    Public,
    /// A user's access token if the caller has one (`/versions`, UIA endpoints).
    Optional,
    /// A user's access token.
    User,
    /// An application service's `as_token`.
    Appservice,
    /// A server admin's access token (`/_synapse/admin`).
    Admin,
    /// Another server, by the `X-Matrix` signature of the request.
    Server,
}

const PUB: Auth = Auth::Public;
const OPT: Auth = Auth::Optional;
const USER: Auth = Auth::User;
const AS: Auth = Auth::Appservice;
const ADMIN: Auth = Auth::Admin;
const SERVER: Auth = Auth::Server;

/// One endpoint of the table.
struct Endpoint {
    method: &'static str,
    /// The path, `{name}` for each parameter.
    path: &'static str,
    auth: Auth,
    /// `None` without a body; [`BYTES`] for a file upload; else the JSON object's top-level
    /// fields as `name:type` (`s` string, `i` number, `b` boolean, `o` object, `a` array),
    /// comma-separated, empty when no field is known.
    body: Option<&'static str>,
    /// The query parameters, `name:type` as for the body.
    query: &'static str,
}

const BYTES: &str = "#bytes";

const fn ep(
    method: &'static str,
    path: &'static str,
    auth: Auth,
    body: Option<&'static str>,
    query: &'static str,
) -> Endpoint {
    Endpoint { method, path, auth, body, query }
}

const EMAIL_TOKEN: &str = "client_secret:s,email:s,send_attempt:i,next_link:s,id_server:s,id_access_token:s";
const MSISDN_TOKEN: &str =
    "client_secret:s,country:s,phone_number:s,send_attempt:i,next_link:s,id_server:s,id_access_token:s";
const THREEPID: &str = "id_server:s,medium:s,address:s";
const RELATIONS_QUERY: &str = "from:s,to:s,limit:i,dir:s,recurse:b";

/// The client-server API (spec `data/api/client-server`), without the content repository.
/// `{stateEventType}` is `{eventType}` of the state endpoints, so that the real value there
/// is a state event type.
const CLIENT_ENDPOINTS: &[Endpoint] = &[
    // Discovery, capabilities.
    ep("GET", "/_matrix/client/versions", OPT, None, ""),
    ep("GET", "/.well-known/matrix/client", PUB, None, ""),
    ep("GET", "/.well-known/matrix/support", PUB, None, ""),
    ep("GET", "/.well-known/matrix/policy_server", PUB, None, ""),
    ep("GET", "/_matrix/client/v1/auth_metadata", PUB, None, ""),
    ep("GET", "/_matrix/client/v3/capabilities", USER, None, ""),
    // Login, logout, registration.
    ep("GET", "/_matrix/client/v3/login", PUB, None, ""),
    ep(
        "POST",
        "/_matrix/client/v3/login",
        PUB,
        Some(
            "type:s,identifier:o,user:s,medium:s,address:s,password:s,token:s,device_id:s,\
             initial_device_display_name:s,refresh_token:b",
        ),
        "",
    ),
    ep("POST", "/_matrix/client/v1/login/get_token", USER, Some("auth:o"), ""),
    ep("GET", "/_matrix/client/v3/login/sso/redirect", PUB, None, "redirectUrl:s,action:s"),
    ep("GET", "/_matrix/client/v3/login/sso/redirect/{idpId}", PUB, None, "redirectUrl:s,action:s"),
    ep("POST", "/_matrix/client/v3/refresh", PUB, Some("refresh_token:s"), ""),
    ep("POST", "/_matrix/client/v3/logout", USER, None, ""),
    ep("POST", "/_matrix/client/v3/logout/all", USER, None, ""),
    ep(
        "POST",
        "/_matrix/client/v3/register",
        PUB,
        Some(
            "auth:o,username:s,password:s,device_id:s,initial_device_display_name:s,inhibit_login:b,refresh_token:b",
        ),
        "kind:s",
    ),
    ep("POST", "/_matrix/client/v3/register/email/requestToken", PUB, Some(EMAIL_TOKEN), ""),
    ep("POST", "/_matrix/client/v3/register/msisdn/requestToken", PUB, Some(MSISDN_TOKEN), ""),
    ep("GET", "/_matrix/client/v3/register/available", PUB, None, "username:s"),
    ep("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", PUB, None, "token:s"),
    // Account.
    ep("GET", "/_matrix/client/v3/account/whoami", USER, None, ""),
    ep(
        "POST",
        "/_matrix/client/v3/account/password",
        OPT,
        Some("new_password:s,logout_devices:b,auth:o"),
        "",
    ),
    ep("POST", "/_matrix/client/v3/account/password/email/requestToken", PUB, Some(EMAIL_TOKEN), ""),
    ep("POST", "/_matrix/client/v3/account/password/msisdn/requestToken", PUB, Some(MSISDN_TOKEN), ""),
    ep("POST", "/_matrix/client/v3/account/deactivate", OPT, Some("auth:o,id_server:s,erase:b"), ""),
    // Third-party ids.
    ep("GET", "/_matrix/client/v3/account/3pid", USER, None, ""),
    ep("POST", "/_matrix/client/v3/account/3pid", USER, Some("three_pid_creds:o"), ""),
    ep("POST", "/_matrix/client/v3/account/3pid/add", USER, Some("auth:o,client_secret:s,sid:s"), ""),
    ep(
        "POST",
        "/_matrix/client/v3/account/3pid/bind",
        USER,
        Some("client_secret:s,id_server:s,id_access_token:s,sid:s"),
        "",
    ),
    ep("POST", "/_matrix/client/v3/account/3pid/delete", USER, Some(THREEPID), ""),
    ep("POST", "/_matrix/client/v3/account/3pid/unbind", USER, Some(THREEPID), ""),
    ep("POST", "/_matrix/client/v3/account/3pid/email/requestToken", PUB, Some(EMAIL_TOKEN), ""),
    ep("POST", "/_matrix/client/v3/account/3pid/msisdn/requestToken", PUB, Some(MSISDN_TOKEN), ""),
    // Administration, as clients see it.
    ep("GET", "/_matrix/client/v3/admin/whois/{userId}", USER, None, ""),
    ep("GET", "/_matrix/client/v1/admin/suspend/{userId}", USER, None, ""),
    ep("PUT", "/_matrix/client/v1/admin/suspend/{userId}", USER, Some("suspended:b"), ""),
    ep("GET", "/_matrix/client/v1/admin/lock/{userId}", USER, None, ""),
    ep("PUT", "/_matrix/client/v1/admin/lock/{userId}", USER, Some("locked:b"), ""),
    // Profile.
    ep("GET", "/_matrix/client/v3/profile/{userId}", PUB, None, ""),
    ep("GET", "/_matrix/client/v3/profile/{userId}/{keyName}", PUB, None, ""),
    ep("PUT", "/_matrix/client/v3/profile/{userId}/{keyName}", USER, Some("displayname:s"), ""),
    ep("DELETE", "/_matrix/client/v3/profile/{userId}/{keyName}", USER, None, ""),
    // Devices.
    ep("GET", "/_matrix/client/v3/devices", USER, None, ""),
    ep("GET", "/_matrix/client/v3/devices/{deviceId}", USER, None, ""),
    ep("PUT", "/_matrix/client/v3/devices/{deviceId}", USER, Some("display_name:s"), ""),
    ep("DELETE", "/_matrix/client/v3/devices/{deviceId}", USER, Some("auth:o"), ""),
    ep("POST", "/_matrix/client/v3/delete_devices", USER, Some("devices:a,auth:o"), ""),
    // Rooms: creation, membership.
    ep(
        "POST",
        "/_matrix/client/v3/createRoom",
        USER,
        Some(
            "visibility:s,room_alias_name:s,name:s,topic:s,invite:a,invite_3pid:a,room_version:s,\
             creation_content:o,initial_state:a,preset:s,is_direct:b,power_level_content_override:o",
        ),
        "",
    ),
    ep("GET", "/_matrix/client/v3/joined_rooms", USER, None, ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/join", USER, Some("third_party_signed:o,reason:s"), ""),
    ep(
        "POST",
        "/_matrix/client/v3/join/{roomIdOrAlias}",
        USER,
        Some("third_party_signed:o,reason:s"),
        "via:a",
    ),
    ep("POST", "/_matrix/client/v3/knock/{roomIdOrAlias}", USER, Some("reason:s"), "via:a"),
    ep(
        "POST",
        "/_matrix/client/v3/rooms/{roomId}/invite",
        USER,
        Some("user_id:s,reason:s,id_server:s,id_access_token:s,medium:s,address:s"),
        "",
    ),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/kick", USER, Some("user_id:s,reason:s"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/ban", USER, Some("user_id:s,reason:s"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/unban", USER, Some("user_id:s,reason:s"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/leave", USER, Some("reason:s"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/forget", USER, None, ""),
    // Rooms: events and state.
    ep(
        "PUT",
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
        USER,
        Some("msgtype:s,body:s"),
        "",
    ),
    ep(
        "PUT",
        "/_matrix/client/v3/rooms/{roomId}/state/{stateEventType}/{stateKey}",
        USER,
        Some("topic:s"),
        "",
    ),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/state/{stateEventType}/{stateKey}", USER, None, "format:s"),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/state", USER, None, ""),
    ep("PUT", "/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}", USER, Some("reason:s"), ""),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/event/{eventId}", USER, None, ""),
    ep(
        "GET",
        "/_matrix/client/v3/rooms/{roomId}/messages?dir=b",
        USER,
        None,
        "from:s,to:s,dir:s,limit:i,filter:s",
    ),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/context/{eventId}", USER, None, "limit:i,filter:s"),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/members", USER, None, "at:s,membership:s,not_membership:s"),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/joined_members", USER, None, ""),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/initialSync", USER, None, ""),
    ep("GET", "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=0&dir=f", USER, None, "ts:i,dir:s"),
    ep(
        "POST",
        "/_matrix/client/v3/rooms/{roomId}/upgrade",
        USER,
        Some("new_version:s,additional_creators:a"),
        "",
    ),
    // Receipts, read markers, typing, reports.
    ep(
        "POST",
        "/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}",
        USER,
        Some("thread_id:s"),
        "",
    ),
    ep(
        "POST",
        "/_matrix/client/v3/rooms/{roomId}/read_markers",
        USER,
        Some("m.fully_read:s,m.read:s,m.read.private:s"),
        "",
    ),
    ep("PUT", "/_matrix/client/v3/rooms/{roomId}/typing/{userId}", USER, Some("typing:b,timeout:i"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/report", USER, Some("reason:s"), ""),
    ep("POST", "/_matrix/client/v3/rooms/{roomId}/report/{eventId}", USER, Some("reason:s,score:i"), ""),
    ep("POST", "/_matrix/client/v3/users/{userId}/report", USER, Some("reason:s"), ""),
    // Relations, threads, spaces.
    ep("GET", "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", USER, None, RELATIONS_QUERY),
    ep("GET", "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", USER, None, RELATIONS_QUERY),
    ep(
        "GET",
        "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
        USER,
        None,
        RELATIONS_QUERY,
    ),
    ep("GET", "/_matrix/client/v1/rooms/{roomId}/threads", USER, None, "include:s,limit:i,from:s"),
    ep(
        "GET",
        "/_matrix/client/v1/rooms/{roomId}/hierarchy",
        USER,
        None,
        "suggested_only:b,limit:i,max_depth:i,from:s",
    ),
    ep("GET", "/_matrix/client/v1/room_summary/{roomIdOrAlias}", PUB, None, "via:a"),
    // Aliases and the room directory.
    ep("PUT", "/_matrix/client/v3/directory/room/{roomAlias}", USER, Some("room_id:s"), ""),
    ep("GET", "/_matrix/client/v3/directory/room/{roomAlias}", PUB, None, ""),
    ep("DELETE", "/_matrix/client/v3/directory/room/{roomAlias}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/rooms/{roomId}/aliases", USER, None, ""),
    ep("GET", "/_matrix/client/v3/directory/list/room/{roomId}", PUB, None, ""),
    ep("PUT", "/_matrix/client/v3/directory/list/room/{roomId}", USER, Some("visibility:s"), ""),
    ep(
        "PUT",
        "/_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}",
        AS,
        Some("visibility:s"),
        "",
    ),
    ep("GET", "/_matrix/client/v3/publicRooms", PUB, None, "limit:i,since:s,server:s"),
    ep(
        "POST",
        "/_matrix/client/v3/publicRooms",
        USER,
        Some("limit:i,since:s,filter:o,include_all_networks:b,third_party_instance_id:s"),
        "server:s",
    ),
    // Sync, filters, the old event stream.
    ep(
        "GET",
        "/_matrix/client/v3/sync",
        USER,
        None,
        "filter:s,since:s,full_state:b,set_presence:s,timeout:i,use_state_after:b",
    ),
    ep(
        "POST",
        "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
        USER,
        Some("conn_id:s,txn_id:s,lists:o,room_subscriptions:o,extensions:o"),
        "pos:s,timeout:i,set_presence:s",
    ),
    ep(
        "POST",
        "/_matrix/client/v3/user/{userId}/filter",
        USER,
        Some("event_fields:a,event_format:s,presence:o,account_data:o,room:o"),
        "",
    ),
    ep("GET", "/_matrix/client/v3/user/{userId}/filter/{filterId}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/events", USER, None, "from:s,timeout:i,room_id:s"),
    ep("GET", "/_matrix/client/v3/events/{eventId}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/initialSync", USER, None, "limit:i,archived:b"),
    // Account data and tags.
    ep("PUT", "/_matrix/client/v3/user/{userId}/account_data/{type}", USER, Some("ignored_users:o"), ""),
    ep("GET", "/_matrix/client/v3/user/{userId}/account_data/{type}", USER, None, ""),
    ep(
        "PUT",
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        USER,
        Some("ignored_users:o"),
        "",
    ),
    ep("GET", "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags", USER, None, ""),
    ep("PUT", "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}", USER, Some("order:i"), ""),
    ep("DELETE", "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}", USER, None, ""),
    // Presence.
    ep("PUT", "/_matrix/client/v3/presence/{userId}/status", USER, Some("presence:s,status_msg:s"), ""),
    ep("GET", "/_matrix/client/v3/presence/{userId}/status", USER, None, ""),
    // End-to-end encryption: keys, cross-signing, to-device, backup.
    ep(
        "POST",
        "/_matrix/client/v3/keys/upload",
        USER,
        Some("device_keys:o,one_time_keys:o,fallback_keys:o"),
        "",
    ),
    ep("POST", "/_matrix/client/v3/keys/query", USER, Some("timeout:i,device_keys:o"), ""),
    ep("POST", "/_matrix/client/v3/keys/claim", USER, Some("timeout:i,one_time_keys:o"), ""),
    ep("GET", "/_matrix/client/v3/keys/changes", USER, None, "from:s,to:s"),
    ep(
        "POST",
        "/_matrix/client/v3/keys/device_signing/upload",
        USER,
        Some("master_key:o,self_signing_key:o,user_signing_key:o,auth:o"),
        "",
    ),
    // The body maps user ids to objects: `name:type` splits at the last colon.
    ep("POST", "/_matrix/client/v3/keys/signatures/upload", USER, Some("@alice:localhost:o"), ""),
    ep("PUT", "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}", USER, Some("messages:o"), ""),
    ep("POST", "/_matrix/client/v3/room_keys/version", USER, Some("algorithm:s,auth_data:o"), ""),
    ep("GET", "/_matrix/client/v3/room_keys/version", USER, None, ""),
    ep("GET", "/_matrix/client/v3/room_keys/version/{version}", USER, None, ""),
    ep(
        "PUT",
        "/_matrix/client/v3/room_keys/version/{version}",
        USER,
        Some("algorithm:s,auth_data:o,version:s"),
        "",
    ),
    ep(
        "PUT",
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}?version={version}",
        USER,
        Some("first_message_index:i,forwarded_count:i,is_verified:b,session_data:o"),
        "version:s",
    ),
    ep(
        "GET",
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}?version={version}",
        USER,
        None,
        "version:s",
    ),
    ep(
        "DELETE",
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}?version={version}",
        USER,
        None,
        "version:s",
    ),
    ep(
        "PUT",
        "/_matrix/client/v3/room_keys/keys/{roomId}?version={version}",
        USER,
        Some("sessions:o"),
        "version:s",
    ),
    ep("GET", "/_matrix/client/v3/room_keys/keys/{roomId}?version={version}", USER, None, "version:s"),
    ep("DELETE", "/_matrix/client/v3/room_keys/keys/{roomId}?version={version}", USER, None, "version:s"),
    ep("PUT", "/_matrix/client/v3/room_keys/keys?version={version}", USER, Some("rooms:o"), "version:s"),
    ep("GET", "/_matrix/client/v3/room_keys/keys?version={version}", USER, None, "version:s"),
    ep("DELETE", "/_matrix/client/v3/room_keys/keys?version={version}", USER, None, "version:s"),
    ep("DELETE", "/_matrix/client/v3/room_keys/version/{version}", USER, None, ""),
    // Push.
    ep("GET", "/_matrix/client/v3/pushers", USER, None, ""),
    ep(
        "POST",
        "/_matrix/client/v3/pushers/set",
        USER,
        Some(
            "pushkey:s,kind:s,app_id:s,app_display_name:s,device_display_name:s,profile_tag:s,lang:s,\
             data:o,append:b",
        ),
        "",
    ),
    ep("GET", "/_matrix/client/v3/pushrules/", USER, None, ""),
    ep("GET", "/_matrix/client/v3/pushrules/global/", USER, None, ""),
    ep("GET", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}", USER, None, ""),
    ep(
        "PUT",
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
        USER,
        Some("actions:a,conditions:a,pattern:s"),
        "before:s,after:s",
    ),
    ep("GET", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled", USER, None, ""),
    ep("PUT", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled", USER, Some("enabled:b"), ""),
    ep("GET", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions", USER, None, ""),
    ep("PUT", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions", USER, Some("actions:a"), ""),
    ep("DELETE", "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/notifications", USER, None, "from:s,limit:i,only:s"),
    // Search, user directory, third-party lookups.
    ep("POST", "/_matrix/client/v3/search", USER, Some("search_categories:o"), "next_batch:s"),
    ep("POST", "/_matrix/client/v3/user_directory/search", USER, Some("search_term:s,limit:i"), ""),
    ep("GET", "/_matrix/client/v1/mutual_rooms", USER, None, "user_id:s,from:s"),
    ep("GET", "/_matrix/client/v3/thirdparty/protocols", USER, None, ""),
    ep("GET", "/_matrix/client/v3/thirdparty/protocol/{protocol}", USER, None, ""),
    ep("GET", "/_matrix/client/v3/thirdparty/location/{protocol}", USER, None, "fields:o"),
    ep("GET", "/_matrix/client/v3/thirdparty/user/{protocol}", USER, None, "fields:o"),
    ep("GET", "/_matrix/client/v3/thirdparty/location", USER, None, "alias:s"),
    ep("GET", "/_matrix/client/v3/thirdparty/user", USER, None, "userid:s"),
    // VoIP, OpenID, application services.
    ep("GET", "/_matrix/client/v3/voip/turnServer", USER, None, ""),
    ep("POST", "/_matrix/client/v3/user/{userId}/openid/request_token", USER, Some(""), ""),
    ep("POST", "/_matrix/client/v1/appservice/{appserviceId}/ping", AS, Some("transaction_id:s"), ""),
];

/// Client requests that can end the sweep user's session or membership: run last, one at
/// a time, each with a fresh login, in this order.
const CLIENT_DESTRUCTIVE: &[(&str, &str)] = &[
    ("POST", "/_matrix/client/v3/rooms/{roomId}/leave"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/forget"),
    ("POST", "/_matrix/client/v3/account/deactivate"),
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/v3/logout/all"),
];

/// The content repository: the legacy `/_matrix/media/v3` paths and the authenticated
/// `/_matrix/client/v1/media` ones.
const MEDIA_ENDPOINTS: &[Endpoint] = &[
    ep("POST", "/_matrix/media/v3/upload", USER, Some(BYTES), "filename:s"),
    ep("PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}", USER, Some(BYTES), "filename:s"),
    ep("POST", "/_matrix/media/v1/create", USER, None, ""),
    ep(
        "GET",
        "/_matrix/media/v3/download/{serverName}/{mediaId}",
        PUB,
        None,
        "allow_remote:b,timeout_ms:i,allow_redirect:b",
    ),
    ep(
        "GET",
        "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}",
        PUB,
        None,
        "allow_remote:b,timeout_ms:i,allow_redirect:b",
    ),
    ep(
        "GET",
        "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}",
        PUB,
        None,
        "width:i,height:i,method:s,allow_remote:b,timeout_ms:i,allow_redirect:b,animated:b",
    ),
    ep("GET", "/_matrix/media/v3/preview_url", USER, None, "url:s,ts:i"),
    ep("GET", "/_matrix/media/v3/config", USER, None, ""),
    ep("GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}", USER, None, "timeout_ms:i"),
    ep(
        "GET",
        "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}",
        USER,
        None,
        "timeout_ms:i",
    ),
    ep(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}",
        USER,
        None,
        "width:i,height:i,method:s,timeout_ms:i,animated:b",
    ),
    ep("GET", "/_matrix/client/v1/media/preview_url", USER, None, "url:s,ts:i"),
    ep("GET", "/_matrix/client/v1/media/config", USER, None, ""),
    // Thumbnails with sizes that get as far as the image code: none, huge, negative, and
    // an unknown method.
    ep("GET", THUMBNAIL_32, USER, None, THUMBNAIL),
    ep("GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=0&height=0", USER, None, ""),
    ep("GET", THUMBNAIL_HUGE, USER, None, ""),
    ep(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=-5&height=10&method=crop",
        USER,
        None,
        "",
    ),
    ep(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}?width=32&height=32&method=bogus&animated=true",
        USER,
        None,
        "",
    ),
    ep("GET", LEGACY_THUMBNAIL_32, PUB, None, ""),
    // Thumbnails of a file that is not an image, and of one that claims to be a PNG.
    ep(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{serverName}/{textMediaId}?width=32&height=32",
        USER,
        None,
        "",
    ),
    ep(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{serverName}/{brokenMediaId}?width=32&height=32",
        USER,
        None,
        "",
    ),
    ep("GET", "/_matrix/client/v1/media/download/{serverName}/{brokenMediaId}/{fileName}", USER, None, ""),
    // Previews of what is not a web page, or is one nobody may fetch (loopback is refused
    // before any connection is made).
    ep("GET", "/_matrix/client/v1/media/preview_url?url=notaurl", USER, None, ""),
    ep("GET", "/_matrix/client/v1/media/preview_url?url=file%3A%2F%2F%2Fetc%2Fpasswd", USER, None, ""),
    ep("GET", "/_matrix/client/v1/media/preview_url?url=http%3A%2F%2F127.0.0.1%3A1%2F", USER, None, ""),
    ep("GET", "/_matrix/media/v3/preview_url?url=%00", USER, None, ""),
];

const THUMBNAIL: &str = "width:i,height:i,method:s,timeout_ms:i,animated:b";

const ADMIN_LIST_QUERY: &str = "from:i,limit:i,dir:s,order_by:s";

/// The Synapse-compatible admin API, as `src/admin_api/synapse` routes it.
const ADMIN_ENDPOINTS: &[Endpoint] = &[
    ep("GET", "/_synapse/admin/v1/server_version", PUB, None, ""),
    ep("GET", "/_synapse/admin/v1/register", PUB, None, ""),
    ep(
        "POST",
        "/_synapse/admin/v1/register",
        PUB,
        Some("nonce:s,username:s,password:s,mac:s,admin:b,user_type:s,displayname:s"),
        "",
    ),
    // Users.
    ep(
        "GET",
        "/_synapse/admin/v2/users",
        ADMIN,
        None,
        "from:i,limit:i,user_id:s,name:s,deactivated:b,admins:b,order_by:s,dir:s",
    ),
    ep("GET", "/_synapse/admin/v2/users/{user_id}", ADMIN, None, ""),
    ep(
        "PUT",
        "/_synapse/admin/v2/users/{user_id}",
        ADMIN,
        Some("password:s,logout_devices:b,displayname:s,avatar_url:s,admin:b,deactivated:b"),
        "",
    ),
    ep("POST", "/_synapse/admin/v1/deactivate/{user_id}", ADMIN, Some("erase:b"), ""),
    ep(
        "POST",
        "/_synapse/admin/v1/reset_password/{user_id}",
        ADMIN,
        Some("new_password:s,logout_devices:b"),
        "",
    ),
    ep("GET", "/_synapse/admin/v1/whois/{user_id}", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/users/{user_id}/joined_rooms", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/users/{user_id}/memberships", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/users/{user_id}/pushers", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/username_available", ADMIN, None, "username:s"),
    ep("GET", "/_synapse/admin/v1/users/{user_id}/admin", ADMIN, None, ""),
    ep("PUT", "/_synapse/admin/v1/users/{user_id}/admin", ADMIN, Some("admin:b"), ""),
    ep("POST", "/_synapse/admin/v1/users/{user_id}/shadow_ban", ADMIN, None, ""),
    ep("DELETE", "/_synapse/admin/v1/users/{user_id}/shadow_ban", ADMIN, None, ""),
    // Devices.
    ep("GET", "/_synapse/admin/v2/users/{user_id}/devices", ADMIN, None, ""),
    ep("POST", "/_synapse/admin/v2/users/{user_id}/delete_devices", ADMIN, Some("devices:a"), ""),
    ep("GET", "/_synapse/admin/v2/users/{user_id}/devices/{device_id}", ADMIN, None, ""),
    ep("PUT", "/_synapse/admin/v2/users/{user_id}/devices/{device_id}", ADMIN, Some("display_name:s"), ""),
    ep("DELETE", "/_synapse/admin/v2/users/{user_id}/devices/{device_id}", ADMIN, None, ""),
    // Registration tokens.
    ep("GET", "/_synapse/admin/v1/registration_tokens", ADMIN, None, "valid:b"),
    ep(
        "POST",
        "/_synapse/admin/v1/registration_tokens/new",
        ADMIN,
        Some("token:s,length:i,uses_allowed:i,expiry_time:i"),
        "",
    ),
    ep("GET", "/_synapse/admin/v1/registration_tokens/{token}", ADMIN, None, ""),
    ep(
        "PUT",
        "/_synapse/admin/v1/registration_tokens/{token}",
        ADMIN,
        Some("uses_allowed:i,expiry_time:i"),
        "",
    ),
    ep("DELETE", "/_synapse/admin/v1/registration_tokens/{token}", ADMIN, None, ""),
    // Rooms.
    ep(
        "GET",
        "/_synapse/admin/v1/rooms",
        ADMIN,
        None,
        "from:i,limit:i,order_by:s,dir:s,search_term:s,public_rooms:b,empty_rooms:b",
    ),
    ep("GET", "/_synapse/admin/v1/rooms/{room_id}", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/rooms/{room_id}/members", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/rooms/{room_id}/state", ADMIN, None, "type:s"),
    ep("POST", "/_synapse/admin/v1/rooms/{room_id}/make_room_admin", ADMIN, Some("user_id:s"), ""),
    ep("GET", "/_synapse/admin/v2/rooms/{room_id}/delete_status", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v2/rooms/delete_status/{delete_id}", ADMIN, None, ""),
    ep("GET", "/_synapse/admin/v1/rooms/{room_id}/block", ADMIN, None, ""),
    ep("PUT", "/_synapse/admin/v1/rooms/{room_id}/block", ADMIN, Some("block:b"), ""),
    ep(
        "DELETE",
        "/_synapse/admin/v2/rooms/{room_id}",
        ADMIN,
        Some("new_room_user_id:s,room_name:s,message:s,block:b,purge:b,force_purge:b"),
        "",
    ),
    ep(
        "DELETE",
        "/_synapse/admin/v1/rooms/{room_id}",
        ADMIN,
        Some("new_room_user_id:s,room_name:s,message:s,block:b,purge:b,force_purge:b"),
        "",
    ),
    // Reports.
    ep(
        "GET",
        "/_synapse/admin/v1/event_reports",
        ADMIN,
        None,
        "from:i,limit:i,dir:s,user_id:s,room_id:s,event_sender_user_id:s",
    ),
    ep("GET", "/_synapse/admin/v1/event_reports/{report_id}", ADMIN, None, ""),
    ep("DELETE", "/_synapse/admin/v1/event_reports/{report_id}", ADMIN, None, ""),
    // Media.
    ep("GET", "/_synapse/admin/v1/users/{user_id}/media", ADMIN, None, ADMIN_LIST_QUERY),
    ep("POST", "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}", ADMIN, None, ""),
    ep("POST", "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}", ADMIN, None, ""),
    ep("DELETE", "/_synapse/admin/v1/media/{server_name}/{media_id}", ADMIN, None, ""),
];

/// Admin requests that change or delete what other cases use: run last, one at a time,
/// in this order (the room and the user go last).
const ADMIN_DESTRUCTIVE: &[(&str, &str)] = &[
    ("POST", "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}"),
    ("POST", "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}"),
    ("DELETE", "/_synapse/admin/v1/media/{server_name}/{media_id}"),
    ("DELETE", "/_synapse/admin/v1/event_reports/{report_id}"),
    ("DELETE", "/_synapse/admin/v1/registration_tokens/{token}"),
    ("PUT", "/_synapse/admin/v2/users/{user_id}/devices/{device_id}"),
    ("DELETE", "/_synapse/admin/v2/users/{user_id}/devices/{device_id}"),
    ("POST", "/_synapse/admin/v2/users/{user_id}/delete_devices"),
    ("POST", "/_synapse/admin/v1/users/{user_id}/shadow_ban"),
    ("DELETE", "/_synapse/admin/v1/users/{user_id}/shadow_ban"),
    ("PUT", "/_synapse/admin/v1/users/{user_id}/admin"),
    ("PUT", "/_synapse/admin/v2/users/{user_id}"),
    ("POST", "/_synapse/admin/v1/reset_password/{user_id}"),
    ("POST", "/_synapse/admin/v1/rooms/{room_id}/make_room_admin"),
    ("PUT", "/_synapse/admin/v1/rooms/{room_id}/block"),
    ("DELETE", "/_synapse/admin/v2/rooms/{room_id}"),
    ("DELETE", "/_synapse/admin/v1/rooms/{room_id}"),
    ("POST", "/_synapse/admin/v1/deactivate/{user_id}"),
];

const PDU_FIELDS: &str =
    "sender:s,origin:s,origin_server_ts:i,type:s,state_key:s,content:o,room_id:s,depth:i";

/// The server-server API (spec `data/api/server-server`, and the paths ruma gives the
/// types `src/federation_api` routes).
const FEDERATION_ENDPOINTS: &[Endpoint] = &[
    ep("GET", "/.well-known/matrix/server", PUB, None, ""),
    ep("GET", "/_matrix/federation/v1/version", PUB, None, ""),
    ep("GET", "/_matrix/key/v2/server", PUB, None, ""),
    ep("GET", "/_matrix/key/v2/query/{serverName}", PUB, None, "minimum_valid_until_ts:i"),
    ep("POST", "/_matrix/key/v2/query", PUB, Some("server_keys:o"), ""),
    ep("GET", "/_matrix/federation/v1/openid/userinfo", PUB, None, "access_token:s"),
    ep(
        "PUT",
        "/_matrix/federation/v1/send/{txnId}",
        SERVER,
        Some("origin:s,origin_server_ts:i,pdus:a,edus:a"),
        "",
    ),
    ep("GET", "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", SERVER, None, ""),
    ep("GET", "/_matrix/federation/v1/backfill/{roomId}", SERVER, None, "v:a,limit:i"),
    ep(
        "POST",
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        SERVER,
        Some("limit:i,min_depth:i,earliest_events:a,latest_events:a"),
        "",
    ),
    ep("GET", "/_matrix/federation/v1/state/{roomId}", SERVER, None, "event_id:s"),
    ep("GET", "/_matrix/federation/v1/state_ids/{roomId}", SERVER, None, "event_id:s"),
    ep("GET", "/_matrix/federation/v1/event/{eventId}", SERVER, None, ""),
    ep("GET", "/_matrix/federation/v1/timestamp_to_event/{roomId}", SERVER, None, "ts:i,dir:s"),
    ep("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", SERVER, None, "ver:a"),
    ep("PUT", "/_matrix/federation/v1/send_join/{roomId}/{eventId}", SERVER, Some(PDU_FIELDS), ""),
    ep(
        "PUT",
        "/_matrix/federation/v2/send_join/{roomId}/{eventId}",
        SERVER,
        Some(PDU_FIELDS),
        "omit_members:b",
    ),
    ep("GET", "/_matrix/federation/v1/make_knock/{roomId}/{userId}", SERVER, None, "ver:a"),
    ep("PUT", "/_matrix/federation/v1/send_knock/{roomId}/{eventId}", SERVER, Some(PDU_FIELDS), ""),
    ep("GET", "/_matrix/federation/v1/make_leave/{roomId}/{userId}", SERVER, None, ""),
    ep("PUT", "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", SERVER, Some(PDU_FIELDS), ""),
    ep("PUT", "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", SERVER, Some(PDU_FIELDS), ""),
    ep("PUT", "/_matrix/federation/v1/invite/{roomId}/{eventId}", SERVER, Some(PDU_FIELDS), ""),
    ep(
        "PUT",
        "/_matrix/federation/v2/invite/{roomId}/{eventId}",
        SERVER,
        Some("room_version:s,event:o,invite_room_state:a"),
        "",
    ),
    ep(
        "PUT",
        "/_matrix/federation/v1/exchange_third_party_invite/{roomId}",
        SERVER,
        Some("type:s,room_id:s,sender:s,state_key:s,content:o"),
        "",
    ),
    ep("PUT", "/_matrix/federation/v1/3pid/onbind", SERVER, Some("medium:s,address:s,mxid:s,invites:a"), ""),
    ep("GET", "/_matrix/federation/v1/publicRooms", SERVER, None, "limit:i,since:s,include_all_networks:b"),
    ep(
        "POST",
        "/_matrix/federation/v1/publicRooms",
        SERVER,
        Some("limit:i,since:s,filter:o,include_all_networks:b,third_party_instance_id:s"),
        "",
    ),
    ep("GET", "/_matrix/federation/v1/query/{queryType}", SERVER, None, ""),
    ep("GET", "/_matrix/federation/v1/query/directory", SERVER, None, "room_alias:s"),
    ep("GET", "/_matrix/federation/v1/query/profile", SERVER, None, "user_id:s,field:s"),
    ep("GET", "/_matrix/federation/v1/hierarchy/{roomId}", SERVER, None, "suggested_only:b"),
    ep("GET", "/_matrix/federation/v1/user/devices/{userId}", SERVER, None, ""),
    ep("POST", "/_matrix/federation/v1/user/keys/claim", SERVER, Some("one_time_keys:o"), ""),
    ep("POST", "/_matrix/federation/v1/user/keys/query", SERVER, Some("device_keys:o"), ""),
    ep("GET", "/_matrix/federation/v1/media/download/{mediaId}", SERVER, None, "timeout_ms:i"),
    ep(
        "GET",
        "/_matrix/federation/v1/media/thumbnail/{mediaId}",
        SERVER,
        None,
        "width:i,height:i,method:s,timeout_ms:i,animated:b",
    ),
    ep("POST", "/_matrix/policy/v1/sign", SERVER, Some(PDU_FIELDS), ""),
];

/// What fills the path parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// Ids that exist (see each test's `real` map).
    Real,
    Bang,
    Nul,
    BadUtf8,
    /// Over the 255-byte limit of Matrix ids.
    Long,
    /// A path over hyper's 65,534-byte limit.
    Huge,
    /// Well-formed ids nobody has.
    Unknown,
}

const GARBAGE: [Fill; 6] = [Fill::Bang, Fill::Nul, Fill::BadUtf8, Fill::Long, Fill::Huge, Fill::Unknown];

impl Fill {
    fn name(self) -> &'static str {
        match self {
            Fill::Real => "real ids",
            Fill::Bang => "ids `!nope`",
            Fill::Nul => "ids `%00`",
            Fill::BadUtf8 => "ids `%FF%FE`",
            Fill::Long => "1000-byte ids",
            Fill::Huge => "70 KB ids",
            Fill::Unknown => "unknown ids",
        }
    }
}

/// The sigil of the id a path parameter holds, by its name.
fn sigil(name: &str) -> Option<char> {
    match name {
        "roomId" | "room_id" | "roomIdOrAlias" => Some('!'),
        "userId" | "user_id" => Some('@'),
        "eventId" | "event_id" => Some('$'),
        "roomAlias" => Some('#'),
        _ => None,
    }
}

fn is_server_name(name: &str) -> bool {
    matches!(name, "serverName" | "server_name")
}

/// The value of path parameter `name` for `fill`, ready for the URL.
fn path_value(name: &str, fill: Fill, real: &HashMap<&'static str, String>) -> String {
    match fill {
        Fill::Real => match name {
            "txnId" => enc(&fresh_txn_id()),
            _ => enc(real.get(name).unwrap_or_else(|| panic!("no real value for {{{name}}}"))),
        },
        Fill::Bang => "!nope".to_owned(),
        Fill::Nul => "%00".to_owned(),
        Fill::BadUtf8 => "%FF%FE".to_owned(),
        Fill::Long => {
            let filler = "a".repeat(1000);
            enc(&match sigil(name) {
                Some('$') => format!("${filler}"),
                Some(sigil) => format!("{sigil}{filler}:localhost"),
                None if is_server_name(name) => format!("{filler}.example"),
                None => filler,
            })
        }
        Fill::Huge => "a".repeat(70_000),
        Fill::Unknown => enc(match sigil(name) {
            Some('!') => "!unknown:localhost",
            Some('@') => "@ghost:localhost",
            Some('$') => "$unknownevent",
            Some(_) => "#ghost:localhost",
            // The server's own name: another one would be looked up over the network.
            None if is_server_name(name) => "localhost",
            None => "unknown",
        }),
    }
}

static NEXT_TXN: AtomicU64 = AtomicU64::new(1);

fn fresh_txn_id() -> String {
    format!("sweep-{}", NEXT_TXN.fetch_add(1, Ordering::Relaxed))
}

/// `template` with its parameters filled.
fn fill_path(template: &str, fill: Fill, real: &HashMap<&'static str, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("closing brace");
        out.push_str(&path_value(&rest[start + 1..end], fill, real));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The fields of a `name:type` list.
fn fields(spec: &str) -> impl Iterator<Item = (&str, &str)> {
    spec.split(',').filter(|f| !f.is_empty()).map(|f| f.rsplit_once(':').expect("name:type"))
}

/// An object with every field of the wrong type; `None` when no field is known.
fn wrong_types(spec: &str) -> Option<Value> {
    let object: serde_json::Map<String, Value> = fields(spec)
        .map(|(name, kind)| {
            let wrong = match kind {
                "s" => json!(12345),
                "i" => json!("twelve"),
                "b" => json!("yes"),
                "o" => json!("not an object"),
                "a" => json!({"not": "a list"}),
                other => panic!("unknown field type {other}"),
            };
            (name.to_owned(), wrong)
        })
        .collect();
    (!object.is_empty()).then_some(Value::Object(object))
}

/// What a case sends as the query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Query {
    /// The path template's, if any.
    Template,
    /// Every parameter of the wrong type: invalid UTF-8 for strings.
    WrongTypes,
    /// Every number 2^53 - 1, the largest the spec allows (and ruma reads); no other
    /// parameter.
    LargestInteger,
    /// Every number `u64::MAX` (which `usize` reads, and `+ 1` overflows); no other
    /// parameter.
    U64Max,
    /// Every string and list 10 KB long; no other parameter.
    LongStrings,
}

const QUERIES: [Query; 4] = [Query::WrongTypes, Query::LargestInteger, Query::U64Max, Query::LongStrings];

/// The query string for `query` (with the `?`), given the parameters `spec`; `None` when
/// no parameter is of the kind `query` is about.
fn query_string(spec: &str, query: Query) -> Option<String> {
    let long = "a".repeat(10_000);
    let pairs: Vec<String> = fields(spec)
        .filter_map(|(name, kind)| {
            let value = match (query, kind) {
                (Query::WrongTypes, "s") => "%FF%00",
                (Query::WrongTypes, "i") => "abc",
                (Query::WrongTypes, "b") => "maybe",
                (Query::WrongTypes, "a") => "%FF",
                (Query::WrongTypes, "o") => "%7B",
                (Query::LargestInteger, "i") => "9007199254740991",
                (Query::U64Max, "i") => "18446744073709551615",
                (Query::LongStrings, "s" | "a") => &long,
                (_, "s" | "i" | "b" | "a" | "o") => return None,
                (_, other) => panic!("unknown parameter type {other}"),
            };
            Some(format!("{name}={value}"))
        })
        .collect();
    (!pairs.is_empty()).then(|| format!("?{}", pairs.join("&")))
}

/// Who a case calls as.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    BadToken,
    /// The sweep's user (a server admin in the admin sweep).
    Authorized,
    /// A user who is not a server admin.
    NonAdmin,
    /// An `Authorization` header of another server's, `forged` when well-formed.
    XMatrix {
        header: &'static str,
        forged: bool,
    },
}

const MALFORMED_XMATRIX: &str = "X-Matrix garbage";
/// A well-formed header from the server itself, with a signature it never made.
const FORGED_XMATRIX: &str =
    "X-Matrix origin=\"localhost\",destination=\"localhost\",key=\"ed25519:a_bcde\",sig=\"aGVsbG8gd29ybGQ\"";

/// What a case sends as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyKind {
    None,
    InvalidJson,
    /// `[]`: serde reads a struct from an array, field by field, and an empty one fills
    /// every field that has a default.
    EmptyArray,
    /// `["sweep", 1]`: fills a struct whose first fields are a string and a number.
    Array,
    WrongTypes,
    EmptyObject,
    TooLarge,
    /// A file upload: no body at all.
    EmptyFile,
    /// A file upload without a `Content-Type`.
    NoContentType,
    /// A file upload with a `Content-Type` that is not a media type.
    BadContentType,
}

impl BodyKind {
    fn name(self) -> &'static str {
        match self {
            BodyKind::None => "no body",
            BodyKind::InvalidJson => "body `{`",
            BodyKind::EmptyArray => "`[]`",
            BodyKind::Array => "`[\"sweep\", 1]`",
            BodyKind::WrongTypes => "fields of the wrong type",
            BodyKind::EmptyObject => "`{}`",
            BodyKind::TooLarge => "body over the limit",
            BodyKind::EmptyFile => "empty file",
            BodyKind::NoContentType => "file without Content-Type",
            BodyKind::BadContentType => "file with a bad Content-Type",
        }
    }

    /// Whether the body is JSON, and valid.
    fn is_valid_json(self) -> bool {
        matches!(self, BodyKind::EmptyArray | BodyKind::Array | BodyKind::WrongTypes | BodyKind::EmptyObject)
    }
}

/// One request of the sweep.
struct Case {
    endpoint: &'static Endpoint,
    fill: Fill,
    caller: Caller,
    body_kind: BodyKind,
    query: Query,
    /// Path and query string.
    target: String,
    body: Option<(Option<&'static str>, Vec<u8>)>,
}

impl Case {
    fn label(&self) -> String {
        let caller = match &self.caller {
            Caller::Anonymous if self.endpoint.auth == SERVER => "unsigned",
            Caller::Anonymous => "no token",
            Caller::BadToken => "unknown token",
            Caller::Authorized => "token",
            Caller::NonAdmin => "non-admin token",
            Caller::XMatrix { forged: false, .. } => "malformed X-Matrix",
            Caller::XMatrix { forged: true, .. } => "forged X-Matrix",
        };
        let query = match self.query {
            Query::Template => "",
            Query::WrongTypes => ", query of wrong types",
            Query::LargestInteger => ", numbers 2^53-1 in the query",
            Query::U64Max => ", numbers u64::MAX in the query",
            Query::LongStrings => ", 10 KB strings in the query",
        };
        format!("{}, {caller}, {}{query}", self.fill.name(), self.body_kind.name())
    }
}

/// An answer: status (0 when there was none) and body.
struct Answer {
    status: u16,
    text: String,
    json: Option<Value>,
}

/// Builds the cases of `endpoint`: (those any order may run, those that must run last).
/// Only cases with the sweep's own credentials can do harm, so only they wait when the
/// endpoint is `destructive`.
fn cases_for(
    endpoint: &'static Endpoint,
    real: &HashMap<&'static str, String>,
    destructive: bool,
) -> (Vec<Case>, Vec<Case>) {
    let limit =
        if endpoint.path.starts_with("/_matrix/federation/v1/send/") { TRANSACTION_LIMIT } else { LIMIT };
    let make = |fill: Fill, caller: Caller, body_kind: BodyKind, body, query: Query| {
        let mut target = fill_path(endpoint.path, fill, real);
        if let Some(query) = (query != Query::Template).then(|| query_string(endpoint.query, query)).flatten()
        {
            // In place of the query the path template has, if any.
            target.truncate(target.find('?').unwrap_or(target.len()));
            target.push_str(&query);
        }
        Case { endpoint, fill, caller, body_kind, query, target, body }
    };
    // The body of a case that is about something else: `{}` where JSON goes.
    let (plain_kind, plain_body) = match endpoint.body {
        None => (BodyKind::None, None),
        Some(BYTES) => (BodyKind::None, Some((Some("text/plain"), b"sweep".to_vec()))),
        Some(_) => (BodyKind::EmptyObject, Some((Some("application/json"), b"{}".to_vec()))),
    };
    let plain =
        |fill: Fill, caller: Caller| make(fill, caller, plain_kind, plain_body.clone(), Query::Template);
    // Another server's endpoints are called without a signature: nothing else gets past it.
    let ours = if endpoint.auth == SERVER { Caller::Anonymous } else { Caller::Authorized };

    // Who calls, with real ids. The first, without credentials, is also the probe.
    let mut free = vec![make(Fill::Real, Caller::Anonymous, BodyKind::None, None, Query::Template)];
    match endpoint.auth {
        SERVER => {
            for (header, forged) in [(MALFORMED_XMATRIX, false), (FORGED_XMATRIX, true)] {
                free.push(plain(Fill::Real, Caller::XMatrix { header, forged }));
            }
        }
        PUB => {}
        ADMIN => {
            free.push(plain(Fill::Real, Caller::BadToken));
            free.push(plain(Fill::Real, Caller::NonAdmin));
        }
        _ => free.push(plain(Fill::Real, Caller::BadToken)),
    }
    // What is sent, with real ids.
    let mut bodies: Vec<(BodyKind, Option<&'static str>, Vec<u8>)> = Vec::new();
    match endpoint.body {
        None => {}
        Some(BYTES) => bodies.extend([
            (BodyKind::EmptyFile, Some("text/plain"), Vec::new()),
            (BodyKind::InvalidJson, Some("application/json"), b"{".to_vec()),
            (BodyKind::NoContentType, None, b"sweep".to_vec()),
            (BodyKind::BadContentType, Some("not a media type"), b"sweep".to_vec()),
            (BodyKind::TooLarge, Some("text/plain"), vec![b'x'; limit + 1024]),
        ]),
        Some(spec) => {
            let json = Some("application/json");
            bodies.extend([
                (BodyKind::InvalidJson, json, b"{".to_vec()),
                (BodyKind::EmptyArray, json, b"[]".to_vec()),
                (BodyKind::Array, json, br#"["sweep", 1]"#.to_vec()),
            ]);
            if let Some(wrong) = wrong_types(spec) {
                bodies.push((BodyKind::WrongTypes, json, serde_json::to_vec(&wrong).unwrap()));
            }
            bodies.push((BodyKind::EmptyObject, json, b"{}".to_vec()));
            let pad = "x".repeat(limit + 1024);
            bodies.push((BodyKind::TooLarge, json, serde_json::to_vec(&json!({ "pad": pad })).unwrap()));
        }
    }
    let mut ours_cases: Vec<Case> = bodies
        .into_iter()
        .map(|(kind, content_type, bytes)| {
            make(Fill::Real, ours.clone(), kind, Some((content_type, bytes)), Query::Template)
        })
        .collect();
    // Without a body or credentials, that is the probe.
    if endpoint.body.is_none() && ours != Caller::Anonymous {
        ours_cases.push(make(Fill::Real, ours.clone(), BodyKind::None, None, Query::Template));
    }
    for query in QUERIES.into_iter().filter(|q| query_string(endpoint.query, *q).is_some()) {
        ours_cases.push(make(Fill::Real, ours.clone(), plain_kind, plain_body.clone(), query));
    }
    // Garbage in the path.
    if endpoint.path.contains('{') {
        ours_cases.extend(GARBAGE.into_iter().map(|fill| plain(fill, ours.clone())));
    }
    if destructive { (free, ours_cases) } else { (free.into_iter().chain(ours_cases).collect(), Vec::new()) }
}

/// Sends the sweep's requests to one server.
struct Sweeper {
    http: reqwest::Client,
    base: String,
    addr: SocketAddr,
}

impl Sweeper {
    fn new(server: &Server) -> Sweeper {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Sweeper { http, base: server.base_url(), addr: server.addr }
    }

    async fn send(&self, case: &Case, token: &str, non_admin: &str) -> Answer {
        let authorization = match &case.caller {
            Caller::Anonymous => None,
            Caller::BadToken => Some("Bearer syt_not_a_token_anyone_issued".to_owned()),
            Caller::Authorized if token.is_empty() => None,
            Caller::Authorized => Some(format!("Bearer {token}")),
            Caller::NonAdmin => Some(format!("Bearer {non_admin}")),
            Caller::XMatrix { header, .. } => Some(header.to_string()),
        };
        // http's URIs stop at 64 KiB, and a body of megabytes would be cut off by the
        // server's answer: both go over a socket of their own.
        let huge_body = case.body.as_ref().is_some_and(|(_, bytes)| bytes.len() > 1024 * 1024);
        if case.target.len() > 60_000 || huge_body {
            return self.send_raw(case, authorization).await;
        }
        let method: reqwest::Method = case.endpoint.method.parse().expect("method");
        let mut builder = self.http.request(method, format!("{}{}", self.base, case.target));
        if let Some(authorization) = authorization {
            builder = builder.header("authorization", authorization);
        }
        if let Some((content_type, bytes)) = &case.body {
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", *content_type);
            }
            builder = builder.body(bytes.clone());
        }
        match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let bytes = response.bytes().await.unwrap_or_default();
                let json = serde_json::from_slice(&bytes).ok();
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                Answer { status, text, json }
            }
            Err(e) => {
                Answer { status: 0, text: format!("no answer: {}", short(&e.to_string(), 300)), json: None }
            }
        }
    }

    /// Sends `case` over a raw connection. A large body is announced in full but not
    /// sent: the server answers on the announced length.
    async fn send_raw(&self, case: &Case, authorization: Option<String>) -> Answer {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            case.endpoint.method, case.target, self.addr
        );
        if let Some(authorization) = authorization {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        let request = match &case.body {
            Some((content_type, bytes)) => {
                if let Some(content_type) = content_type {
                    head.push_str(&format!("Content-Type: {content_type}\r\n"));
                }
                head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
                let mut request = head.into_bytes();
                request.extend_from_slice(&bytes[..bytes.len().min(1024)]);
                request
            }
            None => format!("{head}\r\n").into_bytes(),
        };
        let resp = spec_tests::raw_http(self.addr, &request).await;
        let text =
            if resp.body.is_null() { "(not JSON)".to_owned() } else { short(&resp.body.to_string(), 300) };
        Answer { status: resp.status, json: (!resp.body.is_null()).then_some(resp.body), text }
    }

    /// Uploads `bytes` as `alice` and returns the media id.
    async fn upload(&self, client: &Client, content_type: &str, bytes: Vec<u8>) -> String {
        let response = self
            .http
            .post(format!("{}/_matrix/media/v3/upload?filename=pic.png", self.base))
            .bearer_auth(client.access_token.as_deref().expect("logged in"))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), 200, "upload");
        let body: Value = response.json().await.expect("upload answer");
        let uri = body["content_uri"].as_str().expect("content_uri");
        uri.rsplit('/').next().unwrap().to_owned()
    }
}

/// The first `max` characters of `text`.
fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// What was wrong with an answer, if anything.
fn judge(case: &Case, answer: &Answer, served: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let status = answer.status;
    if status == 0 {
        problems.push(answer.text.clone());
        return problems;
    }
    if status >= 500 {
        problems.push("a server error for bad input".to_owned());
    }
    let errcode = answer.json.as_ref().and_then(|j| j.get("errcode")).and_then(Value::as_str);
    if (400..500).contains(&status) {
        let uia = status == 401 && answer.json.as_ref().is_some_and(|j| j["flows"].is_array());
        match (errcode, &answer.json) {
            (Some(code), _) if code.starts_with("M_") => {}
            (Some(code), _) => problems.push(format!("errcode {code} does not start with M_")),
            (None, _) if uia => {}
            (None, Some(_)) => problems.push("a 4xx without an errcode".to_owned()),
            (None, None) => problems.push("a 4xx whose body is not JSON".to_owned()),
        }
        if answer.json.as_ref().is_some_and(|j| j.get("error").is_some_and(|e| !e.is_string())) {
            problems.push("`error` is not a string".to_owned());
        }
    }
    // What a status implies about the errcode.
    match (status, errcode) {
        (400, Some("M_UNKNOWN")) => {
            problems.push("400 M_UNKNOWN: the spec has a code for each kind of bad input".to_owned())
        }
        (401, Some(code))
            if !matches!(code, "M_MISSING_TOKEN" | "M_UNKNOWN_TOKEN" | "M_UNAUTHORIZED" | "M_FORBIDDEN") =>
        {
            problems.push(format!("401 with {code}"))
        }
        (404, Some(code)) if !matches!(code, "M_NOT_FOUND" | "M_UNRECOGNIZED") => {
            problems.push(format!("404 with {code}, not M_NOT_FOUND"))
        }
        (413 | 414, Some(code)) if code != "M_TOO_LARGE" => problems.push(format!("{status} with {code}")),
        _ => {}
    }
    let got = (status, errcode.unwrap_or(""));
    let mut expect = |wanted: &[(u16, &str)], why: &str| {
        if !wanted.contains(&got) {
            let wanted: Vec<String> = wanted.iter().map(|(s, c)| format!("{s} {c}")).collect();
            problems.push(format!("{why}: expected {}", wanted.join(" or ")));
        }
    };
    if case.fill == Fill::Huge {
        expect(&[(414, "M_TOO_LARGE")], "a path over 64 KiB");
        return problems;
    }
    if !served {
        return problems;
    }
    // Garbage may route nowhere where the router has literal segments (`/query/profile`).
    if case.fill != Fill::Real && matches!(got, (404 | 405, "M_UNRECOGNIZED")) {
        return problems;
    }
    let auth = case.endpoint.auth;
    if case.body_kind == BodyKind::TooLarge {
        expect(&[(413, "M_TOO_LARGE")], "a body over the limit");
        return problems;
    }
    match &case.caller {
        Caller::Anonymous if auth == SERVER => expect(&[(401, "M_UNAUTHORIZED")], "no signature"),
        Caller::Anonymous if matches!(auth, USER | AS | ADMIN) => {
            expect(&[(401, "M_MISSING_TOKEN")], "no token")
        }
        Caller::BadToken if auth != PUB => expect(&[(401, "M_UNKNOWN_TOKEN")], "a token nobody issued"),
        Caller::NonAdmin => expect(&[(403, "M_FORBIDDEN")], "a user who is not an admin"),
        Caller::XMatrix { forged: false, .. } => expect(&[(401, "M_UNAUTHORIZED")], "a malformed signature"),
        Caller::XMatrix { forged: true, .. } => {
            expect(&[(401, "M_UNAUTHORIZED"), (403, "M_FORBIDDEN")], "a forged signature")
        }
        Caller::Authorized
            if auth != PUB && status == 401 && matches!(got.1, "M_MISSING_TOKEN" | "M_UNKNOWN_TOKEN") =>
        {
            problems.push("the sweep's valid token was refused".to_owned())
        }
        _ => {}
    }
    let object_body = case.endpoint.body.is_some_and(|spec| spec != BYTES && wrong_types(spec).is_some());
    let json_endpoint = case.endpoint.body.is_some_and(|spec| spec != BYTES);
    let refused_for_content = case.caller == Caller::Authorized && case.fill == Fill::Real;
    match case.body_kind {
        BodyKind::InvalidJson if json_endpoint && refused_for_content => {
            // A body with no field the server reads may be ignored, but not accepted when it
            // has some.
            if object_body && (200..300).contains(&status) {
                problems.push("accepted a body that is not JSON".to_owned());
            }
            if status == 400 && got.1 != "M_NOT_JSON" {
                problems.push("a body that is not JSON: expected M_NOT_JSON".to_owned());
            }
        }
        BodyKind::EmptyArray | BodyKind::Array
            if object_body && refused_for_content && (200..300).contains(&status) =>
        {
            problems.push("accepted a JSON array where an object goes".to_owned())
        }
        kind if kind.is_valid_json() && got == (400, "M_NOT_JSON") => {
            problems.push("valid JSON called M_NOT_JSON".to_owned())
        }
        _ => {}
    }
    problems
}

/// The known finding `case`'s answer matches, if any.
fn known(case: &Case, answer: &Answer) -> Option<&'static str> {
    let label = case.label();
    KNOWN
        .iter()
        .find(|(method, path, part, status, _)| {
            *method == case.endpoint.method
                && *path == case.endpoint.path
                && (*part == "*" || label.contains(part))
                && *status == answer.status
        })
        .map(|(_, _, _, _, why)| *why)
}

/// One sweep: a table of endpoints against a server, with real ids to fill their paths.
struct Sweep<'a> {
    name: &'a str,
    server: &'a Server,
    endpoints: &'static [Endpoint],
    /// Endpoints whose authorized cases run last, in this order, one at a time, each
    /// endpoint with a token of its own (see [`Sweep::run`]).
    destructive: &'a [(&'a str, &'a str)],
    real: HashMap<&'static str, String>,
    /// The caller's access token (none if empty).
    token: String,
    /// A user who is not a server admin.
    non_admin: String,
}

impl Sweep<'_> {
    /// Sends every case and fails with the list of what broke the rules. `fresh_token`
    /// gives the token for each destructive endpoint's cases.
    async fn run<F, Fut>(&self, fresh_token: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        let started = Instant::now();
        let answered = self.send_all(fresh_token).await;
        self.report(answered, started.elapsed());
    }

    /// Sends every case: any order first, a few at a time, then the destructive ones.
    async fn send_all<F, Fut>(&self, fresh_token: F) -> Vec<(Case, Answer)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        let (destructive, real) = (self.destructive, &self.real);
        let endpoints: &'static [Endpoint] = self.endpoints;
        let (token, non_admin) = (self.token.as_str(), self.non_admin.as_str());
        let sweeper = Sweeper::new(self.server);
        let is_destructive = |e: &Endpoint| destructive.iter().any(|(m, p)| *m == e.method && *p == e.path);
        for (method, path) in destructive {
            assert!(
                endpoints.iter().any(|e| e.method == *method && e.path == *path),
                "{method} {path} not in the table"
            );
        }
        let mut free = Vec::new();
        let mut last: Vec<(usize, Vec<Case>)> = Vec::new();
        for endpoint in endpoints {
            let destroys = is_destructive(endpoint);
            let (any_order, at_the_end) = cases_for(endpoint, real, destroys);
            free.extend(any_order);
            if destroys {
                let rank = destructive
                    .iter()
                    .position(|(m, p)| *m == endpoint.method && *p == endpoint.path)
                    .unwrap();
                last.push((rank, at_the_end));
            }
        }
        last.sort_by_key(|(rank, _)| *rank);

        let mut answered: Vec<(Case, Answer)> = stream::iter(free)
            .map(|case| {
                let sweeper = &sweeper;
                async move {
                    let answer = sweeper.send(&case, token, non_admin).await;
                    (case, answer)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (_, cases) in last {
            let token = fresh_token().await;
            for case in cases {
                let answer = sweeper.send(&case, &token, non_admin).await;
                answered.push((case, answer));
            }
        }
        answered
    }

    /// Judges every answer and fails with the list of failures.
    fn report(&self, mut answered: Vec<(Case, Answer)>, took: Duration) {
        let (name, endpoints) = (self.name, self.endpoints);

        // An endpoint is served unless its probe (real ids, no credentials) was unrouted.
        let unserved: HashSet<(&str, &str)> = answered
            .iter()
            .filter(|(case, answer)| {
                case.fill == Fill::Real
                    && case.caller == Caller::Anonymous
                    && case.body_kind == BodyKind::None
                    && case.query == Query::Template
                    && matches!(answer.status, 404 | 405)
                    && answer.json.as_ref().and_then(|j| j["errcode"].as_str()) == Some("M_UNRECOGNIZED")
            })
            .map(|(case, _)| (case.endpoint.method, case.endpoint.path))
            .collect();
        let mut failures = Vec::new();
        let mut known_findings = Vec::new();
        answered.sort_by_key(|(case, _)| {
            let index = endpoints.iter().position(|e| std::ptr::eq(e, case.endpoint)).unwrap();
            (index, case.label())
        });
        if let Some(path) = std::env::var_os("BAD_INPUT_SWEEP_DUMP") {
            let mut dump = String::new();
            for (case, answer) in &answered {
                dump.push_str(&format!(
                    "{} {} [{}] -> {} {}\n",
                    case.endpoint.method,
                    case.endpoint.path,
                    case.label(),
                    answer.status,
                    short(&answer.text, 300)
                ));
            }
            std::fs::write(format!("{}-{name}", path.to_string_lossy()), dump).unwrap();
        }
        for (case, answer) in &answered {
            let served = !unserved.contains(&(case.endpoint.method, case.endpoint.path));
            let problems = judge(case, answer, served);
            if problems.is_empty() {
                continue;
            }
            let target = match case.target.len() {
                ..=160 => case.target.clone(),
                bytes => format!("{} ({bytes} bytes)", short(&case.target, 160)),
            };
            let report = format!(
                "{} {} [{}]\n      {} → {}: {}\n      {}",
                case.endpoint.method,
                case.endpoint.path,
                case.label(),
                target,
                answer.status,
                answer.text.replace('\n', " "),
                problems.join("; "),
            );
            match known(case, answer) {
                Some(why) => known_findings.push(format!("{report}\n      known: {why}")),
                None => failures.push(report),
            }
        }
        let mut unserved: Vec<String> = unserved.iter().map(|(m, p)| format!("{m} {p}")).collect();
        unserved.sort();
        println!(
            "{name}: {} requests to {} endpoints in {:.1} s; not served (404/405 M_UNRECOGNIZED): {}",
            answered.len(),
            endpoints.len(),
            took.as_secs_f64(),
            if unserved.is_empty() { "none".to_owned() } else { unserved.join(", ") },
        );
        for finding in &known_findings {
            println!("known finding (skipped): {finding}");
        }
        assert!(
            failures.is_empty(),
            "{name}: {} of {} answers to bad input break the rules:\n  {}",
            failures.len(),
            answered.len(),
            failures.join("\n  ")
        );
    }
}

/// A small PNG, so that thumbnails have something real to work on.
fn png() -> Vec<u8> {
    let image = RgbImage::from_pixel(64, 48, Rgb([200, 40, 40]));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("PNG");
    bytes
}

/// Logs `user` in again: a new device, so a destructive case ends only that session.
async fn fresh_login(server: &Server, user: &str) -> String {
    let client = server.client().login(user, PASSWORD).await;
    client.access_token.expect("access token")
}

#[tokio::test]
async fn client_api_answers_bad_input_with_matrix_errors() {
    let server = Server::start_with_config(SWEEP_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice.create_room(&json!({"room_alias_name": "sweep", "preset": "public_chat"})).await;
    let event_id = alice.send_text(&room_id, "hello").await;
    bob.join_room(&room_id).await.expect(200);
    let user = enc(alice.user_id());
    let filter = alice.post(&format!("/_matrix/client/v3/user/{user}/filter"), &json!({})).await.expect(200);
    let backup = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            &json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abcdef"}}),
        )
        .await
        .expect(200);
    alice
        .put(
            "/_matrix/client/v3/pushrules/global/override/sweep.rule",
            &json!({"actions": ["notify"], "conditions": []}),
        )
        .await
        .expect(200);
    let real: HashMap<&'static str, String> = [
        ("userId", alice.user_id().to_owned()),
        ("roomId", room_id.clone()),
        ("roomIdOrAlias", room_id.clone()),
        ("roomAlias", "#sweep:localhost".to_owned()),
        ("eventId", event_id),
        ("eventType", "m.room.message".to_owned()),
        ("stateEventType", "m.room.topic".to_owned()),
        ("stateKey", String::new()),
        ("type", "m.ignored_user_list".to_owned()),
        ("deviceId", alice.device_id.clone().expect("device id")),
        ("filterId", filter["filter_id"].as_str().expect("filter_id").to_owned()),
        ("version", backup["version"].as_str().expect("version").to_owned()),
        ("sessionId", "sweep-session".to_owned()),
        ("keyName", "displayname".to_owned()),
        ("kind", "override".to_owned()),
        ("ruleId", "sweep.rule".to_owned()),
        ("receiptType", "m.read".to_owned()),
        ("relType", "m.annotation".to_owned()),
        ("tag", "u.sweep".to_owned()),
        ("protocol", "irc".to_owned()),
        ("appserviceId", "sweep".to_owned()),
        ("networkId", "sweep-network".to_owned()),
        ("idpId", "oidc".to_owned()),
    ]
    .into_iter()
    .collect();
    let sweep = Sweep {
        name: "client API",
        server: &server,
        endpoints: CLIENT_ENDPOINTS,
        destructive: CLIENT_DESTRUCTIVE,
        real,
        token: alice.access_token.clone().expect("token"),
        non_admin: bob.access_token.clone().expect("token"),
    };
    sweep.run(|| fresh_login(&server, "alice")).await;
    // The server is still there.
    server.client().get("/_matrix/client/versions").await.expect(200);
}

#[tokio::test]
async fn media_answers_bad_input_with_matrix_errors() {
    let config =
        format!("{SWEEP_CONFIG}[media]\nmax_upload_bytes = {LIMIT}\nallow_legacy_unauthenticated = true\n");
    let server = Server::start_with_config(&config).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let sweeper = Sweeper::new(&server);
    let media_id = sweeper.upload(&alice, "image/png", png()).await;
    let text_media_id = sweeper.upload(&alice, "text/plain", b"not a picture".to_vec()).await;
    let mut broken = png();
    broken.truncate(40);
    let broken_media_id = sweeper.upload(&alice, "image/png", broken).await;
    let real: HashMap<&'static str, String> = [
        ("serverName", "localhost".to_owned()),
        ("mediaId", media_id),
        ("textMediaId", text_media_id),
        ("brokenMediaId", broken_media_id),
        ("fileName", "pic.png".to_owned()),
    ]
    .into_iter()
    .collect();
    let token = alice.access_token.clone().expect("token");
    let sweep = Sweep {
        name: "media",
        server: &server,
        endpoints: MEDIA_ENDPOINTS,
        destructive: &[],
        real,
        non_admin: token.clone(),
        token,
    };
    sweep.run(|| async { unreachable!("no destructive endpoints") }).await;
    server.client().get("/_matrix/client/versions").await.expect(200);
}

#[tokio::test]
async fn admin_api_answers_bad_input_with_matrix_errors() {
    let server = Server::start_with_config(SWEEP_CONFIG).await;
    let admin = admin_client(&server, "admin").await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = bob.create_room(&json!({"preset": "public_chat"})).await;
    let event_id = bob.send_text(&room_id, "hello").await;
    bob.post(
        &format!("/_matrix/client/v3/rooms/{}/report/{}", enc(&room_id), enc(&event_id)),
        &json!({"reason": "sweep"}),
    )
    .await
    .expect(200);
    let reports = admin.get("/_synapse/admin/v1/event_reports").await.expect(200);
    let report_id = reports["event_reports"][0]["id"].as_u64().expect("a report id");
    let token = admin.post("/_synapse/admin/v1/registration_tokens/new", &json!({})).await.expect(200);
    let media_id = Sweeper::new(&server).upload(&bob, "text/plain", b"sweep".to_vec()).await;
    let real: HashMap<&'static str, String> = [
        ("user_id", bob.user_id().to_owned()),
        ("device_id", bob.device_id.clone().expect("device id")),
        ("room_id", room_id),
        ("delete_id", "sweep-deletion".to_owned()),
        ("token", token["token"].as_str().expect("token").to_owned()),
        ("report_id", report_id.to_string()),
        ("server_name", "localhost".to_owned()),
        ("media_id", media_id),
    ]
    .into_iter()
    .collect();
    let admin_token = admin.access_token.clone().expect("token");
    let sweep = Sweep {
        name: "admin API",
        server: &server,
        endpoints: ADMIN_ENDPOINTS,
        destructive: ADMIN_DESTRUCTIVE,
        real,
        token: admin_token.clone(),
        non_admin: bob.access_token.clone().expect("token"),
    };
    // Nothing the admin API's deletions do touches the admin's own session.
    sweep.run(|| std::future::ready(admin_token.clone())).await;
    server.client().get("/_synapse/admin/v1/server_version").await.expect(200);
}

#[tokio::test]
async fn federation_api_answers_bad_input_with_matrix_errors() {
    // Without a listener of its own, the federation API shares the client listener.
    let server = Server::start_with_config(SWEEP_CONFIG).await;
    let alice = server.client().register("alice", PASSWORD).await;
    let room_id = alice.create_room(&json!({"preset": "public_chat"})).await;
    let event_id = alice.send_text(&room_id, "hello").await;
    let media_id = Sweeper::new(&server).upload(&alice, "image/png", png()).await;
    let real: HashMap<&'static str, String> = [
        ("roomId", room_id),
        ("eventId", event_id),
        ("userId", alice.user_id().to_owned()),
        ("serverName", "localhost".to_owned()),
        ("mediaId", media_id),
        ("queryType", "profile".to_owned()),
    ]
    .into_iter()
    .collect();
    let sweep = Sweep {
        name: "federation API",
        server: &server,
        endpoints: FEDERATION_ENDPOINTS,
        destructive: &[],
        real,
        token: String::new(),
        non_admin: String::new(),
    };
    sweep.run(|| async { unreachable!("no destructive endpoints") }).await;
    server.client().get("/_matrix/federation/v1/version").await.expect(200);
}
