//! `/metrics`: Prometheus (OpenMetrics text) metrics of this process (AV-3). Labels are low
//! cardinality: a route template, a method, a status, a kind; never an org, key, alias or
//! prompt.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::logs::LogMetrics;
use crate::state::AppState;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Every metric of the process, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    upstream_attempts: Family<Labels, Counter>,
    upstream_errors: Family<Labels, Counter>,
    fallbacks: Counter,
    rejections: Family<Labels, Counter>,
    guardrail: Family<Labels, Counter>,
    /// Read at each scrape.
    breakers_open: Gauge,
    ledger_queue: Gauge,
    ledger_failed_batches: Gauge,
}

impl Metrics {
    pub fn new(logs: &LogMetrics) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            upstream_attempts: Family::default(),
            upstream_errors: Family::default(),
            fallbacks: Counter::default(),
            rejections: Family::default(),
            guardrail: Family::default(),
            breakers_open: Gauge::default(),
            ledger_queue: Gauge::default(),
            ledger_failed_batches: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "portcullis_http_requests",
            "HTTP requests by route template, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "portcullis_http_request_duration_seconds",
            "Time to the response head, by route template",
            metrics.latency.clone(),
        );
        registry.register(
            "portcullis_upstream_attempts",
            "Attempts at upstream providers, by outcome",
            metrics.upstream_attempts.clone(),
        );
        registry.register(
            "portcullis_upstream_errors",
            "Failed upstream attempts, by kind",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "portcullis_fallbacks",
            "Requests served after more than one attempt (a retry or a fallback target)",
            metrics.fallbacks.clone(),
        );
        registry.register(
            "portcullis_budget_rejections",
            "Requests refused by a budget, a rate limit or a missing price, by code",
            metrics.rejections.clone(),
        );
        registry.register(
            "portcullis_guardrail",
            "Requests through the PII guardrail, by action (passed, redacted, blocked)",
            metrics.guardrail.clone(),
        );
        registry.register(
            "portcullis_breakers_open",
            "Upstream targets whose circuit breaker is open",
            metrics.breakers_open.clone(),
        );
        registry.register(
            "portcullis_ledger_queue_depth",
            "Settlements waiting for the ledger writer (never dropped)",
            metrics.ledger_queue.clone(),
        );
        registry.register(
            "portcullis_ledger_failed_batches",
            "Ledger batches that PostgreSQL could not take (retried until written)",
            metrics.ledger_failed_batches.clone(),
        );
        logs.register(&mut registry);
        Self {
            registry,
            ..metrics
        }
    }

    /// An upstream chain's outcome: `attempts` tries, of which `errors` failed (by kind).
    pub fn upstream(&self, attempts: u32, errors: &[&'static str], served: bool) {
        let failed = u64::try_from(errors.len()).unwrap_or(0);
        let tried = u64::from(attempts).max(failed);
        self.upstream_attempts
            .get_or_create(&vec![("outcome", "error".to_owned())])
            .inc_by(failed);
        if served {
            self.upstream_attempts
                .get_or_create(&vec![("outcome", "ok".to_owned())])
                .inc_by(tried.saturating_sub(failed).max(1));
            if attempts > 1 {
                self.fallbacks.inc();
            }
        }
        for kind in errors {
            self.upstream_errors
                .get_or_create(&vec![("kind", (*kind).to_owned())])
                .inc();
        }
    }

    pub fn rejected(&self, code: &'static str) {
        self.rejections
            .get_or_create(&vec![("code", code.to_owned())])
            .inc();
    }

    pub fn guardrail(&self, action: &'static str) {
        if action != "off" {
            self.guardrail
                .get_or_create(&vec![("action", action.to_owned())])
                .inc();
        }
    }
}

/// Counts each request and times it to its response head, by route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    // A method a client makes up is `other`: no label takes a value a client chooses freely.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    metrics
        .latency
        .get_or_create(&vec![("route", route.clone())])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&vec![
            ("route", route),
            ("method", method),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let spend = state.spend.writer_stats();
    let metrics = &state.metrics;
    metrics
        .ledger_queue
        .set(i64::try_from(spend.queued).unwrap_or(i64::MAX));
    metrics
        .ledger_failed_batches
        .set(i64::try_from(spend.failed_batches).unwrap_or(i64::MAX));
    metrics
        .breakers_open
        .set(i64::try_from(state.upstreams.breakers.open_count()).unwrap_or(i64::MAX));
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
