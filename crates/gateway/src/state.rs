//! The state every handler reaches, built once by [`AppStateBuilder`]: nothing in it changes
//! after `build`, and a request clones one pointer to it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use portcullis_core::crypto::Keyring;
use portcullis_core::provider::ProviderKind;
use portcullis_policy::pii::{Detector, DetectorError};
use portcullis_providers::{Breakers, Egress, Provider, ProviderError, Upstreams};
use portcullis_storage::Db;

use crate::background::Background;
use crate::dataplane::Caches;
use crate::denials::{self, Denials};
use crate::logs::{LogOptions, RequestLogs};
use crate::metrics::Metrics;
use crate::spend::{Spend, SpendOptions};
use crate::throttle::{Throttle, ThrottleLimits};
use crate::workers::Workers;

/// What every handler may reach. A clone is one reference count: axum clones the state for
/// every request.
#[derive(Clone, Debug)]
pub struct AppState(Arc<State>);

impl Deref for AppState {
    type Target = State;

    fn deref(&self) -> &State {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct State {
    pub db: Db,
    /// Seals and opens secrets at rest (TOTP seeds).
    pub keyring: Arc<Keyring>,
    /// Peers whose `X-Forwarded-For` is believed (AU-2).
    pub trusted_proxies: Arc<[IpNet]>,
    pub throttle: Throttle,
    /// Password and recovery-code checks that may run at once: each holds 19 MiB of argon2
    /// memory, so this bounds what any number of logins can take (AV-4).
    pub hashers: Workers,
    /// CPU work a request asks for, a few at once (AV-4): prompt renders (CM-2, each bounded
    /// in work and memory) and PII scans of large bodies (CF-3).
    pub compute: Workers,
    /// Refused admin actions, bounded per actor before they reach the audit trail.
    pub denials: Arc<Denials>,
    /// Work beside the requests (writers, loops, audit entries written after their answer):
    /// shutdown stops and waits for it.
    pub background: Background,
    /// Where provider base URLs may point (SSRF guard, AV-4): checked when a credential is saved.
    pub destinations: Arc<portcullis_core::net::Destinations>,
    /// The adapters and breakers of every upstream.
    pub upstreams: Upstreams,
    /// Virtual keys and resolved routes, kept fresh by `dataplane::spawn_change_listener`.
    pub caches: Arc<Caches>,
    /// Budgets, rate limits and the ledger (reserve and settle).
    pub spend: Arc<Spend>,
    /// Finds personal data and secrets: the guardrail and the log writer's redaction.
    pub detector: Arc<Detector>,
    /// The request-log writer.
    pub logs: RequestLogs,
    pub metrics: Metrics,
    /// Whether clients reach this process over TLS (HSTS is sent only then).
    pub serving_tls: bool,
    /// A data-plane body must arrive within this once its head did, or the answer is 408.
    pub body_read_timeout: Duration,
    /// `/metrics` is served on a listener of its own (`metrics_router`), not on the main one.
    pub metrics_elsewhere: bool,
    /// The web console is served at `/console` (`server.console`).
    pub console: bool,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstreams(#[from] ProviderError),
    #[error(transparent)]
    Pii(#[from] DetectorError),
}

const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BREAKER_COOLDOWN: Duration = Duration::from_secs(30);

/// One job per core: argon2 and renders are all CPU, and each hasher keeps 19 MiB.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The choices an [`AppState`] is built from; each has the default a test or a small
/// deployment wants.
pub struct AppStateBuilder {
    db: Db,
    keyring: Arc<Keyring>,
    spend: SpendOptions,
    trusted_proxies: Vec<IpNet>,
    logs: LogOptions,
    throttle: ThrottleLimits,
    denials_per_window: Option<u32>,
    egress: Egress,
    providers: Vec<(ProviderKind, Arc<dyn Provider>)>,
    caches: Caches,
    serving_tls: bool,
    body_read_timeout: Duration,
    metrics_elsewhere: bool,
    console: bool,
}

impl std::fmt::Debug for AppStateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateBuilder")
            .field("trusted_proxies", &self.trusted_proxies)
            .field("providers", &self.providers.len())
            .field("serving_tls", &self.serving_tls)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A builder with the database, the key-encryption keys and the spend engine's options.
    pub fn builder(
        db: Db,
        keyring: impl Into<Arc<Keyring>>,
        spend: SpendOptions,
    ) -> AppStateBuilder {
        AppStateBuilder {
            db,
            keyring: keyring.into(),
            spend,
            trusted_proxies: Vec::new(),
            logs: LogOptions::default(),
            throttle: ThrottleLimits::default(),
            denials_per_window: None,
            egress: Egress::default(),
            providers: Vec::new(),
            caches: Caches::default(),
            serving_tls: false,
            body_read_timeout: Duration::from_secs(30),
            metrics_elsewhere: false,
            console: true,
        }
    }

    /// Stops the background loops and waits (up to `grace`) for work that outlived its
    /// request; false if some did not finish.
    pub async fn finish_background(&self, grace: Duration) -> bool {
        self.background.finish(grace).await
    }
}

impl AppStateBuilder {
    /// Peers whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
    pub fn trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The request-log writer's options (`logs.*`).
    pub fn log_options(mut self, options: LogOptions) -> Self {
        self.logs = options;
        self
    }

    /// The login throttle's limits (`auth.*`).
    pub fn throttle_limits(mut self, limits: ThrottleLimits) -> Self {
        self.throttle = limits;
        self
    }

    /// Writes `per_window` refusals per actor and minute in full before counting the rest.
    pub fn denials_per_window(mut self, per_window: u32) -> Self {
        self.denials_per_window = Some(per_window);
        self
    }

    /// The operator's egress choices (`providers.*`): where base URLs and host names may lead
    /// (link-local, private networks, never the gateway itself), and the proxy upstream
    /// requests go through.
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = egress;
        self
    }

    /// Serves targets of `kind` with `adapter` instead of the built-in one.
    pub fn provider(mut self, kind: ProviderKind, adapter: Arc<dyn Provider>) -> Self {
        self.providers.push((kind, adapter));
        self
    }

    /// The caches to fill (a test's second replica watches its own).
    pub fn caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self
    }

    /// Clients reach this process over TLS (HSTS is sent).
    pub fn serving_tls(mut self, tls: bool) -> Self {
        self.serving_tls = tls;
        self
    }

    /// How long a data-plane body may take once its head arrived.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// `/metrics` is served on a listener of its own, not on the main one.
    pub fn metrics_elsewhere(mut self, elsewhere: bool) -> Self {
        self.metrics_elsewhere = elsewhere;
        self
    }

    /// Serves the web console at `/console` (on unless turned off).
    pub fn console(mut self, console: bool) -> Self {
        self.console = console;
        self
    }

    /// Builds the state and starts its background work (the spend engine, the log writer,
    /// the refusal summaries): call within a Tokio runtime.
    pub fn build(self) -> Result<AppState, StartError> {
        let background = Background::default();
        let mut upstreams = Upstreams::new(
            UPSTREAM_CONNECT_TIMEOUT,
            Breakers::new(5, BREAKER_COOLDOWN),
            &self.egress,
        )?;
        for (kind, adapter) in self.providers {
            upstreams = upstreams.with_provider(kind, adapter);
        }
        let detector = Arc::new(Detector::new()?);
        let logs = RequestLogs::start(
            self.db.clone(),
            Arc::clone(&detector),
            self.logs,
            &background,
        );
        let denials = Arc::new(match self.denials_per_window {
            Some(per_window) => Denials::new(per_window),
            None => Denials::default(),
        });
        // It writes the summaries of open windows when shutdown begins, then ends.
        background.spawn(denials::run_summaries(
            self.db.clone(),
            Arc::clone(&denials),
            background.stopping(),
        ));
        Ok(AppState(Arc::new(State {
            metrics: Metrics::new(logs.metrics()),
            spend: Spend::start(self.db.clone(), self.spend, &background),
            logs,
            detector,
            denials,
            background,
            destinations: Arc::new(self.egress.destinations),
            upstreams,
            caches: Arc::new(self.caches),
            db: self.db,
            keyring: self.keyring,
            trusted_proxies: self.trusted_proxies.into(),
            throttle: Throttle::new(self.throttle),
            hashers: Workers::start("hasher", cores()),
            compute: Workers::start("compute", cores()),
            serving_tls: self.serving_tls,
            body_read_timeout: self.body_read_timeout,
            metrics_elsewhere: self.metrics_elsewhere,
            console: self.console,
        })))
    }
}
