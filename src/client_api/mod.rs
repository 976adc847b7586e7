//! Client-server API handlers: parse (ruma, via the router) → call a domain → respond.
//! Nothing here touches storage or holds a rule of its own beyond shaping the response.

mod account;
mod appservice;
mod backup;
mod devices;
mod directory;
mod discovery;
mod history;
mod keys;
mod media;
mod membership;
mod misc;
mod preview;
mod profile;
mod push;
mod register;
mod rooms;
mod search;
mod session;
mod spaces;
mod sync;
mod sync_body;
mod threepids;
mod user_data;

use crate::{config::Config, http::router::Router};

/// Every client-server endpoint Myelin serves.
pub fn router(config: &Config) -> Router {
    let mut router = Router::default();
    discovery::routes(&mut router);
    session::routes(&mut router, config);
    register::routes(&mut router);
    account::routes(&mut router);
    devices::routes(&mut router);
    profile::routes(&mut router);
    rooms::routes(&mut router);
    membership::routes(&mut router);
    directory::routes(&mut router);
    spaces::routes(&mut router);
    history::routes(&mut router);
    search::routes(&mut router);
    sync::routes(&mut router);
    user_data::routes(&mut router);
    push::routes(&mut router);
    keys::routes(&mut router);
    backup::routes(&mut router);
    media::routes(&mut router, config);
    preview::routes(&mut router, config);
    misc::routes(&mut router);
    appservice::routes(&mut router);
    threepids::routes(&mut router);
    router
}
