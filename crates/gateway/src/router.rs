//! The application router and its shared state.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use ipnet::IpNet;
use portcullis_core::crypto::Keyring;
use portcullis_policy::pii::{Detector, DetectorError};
use portcullis_providers::{Breakers, Egress, ProviderError, Upstreams};
use portcullis_storage::Db;

use crate::dataplane::Caches;
use crate::denials::Denials;
use crate::error::ApiError;
use crate::logs::{LogOptions, RequestLogs};
use crate::metrics::Metrics;
use crate::spend::{Spend, SpendOptions};
use crate::throttle::{Throttle, ThrottleLimits};
use crate::{admin, authn, dataplane, denials, headers, health, metrics, request_id};

/// What every handler may reach. Cloned per request, so it holds only cheap handles.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    /// Seals and opens secrets at rest (TOTP seeds).
    pub keyring: Arc<Keyring>,
    /// Peers whose `X-Forwarded-For` is believed (AU-2).
    pub trusted_proxies: Arc<[IpNet]>,
    pub throttle: Arc<Throttle>,
    /// Password and recovery-code checks that may run at once: each holds 19 MiB of argon2
    /// memory, so this bounds what any number of logins can take (AV-4).
    pub hashers: crate::workers::Workers,
    /// CPU work a request asks for, a few at once (AV-4): prompt renders (CM-2, each bounded
    /// in work and memory) and PII scans of large bodies (CF-3).
    pub compute: crate::workers::Workers,
    /// Refused admin actions, bounded per actor before they reach the audit trail.
    pub denials: Arc<Denials>,
    /// Work that outlives its request (a failed login's audit entries): shutdown waits for it.
    pub tasks: tokio_util::task::TaskTracker,
    /// Stops the background loops at shutdown.
    pub stop: tokio_util::sync::CancellationToken,
    /// Where provider base URLs may point (SSRF guard, AV-4): checked when a credential is saved.
    pub destinations: Arc<portcullis_core::net::Destinations>,
    /// The pooled client and breakers of every upstream.
    pub upstreams: Arc<Upstreams>,
    /// Virtual keys and resolved routes, kept fresh by `dataplane::spawn_change_listener`.
    pub caches: Arc<Caches>,
    /// Budgets, rate limits and the ledger (reserve and settle).
    pub spend: Arc<Spend>,
    /// Finds personal data and secrets: the guardrail and the log writer's redaction.
    pub detector: Arc<Detector>,
    /// The request-log writer.
    pub logs: RequestLogs,
    pub metrics: Arc<Metrics>,
    /// Whether clients reach this process over TLS (HSTS is sent only then).
    pub serving_tls: bool,
    /// A data-plane body must arrive within this once its head did, or the answer is 408.
    pub body_read_timeout: Duration,
    /// `/metrics` is served on a listener of its own (`metrics_router`), not on the main one.
    pub metrics_elsewhere: bool,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstreams(#[from] ProviderError),
    #[error(transparent)]
    Pii(#[from] DetectorError),
}

/// One job per core: argon2 and renders are all CPU, and each hasher keeps 19 MiB.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Admin and auth bodies are small documents; prompts go to the data plane.
const ADMIN_MAX_BODY: usize = 64 * 1024;

const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

impl AppState {
    /// Starts the spend engine's and the log writer's background tasks (request logs with
    /// default options; see `with_log_options`): call within a Tokio runtime.
    pub fn new(
        db: Db,
        keyring: Keyring,
        trusted_proxies: Vec<IpNet>,
        spend: SpendOptions,
    ) -> Result<Self, StartError> {
        let upstreams = Upstreams::new(
            UPSTREAM_CONNECT_TIMEOUT,
            Breakers::new(5, BREAKER_COOLDOWN),
            &Egress::default(),
        )?;
        let detector = Arc::new(Detector::new()?);
        let logs = RequestLogs::start(db.clone(), Arc::clone(&detector), LogOptions::default());
        let denials = Arc::new(Denials::default());
        let tasks = tokio_util::task::TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        tasks.spawn(denials::run_summaries(
            db.clone(),
            Arc::clone(&denials),
            stop.clone(),
        ));
        Ok(Self {
            denials,
            tasks,
            stop,
            metrics: Arc::new(Metrics::new(logs.metrics())),
            serving_tls: false,
            body_read_timeout: Duration::from_secs(30),
            metrics_elsewhere: false,
            logs,
            detector,
            spend: Spend::start(db.clone(), spend),
            db,
            keyring: Arc::new(keyring),
            trusted_proxies: trusted_proxies.into(),
            throttle: Arc::new(Throttle::new(ThrottleLimits::default())),
            hashers: crate::workers::Workers::start("hasher", cores()),
            compute: crate::workers::Workers::start("compute", cores()),
            destinations: Arc::default(),
            upstreams: Arc::new(upstreams),
            caches: Arc::new(Caches::default()),
        })
    }
}

impl AppState {
    /// Replaces the request-log writer with one of these options (the default one ends).
    pub fn with_log_options(mut self, options: LogOptions) -> Self {
        self.logs = RequestLogs::start(self.db.clone(), Arc::clone(&self.detector), options);
        self.metrics = Arc::new(Metrics::new(self.logs.metrics()));
        self
    }

    /// Replaces the login throttle's limits (`auth.*` settings).
    pub fn with_throttle_limits(mut self, limits: ThrottleLimits) -> Self {
        self.throttle = Arc::new(Throttle::new(limits));
        self
    }

    /// Writes `per_window` refusals per actor and minute in full before counting the rest.
    /// The summary task keeps the default state's table; a new one is built here.
    pub fn with_denials_per_window(mut self, per_window: u32) -> Self {
        self.denials = Arc::new(Denials::new(per_window));
        self.tasks.spawn(denials::run_summaries(
            self.db.clone(),
            Arc::clone(&self.denials),
            self.stop.clone(),
        ));
        self
    }

    /// Stops the background loops and waits (up to `grace`) for work that outlived its
    /// request; false if some did not finish.
    pub async fn finish_background(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    /// The operator's egress choices (`providers.*`): where base URLs and host names may lead
    /// (link-local, private networks, never the gateway itself), and the proxy upstream
    /// requests go through.
    pub fn with_egress(mut self, egress: &Egress) -> Result<Self, ProviderError> {
        self.destinations = Arc::new(egress.destinations.clone());
        let breakers = Breakers::new(5, BREAKER_COOLDOWN);
        self.upstreams = Arc::new(Upstreams::new(UPSTREAM_CONNECT_TIMEOUT, breakers, egress)?);
        Ok(self)
    }
}

/// `/metrics` alone, for an operator's listener (`server.metrics_listen`).
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let people = authn::router()
        .merge(admin::router(&state))
        .layer(DefaultBodyLimit::max(ADMIN_MAX_BODY));
    let mut main = Router::new();
    if !state.metrics_elsewhere {
        main = main.route("/metrics", get(metrics::metrics));
    }
    main.route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(people)
        .merge(dataplane::router())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone())
        // Every answer, the fallbacks' 404 and 405 included (static values: cheap).
        .layer(middleware::map_response_with_state(
            state.clone(),
            headers::security,
        ))
        .layer(middleware::from_fn_with_state(state, metrics::track))
        .layer(middleware::from_fn(request_id::layer))
}
