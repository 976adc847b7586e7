//! `myelin serve`: open the store, bind the listeners, serve until SIGINT/SIGTERM, then
//! finish in-flight requests, flush and exit.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{net::UnixListener, sync::watch};

use crate::{
    admin_api, client_api,
    config::{Config, RegistrationMode},
    federation_api,
    http::{self, Pipeline},
    ops_api,
    services::Services,
    storage::{StorageError, Store},
};

/// The admin socket's file name inside the data directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

pub fn admin_socket_path(config: &Config) -> PathBuf {
    config.data_dir.join(ADMIN_SOCKET)
}

pub async fn run(mut config: Config) -> Result<(), String> {
    // Handlers go in first: until they are installed SIGTERM kills the process outright, so
    // a stop sent right after "listening" is announced would skip the clean shutdown.
    let signals = ShutdownSignals::install()?;
    let store = Store::open(&config.data_dir, config.storage.cache_capacity_mb).map_err(|e| match e {
        StorageError::Locked => format!(
            "the data directory {} is in use by another process (is Myelin already running?)",
            config.data_dir.display()
        ),
        other => other.to_string(),
    })?;
    store.claim_server_name(&config.server_name).map_err(|e| e.to_string())?;
    let store = Arc::new(store);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let socket_path = admin_socket_path(&config);
    // The store lock proves no other server uses this directory, so a socket file left
    // here is from a crash.
    let _ = std::fs::remove_file(&socket_path);
    let admin_listener = UnixListener::bind(&socket_path)
        .map_err(|e| format!("cannot create the admin socket {}: {e}", socket_path.display()))?;
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict the admin socket's permissions: {e}"))?;

    let address = http::local_addr(&listener);
    // With port 0 the kernel picked the port: from here on the config says which one, so
    // that URLs derived from `listen` (such as the `.well-known` base URL) are reachable.
    config.listen = address;
    tracing::info!(server_name = %config.server_name, data_dir = %config.data_dir.display(), "starting");
    match config.registration.mode {
        RegistrationMode::Open if address.ip().is_loopback() => tracing::info!(
            "registration is open because the server listens on loopback only; \
             set registration.mode before exposing it"
        ),
        RegistrationMode::Open => tracing::warn!("registration is open to anyone who can reach {address}"),
        mode => tracing::info!(?mode, "registration"),
    }

    let federation_listener = match config.federation.listen.filter(|_| config.federation.enabled) {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for federation on {addr}: {e}"))?,
        ),
        None => None,
    };
    let federation_tls = match (&config.federation.tls_cert, &config.federation.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };

    let services = Arc::new(Services::new(config, store.clone())?);
    let mut router = client_api::router(&services.config);
    federation_api::public_routes(&mut router);
    ops_api::health_routes(&mut router);
    admin_api::synapse::routes(&mut router);
    let federation = match federation_listener {
        Some(listener) => {
            let mut router = crate::http::router::Router::default();
            federation_api::public_routes(&mut router);
            federation_api::routes(&mut router);
            let scheme = if federation_tls.is_some() { "https" } else { "http" };
            tracing::info!("federation on {scheme}://{}", http::local_addr(&listener));
            Some((listener, Arc::new(Pipeline::new(services.clone(), router, false))))
        }
        None => {
            // Behind a reverse proxy, federation shares the client listener.
            if services.config.federation.enabled {
                federation_api::routes(&mut router);
            }
            None
        }
    };
    if services.config.federation.enabled
        && let Some(woken) = services.outbound_wakeups.lock().expect("never poisoned").take()
    {
        tokio::spawn(services.federation.sender.clone().run(woken));
    }
    services.push.start_delivery().map_err(|e| format!("cannot start push delivery: {e}"))?;
    for service in services.appservices.list().iter() {
        services.accounts.ensure_appservice_user(&service.registered).await.map_err(|e| {
            format!("cannot create the user of application service {}: {e}", service.registered.id())
        })?;
    }
    services.appservices.start_delivery();
    tokio::spawn(forget_old_transaction_ids(store.clone()));
    if services.config.retention.enabled {
        tokio::spawn(purge_expired(services.clone()));
    }
    let client = Arc::new(Pipeline::new(services.clone(), router, true));
    let metrics_listener = match services.config.metrics.enabled {
        true => {
            let addr = services.config.metrics.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
            tracing::info!("metrics on http://{}/metrics", http::local_addr(&listener));
            Some((listener, Arc::new(Pipeline::new(services.clone(), ops_api::metrics_router(), false))))
        }
        false => None,
    };
    let admin = Arc::new(Pipeline::new(services.clone(), admin_api::router(), false));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    });

    // Tests and scripts wait for this exact line.
    tracing::info!("listening on http://{address}");
    tracing::info!(socket = %socket_path.display(), "admin socket ready");
    let metrics = async {
        if let Some((listener, pipeline)) = metrics_listener {
            http::serve(listener, pipeline, None, stop_rx.clone()).await;
        }
    };
    let federation = async {
        if let Some((listener, pipeline)) = federation {
            http::serve(listener, pipeline, federation_tls, stop_rx.clone()).await;
        }
    };
    tokio::join!(
        http::serve(listener, client, None, stop_rx.clone()),
        http::serve(admin_listener, admin, None, stop_rx.clone()),
        metrics,
        federation,
    );

    let _ = std::fs::remove_file(&socket_path);
    services.push.finish_delivery().map_err(|e| format!("cannot record push delivery: {e}"))?;
    store.flush().map_err(|e| format!("final flush failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// How long a send's transaction id is remembered; clients retry within minutes.
const TRANSACTION_ID_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Hourly (and once at start), forgets send transaction ids older than a day.
async fn forget_old_transaction_ids(store: Arc<Store>) {
    let mut hourly = tokio::time::interval(Duration::from_secs(60 * 60));
    loop {
        hourly.tick().await;
        let cutoff = crate::now_ms().saturating_sub(TRANSACTION_ID_LIFETIME.as_millis() as u64);
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.forget_txn_ids_before(cutoff)).await {
            Ok(Ok(forgotten)) => tracing::debug!(forgotten, "forgot old transaction ids"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not forget old transaction ids"),
            Err(e) => tracing::warn!(error = %e, "forgetting old transaction ids panicked"),
        }
    }
}

/// Every `purge_interval` (the first time a minute after start, or sooner with a shorter
/// interval), purges the events each room's retention lifetime has expired, and the media
/// past theirs.
async fn purge_expired(services: Arc<Services>) {
    let config = &services.config.retention;
    tokio::time::sleep(config.purge_interval.min(Duration::from_secs(60))).await;
    let mut every = tokio::time::interval(config.purge_interval);
    loop {
        every.tick().await;
        match services.rooms.purge_expired(config).await {
            Ok(pass) => tracing::info!(
                rooms = pass.rooms_purged,
                events = pass.events_removed,
                "retention purge done"
            ),
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
        let (local, remote) = (config.local_media_lifetime, config.remote_media_lifetime);
        if let Err(e) = services.media.purge_expired(local, remote).await {
            tracing::warn!(error = %e, "media retention purge failed");
        }
    }
}

/// The federation listener's TLS set-up from PEM files (rustls on ring; HTTP/2 and 1.1).
fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("federation.tls_cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("federation.tls_key {}: {e}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("federation.tls_cert and tls_key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// SIGTERM and SIGINT, with their handlers already in place.
struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| signal(kind).map_err(|e| format!("cannot install a signal handler: {e}"));
        Ok(Self {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
