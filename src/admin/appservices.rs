//! Adding, listing and removing application services on a running server (or on the
//! store of a stopped one): `myelin appservice register|list|remove`.

use serde::{Deserialize, Serialize};

use super::{Error, Reply};
use crate::services::Services;

/// One registered service, for operators.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppserviceSummary {
    pub id: String,
    pub url: Option<String>,
    pub sender: ruma::OwnedUserId,
    /// The config file it comes from; `None` for one added with `myelin appservice register`.
    pub file: Option<String>,
    /// Its namespaces, as registered.
    pub namespaces: serde_json::Value,
}

pub fn list(services: &Services) -> Reply {
    let appservices = services
        .appservices
        .list()
        .iter()
        .map(|service| {
            let registered = &service.registered;
            AppserviceSummary {
                id: registered.id().to_owned(),
                url: registered.url().map(str::to_owned),
                sender: registered.sender.clone(),
                file: service.file.as_ref().map(|f| f.display().to_string()),
                namespaces: serde_json::to_value(&registered.registration.namespaces).unwrap_or_default(),
            }
        })
        .collect();
    Reply::Appservices { appservices }
}

/// Registers the service described by `registration` (the file's text) and creates its
/// user, so it can act at once.
pub async fn register(services: &Services, registration: &str) -> Result<Reply, Error> {
    let service = services.appservices.register(registration).await?;
    services.accounts.ensure_appservice_user(&service.registered).await?;
    Ok(Reply::AppserviceRegistered { id: service.registered.id().to_owned() })
}

pub async fn remove(services: &Services, id: String) -> Result<Reply, Error> {
    services.appservices.remove(&id).await?;
    Ok(Reply::AppserviceRemoved { id })
}
