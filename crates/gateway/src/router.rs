//! The application router and its shared state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use ipnet::IpNet;
use portcullis_core::crypto::Keyring;
use portcullis_storage::Db;

use crate::error::ApiError;
use crate::throttle::Throttle;
use crate::{admin, authn, health, request_id};

/// What every handler may reach. Cloned per request, so it holds only cheap handles.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    /// Seals and opens secrets at rest (TOTP seeds).
    pub keyring: Arc<Keyring>,
    /// Peers whose `X-Forwarded-For` is believed (AU-2).
    pub trusted_proxies: Arc<[IpNet]>,
    pub throttle: Arc<Throttle>,
    /// Whether provider base URLs may point at link-local or metadata addresses (SSRF guard).
    pub allow_link_local_upstreams: bool,
}

/// How long failed logins count against an account or address.
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

impl AppState {
    pub fn new(db: Db, keyring: Keyring, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            db,
            keyring: Arc::new(keyring),
            trusted_proxies: trusted_proxies.into(),
            throttle: Arc::new(Throttle::new(THROTTLE_WINDOW)),
            allow_link_local_upstreams: false,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(authn::router())
        .merge(admin::router(&state))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn(request_id::layer))
}
