//! The application router and its shared state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use ipnet::IpNet;
use portcullis_core::crypto::Keyring;
use portcullis_providers::{Breakers, ProviderError, Upstreams};
use portcullis_storage::Db;

use crate::dataplane::Caches;
use crate::error::ApiError;
use crate::spend::{Spend, SpendOptions};
use crate::throttle::Throttle;
use crate::{admin, authn, dataplane, health, request_id};

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
    /// The pooled client and breakers of every upstream.
    pub upstreams: Arc<Upstreams>,
    /// Virtual keys and resolved routes, kept fresh by `dataplane::spawn_change_listener`.
    pub caches: Arc<Caches>,
    /// Budgets, rate limits and the ledger (reserve and settle).
    pub spend: Arc<Spend>,
}

const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// How long failed logins count against an account or address.
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

impl AppState {
    /// Starts the spend engine's background tasks: call within a Tokio runtime.
    pub fn new(
        db: Db,
        keyring: Keyring,
        trusted_proxies: Vec<IpNet>,
        spend: SpendOptions,
    ) -> Result<Self, ProviderError> {
        let upstreams = Upstreams::new(
            UPSTREAM_CONNECT_TIMEOUT,
            Breakers::new(5, BREAKER_COOLDOWN),
            false,
        )?;
        Ok(Self {
            spend: Spend::start(db.clone(), spend),
            db,
            keyring: Arc::new(keyring),
            trusted_proxies: trusted_proxies.into(),
            throttle: Arc::new(Throttle::new(THROTTLE_WINDOW)),
            allow_link_local_upstreams: false,
            upstreams: Arc::new(upstreams),
            caches: Arc::new(Caches::default()),
        })
    }
}

impl AppState {
    /// Lets provider base URLs and host names point at link-local addresses (an operator's
    /// explicit choice, `providers.allow_link_local`).
    pub fn allowing_link_local_upstreams(mut self) -> Result<Self, ProviderError> {
        self.allow_link_local_upstreams = true;
        let breakers = Breakers::new(5, BREAKER_COOLDOWN);
        self.upstreams = Arc::new(Upstreams::new(UPSTREAM_CONNECT_TIMEOUT, breakers, true)?);
        Ok(self)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(authn::router())
        .merge(dataplane::router())
        .merge(admin::router(&state))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(middleware::from_fn(request_id::layer))
}
